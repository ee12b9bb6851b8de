"""`scalelab probe ...`: mechanism probes on a checkpoint (Hernandez et al. 2022, section 5).

    scalelab probe induction CHECKPOINT [--json] [--workdir DIR] [--seed S] [--batch B] [--text FILE]

CHECKPOINT is a run id / name in the store, a run folder or a `step_*` folder. Prints the
prefix-matching score of every head (layers x heads), the best head, the TransformerLens
detector score, the copying losses and the in-context learning score (on the run's validation
split, or on --text). With --json, one JSON object is printed instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from scalelab.cli_common import DEFAULT_WORKDIR

probe_app = typer.Typer(no_args_is_help=True, help="Mechanism probes on checkpoints.")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _table(res: dict) -> Table:
    prefix = res["prefix_matching"]
    table = Table(title="prefix matching", caption=f"Olsson et al. 2022; step {res['step']}")
    table.add_column("layer", justify="right")
    for h in range(len(prefix[0])):
        table.add_column(f"head {h}", justify="right")
    best = tuple(res["induction_argmax"])
    for i, row in enumerate(prefix):
        cells = [f"[bold]{v:.3f}[/]" if (i, h) == best else f"{v:.3f}" for h, v in enumerate(row)]
        table.add_row(str(i), *cells)
    return table


@probe_app.command("induction")
def induction_cmd(
    checkpoint: str = typer.Argument(..., help="Run id / name, run folder, or checkpoint folder."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", help="Work directory holding the run store."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random probe sequences."),
    batch: int = typer.Option(8, "--batch", help="Sequences per probe."),
    text: Path | None = typer.Option(None, "--text", help="Held-out text for the ICL score (default: val split)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Induction (prefix-matching) scores per head, copying loss and in-context learning score."""
    from scalelab.errors import UserError
    from scalelab.evals.probes import heldout_windows_for_checkpoint, run_probes, settings_for, text_windows
    from scalelab.sampling import resolve_checkpoint
    from scalelab.train.checkpoint import load_model_from_checkpoint

    if batch < 1:
        raise UserError(f"--batch {batch}: use at least 1 sequence")
    path = resolve_checkpoint(checkpoint, workdir)
    model, tokenizer, step = load_model_from_checkpoint(path)
    block = model.cfg.block_size
    if text is not None:
        if not text.is_file():
            raise UserError(f"--text {text}: no such file; pass a text file of held-out data")
        heldout = text_windows(text.read_text(errors="replace"), tokenizer, block, batch, seed)
    else:
        heldout = heldout_windows_for_checkpoint(path, block, batch, seed)
    res = run_probes(model, settings_for(tokenizer, batch_size=batch, seed=seed), heldout)
    res = {"checkpoint": str(path), "step": step, **res}
    if json_out:
        print(json.dumps(res))
        return
    out = Console(width=None if sys.stdout.isatty() else 160)
    out.print(_table(res))
    layer, head = res["induction_argmax"]
    out.print(f"max prefix-matching score {res['induction_max']:.4f} (layer {layer}, head {head}); "
              f"TransformerLens detector max {res['detector_max']:.4f}")  # fmt: skip
    per_copy = ", ".join(f"{v:.3f}" for v in res["copy_losses"])
    out.print(f"copying loss per copy [{per_copy}]: first {_fmt(res['copy_loss_first'])}, "
              f"later {_fmt(res['copy_loss_later'])}")  # fmt: skip
    if res["icl_score"] is None:
        out.print("ICL score: n/a (no held-out text found; pass --text FILE)")
    else:
        early, late, _ = res["icl_positions"]
        out.print(f"ICL score {res['icl_score']:+.4f} (loss at token {late} minus token {early})")
