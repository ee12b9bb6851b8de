"""`scalelab study NAME`: any registered study, run the same way (see `scalelab.studies`).

    scalelab study NAME [--preset P] [--set k=v ...] [--dry-run] [--json] [--workdir W]
                        [--executor local|ray] [--workers N] [--address A] [--gpus-per-run G] [--retry-failed]
                        [--paper-table]   (studies with a built-in published table: train nothing, fit it)

Progress goes to stderr; with --json the result is one JSON object on the last stdout line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scalelab import studies
from scalelab.cli.common import JsonOpt, SetOpt, WorkdirOpt, err, note, out, print_json, rows_table, say
from scalelab.errors import UserError

STUDIES: dict[str, str] = getattr(studies, "STUDIES", {})  # TEMP until the runner lands on main

PLAN_LEFT = ("name", "kind", "status")


def check_study(name: str) -> str:
    if name not in STUDIES:
        known = "; ".join(f"{k} ({v})" for k, v in STUDIES.items())
        raise UserError(f"no study {name!r}; the studies are: {known}")
    return name


def study_cmd(
    name: str = typer.Argument(..., metavar="NAME", help=f"The study: {', '.join(STUDIES)}."),
    preset: str = typer.Option("quick", "--preset", help="A shipped preset (quick: 2 CPU cores, full: one "
                               "GPU, ...) or the path of a TOML file."),
    set_: Optional[list[str]] = SetOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (runs, sizes, tokens, FLOPs, state in "
                                 "the store); train nothing."),
    json_out: bool = JsonOpt,
    workdir: Path = WorkdirOpt,
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Runs trained at once (default: the "
                                          "preset's `workers`, else 1)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to join ('auto', 'ray://...')."),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", min=0.0, help="Ray resource request per run."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Retry runs that failed before."),
    paper_table: bool = typer.Option(False, "--paper-table", help="Train nothing: analyse the paper's own "
                                     "published table (studies with a built-in table: efficiency)."),
):
    """Run a paper's study end to end: plan, train (resumable, finished runs reused), analyze, report."""
    check_study(name)
    from scalelab.studies.runner import run_study, study_module

    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor!r}: use 'local' or 'ray'")
    if paper_table:
        set_ = [*(set_ or []), "paper_table=true"]
        if "paper_table" not in study_module(name).Config.model_fields:
            with_table = [s for s in STUDIES if "paper_table" in study_module(s).Config.model_fields]
            raise UserError(f"study {name!r} has no built-in paper table, so --paper-table does not apply to it; "
                            f"studies that have one: {', '.join(with_table) or 'none'}")
    res = run_study(name, preset, set_, workdir, dry_run=dry_run, executor=executor, workers=workers,
                    address=address, gpus_per_run=gpus_per_run, retry_failed=retry_failed, progress=True,
                    console=err)  # fmt: skip
    if json_out:
        print_json(res)
    elif dry_run:
        print_plan(res)
    else:
        say(res.get("summary") or "")
        say(f"runs: {res.get('planned')} planned, {res.get('skipped')} already done, {res.get('ran')} ran, "
            f"{res.get('failed')} failed")  # fmt: skip
        if res.get("report"):
            say(f"report: {res['report']}")
    if res.get("interrupted"):
        note(f"interrupted: run `scalelab study {name}` with the same options again to resume")
        raise typer.Exit(130)


def print_plan(res: dict) -> None:
    rows = res.get("runs") or []
    totals = res.get("totals") or {}
    title = f"study {res['study']} ({res['preset']}): {len(rows)} runs in group {res['group']}"
    if rows:
        out.print(rows_table(rows, title, left=PLAN_LEFT, spec=".3g"))
    else:
        say(title)
    if totals:
        say("totals: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in totals.items()))
