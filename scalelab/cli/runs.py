"""`scalelab train`, `scalelab sample`, `scalelab runs`: one model at a time, and the store's list of runs."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from scalelab.cli.common import JsonOpt, SetOpt, WorkdirOpt, key_value_table, note, out, print_json, rows_table, say
from scalelab.cli.common import show_progress as _progress
from scalelab.errors import UserError

SUMMARY_KEYS = ("run_id", "status", "params", "params_nonembed", "iters", "tokens", "flops", "final_train_loss",
                "final_val_loss", "tokens_per_s", "wall_s", "time_to_target_s", "mfu")  # fmt: skip


def train_cmd(
    config: Path | None = typer.Argument(None, help="TOML config (defaults when omitted)."),
    set_: list[str] | None = SetOpt,
    workdir: Path = WorkdirOpt,
    resume: str | None = typer.Option(None, "--resume", help="Continue this run (id, prefix or name)."),
    preset: str | None = typer.Option(None, "--preset", help="Start from a shipped preset instead of a file."),
    json_out: bool = JsonOpt,
):
    """Train one model; every run is recorded in the store and resumable."""
    from scalelab.config import load_config
    from scalelab.evals.tasks import task_evals_for
    from scalelab.presets import load_preset
    from scalelab.train.loop import train

    cfg = load_preset(preset, set_) if preset else load_config(config, set_)
    tasks = task_evals_for(cfg, workdir)  # capability tasks named in data.eval_tasks, scored at every eval
    summary = train(cfg, workdir, resume=resume, progress=_progress(), extra_evals=tasks)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one process speaks for the run
        return
    if summary["status"] == "interrupted":
        note(f"interrupted at step {summary['iters']}; resume with: scalelab train "
             f"{config or ''} --resume {summary['run_id']} --workdir {workdir}")  # fmt: skip
    if json_out:
        print_json(summary)
    else:
        out.print(key_value_table(summary, SUMMARY_KEYS, f"run {summary['run_id']}"))
    if summary["status"] == "interrupted":
        raise typer.Exit(130)


def sample_cmd(
    run: str = typer.Argument(..., help="Run id / name, run folder, or checkpoint folder."),
    prompt: str = typer.Option("", "--prompt", "-p"),
    tokens: int = typer.Option(200, "--tokens", "-n", min=1, help="New tokens to sample."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", min=0.0, help="0 = greedy."),
    top_k: int | None = typer.Option(50, "--top-k", min=1),
    seed: int = typer.Option(0, "--seed"),
    prompt_file: str | None = typer.Option(None, "--prompt-file", help="A prompt file (or shipped prompt: assistant) "
                                           "prepended to the context: samples with and without it, same seed."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Sample text from a trained model (KV-cached)."""
    from scalelab.cli.progress import live_line
    from scalelab.sampling import sample_text

    if prompt_file is not None:  # side by side, from the same seed
        from scalelab.align.distill_evals import sample_side_by_side
        from scalelab.prompting import load_prompt
        from scalelab.train.checkpoint import load_for_inference

        with live_line("sample") as phase:
            phase("loading the model")
            model, tokenizer, _ = load_for_inference(run, workdir, "cpu")
            phase(f"{tokens} tokens with and without the prompt")
            res = sample_side_by_side(model, tokenizer, prompt, load_prompt(prompt_file), tokens, temperature, top_k,
                                      seed)  # fmt: skip
        if json_out:
            print_json(res)
        else:
            used = f"{res['prompt']['prompt_tokens']} of {res['prompt']['context']} tokens"
            say(f"--- without the prompt\n{prompt}{res['sample']}\n--- with the prompt ({used})\n"
                f"{prompt}{res['sample_prompted']}")
        return

    with live_line("sample") as phase:
        phase(f"{tokens} tokens")
        text = sample_text(run, prompt, tokens, temperature, top_k, seed, workdir)
    if json_out:
        print_json({"prompt": prompt, "text": text})
    else:
        say(prompt + text)


RUN_COLUMNS = ["id", "name", "grp", "status", "params", "tokens", "flops", "final_train_loss", "final_val_loss"]


def runs_cmd(
    workdir: Path = WorkdirOpt,
    group: str | None = typer.Option(None, "--group", help="Only the runs of this sweep/study."),
    json_out: bool = JsonOpt,
):
    """List the runs in the store."""
    from scalelab.store import RunStore

    if not (workdir / "scalelab.db").exists():
        raise UserError(f"no run store in {workdir}; train something first or pass --workdir")
    rows = RunStore.in_workdir(workdir, readonly=True).list_runs(RUN_COLUMNS, group)  # plain SQL: no pandas at start-up
    if json_out:
        print_json(rows)
        return
    out.print(rows_table(rows, f"{len(rows)} runs in {workdir}", left=("id", "name", "grp", "status")))


def _runs_group(
    ctx: typer.Context,
    workdir: Path = WorkdirOpt,
    group: str | None = typer.Option(None, "--group", help="Only the runs of this sweep/study."),
    json_out: bool = JsonOpt,
):
    """List the runs in the store (or `runs export --to mlflow|tensorboard`)."""
    if ctx.invoked_subcommand is None:
        runs_cmd(workdir, group, json_out)


def register(app: typer.Typer) -> None:
    from scalelab.cli.interop import runs_export_cmd

    app.command("train")(train_cmd)
    app.command("sample")(sample_cmd)
    runs_app = typer.Typer(invoke_without_command=True)
    runs_app.callback()(_runs_group)
    runs_app.command("export")(runs_export_cmd)
    app.add_typer(runs_app, name="runs")
