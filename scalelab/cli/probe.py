"""`scalelab probe ...`: mechanism probes on a checkpoint (Hernandez et al. 2022, section 5).

    scalelab probe induction CHECKPOINT [--json] [--workdir DIR] [--seed S] [--batch B] [--text FILE]

CHECKPOINT is a run id / name in the store, a run folder or a `step_*` folder. Prints the
prefix-matching score of every head (layers x heads), the best head, the TransformerLens
detector score, the copying losses and the in-context learning score (on the run's validation
split, or on --text). With --json, one JSON object is printed instead.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from scalelab.cli.common import JsonOpt, WorkdirOpt, fmt, out, print_json, say
from scalelab.cli.progress import live_line

probe_app = typer.Typer(no_args_is_help=True, help="Mechanism probes on checkpoints.")


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
    workdir: Path = WorkdirOpt,
    seed: int = typer.Option(0, "--seed", help="Seed of the random probe sequences."),
    batch: int = typer.Option(8, "--batch", min=1, help="Sequences per probe."),
    text: Path | None = typer.Option(None, "--text", help="Held-out text for the ICL score (default: val split)."),
    json_out: bool = JsonOpt,
):
    """Induction (prefix-matching) scores per head, copying loss and in-context learning score."""
    from scalelab.errors import UserError
    from scalelab.evals.probes import heldout_windows_for_checkpoint, run_probes, settings_for, text_windows
    from scalelab.sampling import resolve_checkpoint
    from scalelab.train.checkpoint import load_model_from_checkpoint

    if text is not None and not text.is_file():
        raise UserError(f"--text {text}: no such file; pass a text file of held-out data")
    with live_line("probe induction") as phase:
        phase("loading the model")
        path = resolve_checkpoint(checkpoint, workdir)
        model, tokenizer, step = load_model_from_checkpoint(path)
        block = model.cfg.block_size
        phase("reading held-out text")
        if text is not None:
            heldout = text_windows(text.read_text(errors="replace"), tokenizer, block, batch, seed)
        else:
            heldout = heldout_windows_for_checkpoint(path, block, batch, seed)
        phase("induction, copying and in-context learning probes")
        res = run_probes(model, settings_for(tokenizer, batch_size=batch, seed=seed), heldout)
    res = {"checkpoint": str(path), "step": step, **res}
    if json_out:
        print_json(res)
        return
    out.print(_table(res))
    layer, head = res["induction_argmax"]
    say(f"max prefix-matching score {res['induction_max']:.4f} (layer {layer}, head {head}); "
        f"TransformerLens detector max {res['detector_max']:.4f}")  # fmt: skip
    per_copy = ", ".join(f"{v:.3f}" for v in res["copy_losses"])
    say(f"copying loss per copy [{per_copy}]: first {fmt(res['copy_loss_first'], '.4f', 'n/a')}, "
        f"later {fmt(res['copy_loss_later'], '.4f', 'n/a')}")  # fmt: skip
    if res["icl_score"] is None:
        say("ICL score: n/a (no held-out text found; pass --text FILE)")
    else:
        early, late, _ = res["icl_positions"]
        say(f"ICL score {res['icl_score']:+.4f} (loss at token {late} minus token {early})")
