"""`scalelab distill context`: context distillation (Askell et al. 2021, section 3.1). Parse, call, print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scalelab.cli.common import JsonOpt, WorkdirOpt, key_value_table, out, print_json, show_progress

distill_app = typer.Typer(no_args_is_help=True, help="Context distillation: a prompt trained into the weights.")

KEYS = ("run_id", "kl_before", "kl_after", "kl_factor", "plain_loss_before", "plain_loss_after", "alignment_tax",
        "tokens", "prompt_tokens", "context", "room", "window", "top_k", "top_k_note", "tokens_per_s",
        "reused")  # fmt: skip


@distill_app.command("context")
def context_cmd(
    model: str = typer.Option(..., "--model", help="The teacher and the student's start: a run id / name or folder."),
    prompt: str = typer.Option(..., "--prompt", help="Prompt file (text or Human:/Assistant: turns) or a shipped "
                               "prompt: assistant, upper."),
    data: str = typer.Option("stdlib", "--data", help="Corpus: stdlib, a text file, folder, glob or .jsonl."),
    top_k: int = typer.Option(32, "--top-k", min=1, help="Teacher log-probs kept per position (+ a remainder)."),
    window: Optional[int] = typer.Option(None, "--window", min=2, help="Text tokens per window (default: "
                                         "min(64, the room the prompt leaves))."),
    n_windows: int = typer.Option(512, "--windows", min=1, help="Training windows in the teacher cache."),
    n_heldout: int = typer.Option(64, "--heldout", min=1, help="Held-out windows for the KL and the tax."),
    max_documents: Optional[int] = typer.Option(None, "--max-documents", min=1, help="Read at most N documents."),
    steps: int = typer.Option(200, "--steps", min=1, help="Optimizer steps of the student."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(3e-4, "--lr", min=0.0, help="Peak AdamW learning rate."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads."),
    name: Optional[str] = typer.Option(None, "--name", help="The student's run name in the store."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Train a student (from --model, no prompt) on KL(p(x|prompt) || p_theta(x)); same command again resumes."""
    from scalelab.align.distill import DistillSpec
    from scalelab.align.distill_run import distill_context

    spec = DistillSpec(model=model, prompt=prompt, data=data, top_k=top_k, window=window, n_windows=n_windows,
                       n_heldout=n_heldout, max_documents=max_documents, steps=steps, batch_size=batch_size, lr=lr,
                       seed=seed, device=device, threads=threads, name=name)  # fmt: skip
    summary = distill_context(spec, workdir, progress=show_progress())
    if json_out:
        print_json(summary)
    else:
        out.print(key_value_table(summary, KEYS, f"student {summary['run_id']}"))
