"""The `scalelab` command line: parse, call the library, print. No science here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from scalelab.cli_common import DEFAULT_WORKDIR
from scalelab.cli_fit import fit_app
from scalelab.cli_pm import eval_app, pm_app
from scalelab.cli_probe import probe_app
from scalelab.cli_study import study_app
from scalelab.cli_sweep import report_cmd, sweep_cmd
from scalelab.errors import RunDiverged, UserError

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="scalelab: a laboratory for the empirical science of language models.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: throughput, MFU and time to a target loss.")
app.add_typer(bench_app, name="bench")
app.add_typer(study_app, name="study")
app.add_typer(pm_app, name="pm")
app.add_typer(eval_app, name="eval")
app.add_typer(probe_app, name="probe")
app.command("sweep")(sweep_cmd)
app.add_typer(fit_app, name="fit")
app.command("report")(report_cmd)
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

WorkdirOpt = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", help="Work directory: run store, caches, checkpoints.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object as the last line.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key: --set train.lr=3e-4 (repeatable).")


def _print_json(obj) -> None:
    print(json.dumps(obj, default=str))


def _quiet(json_out: bool) -> bool:
    return not json_out and sys.stderr.isatty()


def _summary_table(summary: dict, title: str) -> Table:
    table = Table(title=title, show_header=False)
    keys = ("run_id", "status", "params", "params_nonembed", "iters", "tokens", "flops", "final_train_loss",
            "final_val_loss", "tokens_per_s", "wall_s", "time_to_target_s", "mfu")  # fmt: skip
    for k in keys:
        v = summary.get(k)
        if isinstance(v, float):
            v = f"{v:.4g}"
        table.add_row(k, str(v))
    return table


@app.command("train")
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
    from scalelab.presets import load_preset
    from scalelab.train.loop import train

    cfg = load_preset(preset, set_) if preset else load_config(config, set_)
    summary = train(cfg, workdir, resume=resume, progress=_quiet(json_out))
    if summary["status"] == "interrupted":
        err.print(f"interrupted at step {summary['iters']}; resume with: scalelab train "
                  f"{config or ''} --resume {summary['run_id']} --workdir {workdir}")  # fmt: skip
    if json_out:
        _print_json(summary)
    else:
        out.print(_summary_table(summary, f"run {summary['run_id']}"))
    if summary["status"] == "interrupted":
        raise typer.Exit(130)


@app.command("sample")
def sample_cmd(
    run: str = typer.Argument(..., help="Run id / name, run folder, or checkpoint folder."),
    prompt: str = typer.Option("", "--prompt", "-p"),
    tokens: int = typer.Option(200, "--tokens", "-n", help="New tokens to sample."),
    temperature: float = typer.Option(0.8, "--temperature", "-t"),
    top_k: int | None = typer.Option(50, "--top-k"),
    seed: int = typer.Option(0, "--seed"),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Sample text from a trained model (KV-cached)."""
    from scalelab.sampling import sample_text

    text = sample_text(run, prompt, tokens, temperature, top_k, seed, workdir)
    if json_out:
        _print_json({"prompt": prompt, "text": text})
    else:
        out.print(prompt + text, markup=False, highlight=False)


@app.command("runs")
def runs_cmd(
    workdir: Path = WorkdirOpt,
    group: str | None = typer.Option(None, "--group", help="Only the runs of this sweep/study."),
    json_out: bool = JsonOpt,
):
    """List the runs in the store."""
    from scalelab.store import RunStore

    if not (workdir / "scalelab.db").exists():
        raise UserError(f"no run store in {workdir}; train something first or pass --workdir")
    cols = ["id", "name", "grp", "status", "params", "tokens", "flops", "final_train_loss", "final_val_loss"]
    rows = RunStore.in_workdir(workdir).list_runs(cols, group)  # plain SQL: no pandas at start-up
    if json_out:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} runs in {workdir}")
    for c in cols:
        table.add_column(c, justify="right" if c not in ("id", "name", "grp", "status") else "left", no_wrap=c == "id")
    for row in rows:
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row.values()])
    out.print(table)


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
    from scalelab.bench import bench_train

    res = bench_train(preset, recipe, data, device, set_, None, target, progress=_quiet(json_out))
    if json_out:
        _print_json(res)
    else:
        out.print(_summary_table(res, f"bench {preset} / {recipe} on {res['device']}"))


@app.command("demo")
def demo_cmd(workdir: Path = WorkdirOpt, json_out: bool = JsonOpt):
    """The main job: a small model on the embedded corpus, trained and sampled."""
    from scalelab.demo import run_demo

    res = run_demo(workdir, progress=_quiet(json_out), console=err if json_out else out)
    if json_out:
        _print_json(res)


def main() -> None:
    """Entry point: user mistakes print one clear line and exit 2, never a traceback."""
    try:
        rc = app(standalone_mode=False)  # click returns, rather than raises, typer.Exit here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except UserError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except RunDiverged as e:
        err.print(f"[bold red]failed:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
