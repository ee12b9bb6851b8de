"""The report of a scaling sweep: analyze its runs in the store, write the HTML + Markdown report."""

from __future__ import annotations

from pathlib import Path

from scalelab.report.paths import report_path


def report_sweep(workdir: str | Path, sweep: str, n_boot: int = 200, fit_params: str = "nonembed",
                 holdout: int = 1) -> tuple[dict, Path]:  # fmt: skip
    """Fit the scaling laws of sweep `sweep` (Kaplan 2020, Hoffmann 2022) and write
    `<workdir>/reports/<sweep>.html`; returns (the analysis, the report path)."""
    from scalelab.store import RunStore
    from scalelab.studies import scaling

    path = report_path(workdir, sweep)  # refuses a path-like name before any work
    store = RunStore.in_workdir(workdir)
    res = scaling.analyze(store, sweep, fit_params=fit_params, holdout=holdout, n_boot=n_boot)
    return res, scaling.write(res, store, path)
