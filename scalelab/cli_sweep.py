"""`scalelab sweep`, `scalelab report`: families of runs, their fits and their report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from scalelab.cli_common import DEFAULT_WORKDIR
from scalelab.errors import UserError

err = Console(stderr=True)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def report_sweep(workdir: Path, sweep: str, n_boot: int = 200, fit_params: str = "nonembed",
                 holdout: int = 1) -> tuple[dict, Path]:  # fmt: skip
    from scalelab.store import RunStore
    from scalelab.studies import scaling

    store = RunStore.in_workdir(workdir)
    res = scaling.analyze(store, sweep, fit_params=fit_params, holdout=holdout, n_boot=n_boot)
    path = scaling.write(res, store, Path(workdir) / "reports" / f"{sweep}.html")
    return res, path


def sweep_cmd(
    spec_path: Path = typer.Argument(..., metavar="SPEC.toml", help="The sweep spec."),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    workers: int = typer.Option(1, "--workers", help="Runs trained at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan with time estimates; train nothing."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry runs that failed before."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join ('auto', 'ray://...')."),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="Ray resource request per run."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a spec key (budget.min_iters=5)."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w"),
    json_out: bool = typer.Option(False, "--json"),
):
    """Plan and run a family of runs (resumable; finished runs are skipped), then fit and report."""
    from scalelab.sweep.spec import load_spec

    spec = load_spec(spec_path, set_)
    if dry_run:
        print_plan(spec, workdir, json_out)
        return
    from scalelab.sweep.run import run_sweep

    if workers < 1:
        raise UserError("--workers must be at least 1")
    res = run_sweep(spec, workdir, executor, workers, retry_failed, address, gpus_per_run, console=err)
    if not res["interrupted"]:
        a = spec.analysis
        fits, path = report_sweep(workdir, spec.name, a.bootstrap, a.fit_params, a.forecast_holdout)
        res["report"] = str(path)
        from scalelab.studies.scaling import headline

        res["fits"] = headline(fits)
        err.print(f"report: {path}")
    if json_out:
        print(json.dumps(res, default=str))
    if res["interrupted"]:
        raise typer.Exit(130)


def print_plan(spec, workdir: Path, json_out: bool) -> None:
    from scalelab.store import RunStore
    from scalelab.sweep.estimate import estimate_seconds
    from scalelab.sweep.spec import plan

    runs, notes = plan(spec, workdir)
    est = estimate_seconds(runs, workdir)
    store = RunStore.in_workdir(workdir) if (Path(workdir) / "scalelab.db").exists() else None
    rows = []
    for r, s in zip(runs, est):
        prior = store.find_runs(config_hash=r.config_hash, group=spec.name) if store else []
        rows.append({"name": r.name, "params": r.params, "params_nonembed": r.params_nonembed, "tokens": r.tokens,
                     "iters": r.iters, "flops": r.flops, "est_s": round(s, 1),
                     "status": prior[-1]["status"] if prior else "new"})  # fmt: skip
    if json_out:
        print(json.dumps({"sweep": spec.name, "runs": rows, "notes": notes, "est_total_s": sum(est)}))
        return
    table = Table(title=f"sweep {spec.name}: {len(rows)} runs, about {sum(est) / 60:.1f} min on this machine")
    for c in rows[0]:
        table.add_column(c, justify="left" if c in ("name", "status") else "right")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row.values()])
    Console(width=160).print(table)
    for n in notes:
        err.print(n)


def report_cmd(
    workdir: Path = typer.Argument(Path(DEFAULT_WORKDIR), help="The work directory holding scalelab.db."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="One sweep (default: every sweep in the store)."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap refits for the intervals."),
    json_out: bool = typer.Option(False, "--json"),
):
    """Fit and draw the report of each sweep in a work directory (self-contained HTML + Markdown)."""
    from scalelab.store import RunStore

    if not (Path(workdir) / "scalelab.db").exists():
        raise UserError(f"no run store in {workdir}; give the work directory of a sweep")
    rows = RunStore.in_workdir(workdir).list_runs(["grp"])
    groups = [sweep] if sweep else sorted({r["grp"] for r in rows if r["grp"]})
    if not groups:
        raise UserError(f"no sweeps in {workdir}; run `scalelab sweep SPEC.toml` first")
    out = {}
    for g in groups:
        _, path = report_sweep(workdir, g, bootstrap)
        out[g] = str(path)
        if not json_out:
            print(f"{g}: {path}")
    if json_out:
        print(json.dumps({"reports": out}))
