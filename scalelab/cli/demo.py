"""`scalelab demo`: the main job. A small scaling study, its fits and forecast, the report, then a sample."""

from __future__ import annotations

from pathlib import Path

from scalelab.cli.common import JsonOpt, WorkdirOpt, err, out, print_json, show_progress


def demo_cmd(workdir: Path = WorkdirOpt, json_out: bool = JsonOpt):
    """A small scaling sweep on the embedded corpus: laws fitted on the small runs forecast the largest."""
    from scalelab.demo import run_demo

    res = run_demo(workdir, progress=show_progress(), console=err if json_out else out)
    if json_out:
        print_json(res)
