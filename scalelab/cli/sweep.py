"""`scalelab sweep`, `scalelab report`: families of runs, their fits and their report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from scalelab.cli.common import DEFAULT_WORKDIR, JsonOpt, WorkdirOpt, err, note, out, print_json, rows_table, say
from scalelab.errors import UserError


def sweep_cmd(
    spec_path: Path = typer.Argument(..., metavar="SPEC.toml", help="The sweep spec."),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    workers: int = typer.Option(1, "--workers", min=1, help="Runs trained at once."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan with time estimates; train nothing."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry runs that failed before."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join ('auto', 'ray://...')."),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", min=0.0, help="Ray resource request per run."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a spec key (budget.min_iters=5)."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Plan and run a family of runs (resumable; finished runs are skipped), then fit and report."""
    from scalelab.report.paths import report_stem
    from scalelab.sweep.spec import load_spec

    spec = load_spec(spec_path, set_)
    report_stem(spec.name)  # a path-like name is refused before anything runs
    if dry_run:
        print_plan(spec, workdir, json_out)
        return
    from scalelab.studies.scaling import headline
    from scalelab.studies.scaling.config import Analysis
    from scalelab.studies.scaling.report import report_sweep
    from scalelab.sweep.run import run_sweep

    res = run_sweep(spec, workdir, executor, workers, retry_failed, address, gpus_per_run, console=err)
    if not res["interrupted"]:
        a = spec.analysis
        fits, path = report_sweep(workdir, spec.name, Analysis(power_params=a.fit_params, bootstrap=a.bootstrap))
        _remember_report(workdir, spec.name, path, a.bootstrap, a.fit_params)  # `scalelab report` then keeps it
        res["report"] = str(path)
        from scalelab.interop.trackers import attach_report, trackers_of
        from scalelab.sweep.spec import plan

        attach_report(trackers_of(plan(spec, workdir)[0]), workdir, spec.name, path)
        res["fits"] = headline(fits)
        note(f"report: {path}")
    if json_out:
        print_json(res)
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
        print_json({"sweep": spec.name, "runs": rows, "notes": notes, "est_total_s": sum(est)})
        return
    title = f"sweep {spec.name}: {len(rows)} runs, about {sum(est) / 60:.1f} min on this machine"
    out.print(rows_table(rows, title, left=("name", "status"), spec=".3g"))
    for n in notes:
        note(n)


def report_cmd(
    workdir: Path = typer.Argument(Path(DEFAULT_WORKDIR), help="The work directory holding scalelab.db."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="One sweep (default: every sweep in the store)."),
    bootstrap: int = typer.Option(200, "--bootstrap", min=0, help="Bootstrap refits for the intervals."),
    redraw: bool = typer.Option(False, "--redraw", help="Draw again even if nothing changed (fits are redone only "
                                "when the numbers they read, the options or the code changed)."),  # fmt: skip
    json_out: bool = JsonOpt,
):
    """Fit and draw the report of each sweep in a work directory (self-contained HTML + Markdown).

    A report whose runs, metrics, options and code are unchanged since it was drawn is kept as it is
    (see `scalelab.report.cache`); --redraw draws it again anyway. The fits behind a report are kept
    too and reused while the numbers they read, the options and the fitting code are unchanged.
    """
    # NumPy is first imported below, only when a report is redrawn; its fits are too small for a second
    # OpenBLAS thread, whose start costs up to 0.07 s of the import (with one thread the products are bit-identical)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from scalelab.report.cache import cached_report, content_key, remember
    from scalelab.store import RunStore

    if not (Path(workdir) / "scalelab.db").exists():
        raise UserError(f"no run store in {workdir}; give the work directory of a sweep")
    store = RunStore.in_workdir(workdir, readonly=True)
    rows = store.list_runs(["grp"])
    groups = [sweep] if sweep else sorted({r["grp"] for r in rows if r["grp"]})
    if not groups:
        raise UserError(f"no sweeps in {workdir}; run `scalelab sweep SPEC.toml` first")
    reports = {}
    for i, g in enumerate(groups, 1):
        key = content_key(store, g, _report_options(bootstrap), REPORT_CODE)
        path = None if redraw else cached_report(workdir, g, key)
        if path is not None:
            note(f"[{i}/{len(groups)}] {g}: runs and metrics unchanged since the last report; kept (--redraw redraws)")
        else:
            from scalelab.studies.scaling.config import Analysis
            from scalelab.studies.scaling.report import report_sweep

            note(f"[{i}/{len(groups)}] {g}: fitting the laws ({bootstrap} bootstrap refits) and drawing the report")
            _, path = report_sweep(workdir, g, Analysis(bootstrap=bootstrap))
            remember(path, key)
        reports[g] = str(path)
        if not json_out:
            say(f"{g}: {path}")
    store.close()
    if json_out:
        print_json({"reports": reports})


# the packages whose code draws a sweep report: an edit to one of their modules redraws every report
REPORT_CODE = ["studies/scaling", "report", "laws"]


def _report_options(bootstrap: int, power_params: str = "nonembed") -> dict:
    """The options a sweep report is drawn with (part of its content key); plain values, so that checking a
    kept report imports no config classes."""
    return {"bootstrap": bootstrap, "power_params": power_params}


def _remember_report(workdir: Path, group: str, path: Path, bootstrap: int, power_params: str) -> None:
    from scalelab.report.cache import content_key, remember
    from scalelab.store import RunStore

    store = RunStore.in_workdir(workdir, readonly=True)
    remember(path, content_key(store, group, _report_options(bootstrap, power_params), REPORT_CODE))
    store.close()


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
    app.command("report")(report_cmd)
