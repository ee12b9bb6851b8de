"""`scalelab demo`: the main job. The scaling study's `demo` preset (small runs whose fitted law forecasts
the largest one, with intervals, in an HTML report), then a sample from the largest model."""

from __future__ import annotations

from pathlib import Path

import typer

from scalelab.cli.common import JsonOpt, WorkdirOpt, err, note, print_json, say

RUN_KEYS = ("planned", "skipped", "ran", "wall_s")
PROMPT = "def "  # the demo trains on Python source: a sample that starts a function reads naturally


def demo_cmd(workdir: Path = WorkdirOpt, json_out: bool = JsonOpt):
    """Small models on the embedded corpus: a law fitted on the small ones forecasts the largest; then a sample."""
    from scalelab.studies.runner import run_study
    from scalelab.studies.scaling import headline

    res = run_study("scaling", "demo", None, workdir, progress=True, console=err)
    if res.get("interrupted"):
        note("interrupted: run `scalelab demo` again to resume")
        if json_out:
            print_json(res)
        raise typer.Exit(130)
    results = res.get("results") or {}
    show = note if json_out else say
    show(res.get("summary") or "")
    largest = _largest_completed(workdir, res["group"])
    text = ""
    if largest is not None:
        from scalelab.sampling import sample_text

        text = sample_text(largest["id"], PROMPT, 160, 0.8, 50, 0, workdir)
        show(f"a sample from the largest model ({largest['params']:,} parameters):")
        show(PROMPT + text)
    show(f"report: {res.get('report')}")
    if json_out:
        fits = headline(results)
        print_json({"report": res.get("report"), "sample": text, **{k: res.get(k) for k in RUN_KEYS}, "fits": fits})


def _largest_completed(workdir: Path, group: str) -> dict | None:
    from scalelab.store import RunStore

    rows = RunStore.in_workdir(workdir).find_runs(group=group, status="completed")
    return max(rows, key=lambda r: r["params"] or 0, default=None)
