"""`scalelab bench train`: throughput, MFU and time to a target loss of a shipped preset."""

from __future__ import annotations

import typer

from scalelab.cli.common import JsonOpt, SetOpt, key_value_table, out, print_json, show_progress
from scalelab.cli.runs import SUMMARY_KEYS

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: throughput, MFU and time to a target loss.")

@bench_app.command("train")
def bench_train_cmd(
    preset: str = typer.Option("shakespeare-char", "--preset"),
    recipe: str = typer.Option("gpt2", "--recipe", help="gpt2 or modern."),
    data: str | None = typer.Option(None, "--data", help="Text file (default: the preset's)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    target: float | None = typer.Option(None, "--target", help="Target val loss (preset default)."),
    set_: list[str] | None = SetOpt,
    json_out: bool = JsonOpt,
):
    """Train a preset and report tokens/s, final val loss, time to target and MFU."""
    from scalelab.train.bench import bench_train

    res = bench_train(preset, recipe, data, device, set_, None, target, progress=show_progress())
    if json_out:
        print_json(res)
    else:
        out.print(key_value_table(res, SUMMARY_KEYS, f"bench {preset} / {recipe} on {res['device']}"))
