"""The report of any scaling sweep in a store (`scalelab sweep`, `scalelab report`): analyse, write."""

from __future__ import annotations

from pathlib import Path

from scalelab.report.paths import report_path
from scalelab.studies.scaling.analyze import analyze_group
from scalelab.studies.scaling.config import Analysis
from scalelab.studies.scaling.figures import write


def report_sweep(workdir: str | Path, sweep: str, analysis: Analysis | None = None) -> tuple[dict, Path]:
    """Fit the scaling laws of store group `sweep` (Kaplan 2020, Hoffmann 2022) and write
    `<workdir>/reports/<sweep>.html`; returns (the analysis, the report path)."""
    from scalelab.store import RunStore

    path = report_path(workdir, sweep)  # refuses a path-like name before any work
    store = RunStore.in_workdir(workdir)
    res = analyze_group(store, sweep, analysis or Analysis())
    return res, write(res, store, path)
