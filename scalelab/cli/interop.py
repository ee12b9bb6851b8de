"""`scalelab export hf`, `scalelab import hf`: models to and from the Hugging Face format.

    scalelab export hf RUN_OR_CKPT OUT_DIR [--overwrite] [--json] [--workdir DIR]
    scalelab import hf DIR [--name NAME] [--context N] [--json] [--workdir DIR]

Both check scalelab's logits against the HF model's before writing anything (needs the `hf` extra).
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalelab.cli.common import JsonOpt, WorkdirOpt, key_value_table, out, print_json
from scalelab.cli.progress import count_bar, live_line

export_app = typer.Typer(no_args_is_help=True, help="Export models to other formats.")
import_app = typer.Typer(no_args_is_help=True, help="Import models from other formats as runs.")


def _diffs(res: dict) -> dict:
    return res | {"logit_diff": ", ".join(f"{k} {v:.1e}" for k, v in res["logit_diff"].items())}


@export_app.command("hf")
def export_hf_cmd(
    run: str = typer.Argument(..., help="Run id / name, run folder, or checkpoint folder."),
    out_dir: Path = typer.Argument(..., help="Folder to write (must be new or empty)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT_DIR."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Write a Hugging Face model folder (GPT-2, Llama or Qwen3, safetensors, tokenizer, model card)."""
    from scalelab.interop.hf_export import export_hf

    with live_line(f"export hf {run}") as phase:
        res = export_hf(run, out_dir, workdir, overwrite=overwrite, phase=phase)
    if json_out:
        print_json(res)
        return
    keys = ("out", "hf_class", "run_id", "step", "logit_diff", "seconds")
    out.print(key_value_table(_diffs(res), keys, "exported"))


@import_app.command("hf")
def import_hf_cmd(
    source: str = typer.Argument(..., help="A local Hugging Face model folder (GPT-2, Llama, Mistral, Qwen2, Qwen3)."),
    name: str | None = typer.Option(None, "--name", help="Run name (default: hf-<folder name>)."),
    context: int | None = typer.Option(None, "--context", help="Cap the context (default: the model's)."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Turn a Hugging Face model folder into a scalelab run (checkpoint + store record)."""
    from scalelab.interop.hf_import import import_hf

    with live_line(f"import hf {source}") as phase:
        res = import_hf(source, workdir, name, context, phase=phase)
    if json_out:
        print_json(res)
        return
    keys = ("run_id", "name", "hf_model_type", "architecture", "params", "checkpoint", "logit_diff", "seconds")
    out.print(key_value_table(_diffs(res), keys, "imported"))


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")


def runs_export_cmd(
    to: str = typer.Option(..., "--to", help="'mlflow', 'tensorboard' or 'wandb' (local, in the work directory)."),
    group: str | None = typer.Option(None, "--group", help="Only the runs of this sweep/study."),
    run: list[str] | None = typer.Option(None, "--run", help="Only this run (id, prefix or name; repeatable)."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Backfill a tracker with the finished runs of the store (those already there are skipped)."""
    from scalelab.cli.common import say
    from scalelab.interop.backfill import backfill

    with count_bar(f"export to {to}") as update:
        res = backfill(workdir, to, group, run, progress=update)
    if json_out:
        print_json(res)
    else:
        say(f"exported {len(res['exported'])} runs to {to} in {workdir} ({len(res['skipped'])} skipped)")
