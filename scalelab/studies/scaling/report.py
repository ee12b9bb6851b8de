"""The report of any scaling sweep in a store (`scalelab sweep`, `scalelab report`): analyse, write.

The fits are kept beside the report under a key of what they read (`report.cache.load_results`): the
group's runs (sizes, tokens, FLOPs, final losses, status), their validation curves, the analysis
options and the fitting code. Redrawing a report whose numbers did not change (new figure code, a
`--redraw`, a train-loss metric added) reuses them; the numbers shown are the same to the last digit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scalelab.report.paths import report_path
from scalelab.studies.scaling.analyze import RUN_KEYS, analyze_group
from scalelab.studies.scaling.config import Analysis
from scalelab.studies.scaling.figures import write

FIT_CODE = ["laws", "studies/scaling/analyze.py", "studies/scaling/config.py"]
"""The modules whose code computes the fits: an edit to one of them refits."""


def fits_key(store, group: str, analysis: Analysis, seeds: int = 1) -> str | None:
    """A hash of everything `analyze_group` reads; None while a run of the group runs (its curve moves)."""
    from scalelab.report.cache import code_stamp

    runs = store.list_runs([*RUN_KEYS], group=group)
    if any(r["status"] in ("running", "created") for r in runs):
        return None
    curves = store.metric_series([r["id"] for r in runs], "val", "loss")
    blob = json.dumps([runs, curves, analysis.model_dump(), seeds, code_stamp(FIT_CODE)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def analyze_cached(store, workdir: str | Path, group: str, analysis: Analysis, seeds: int = 1) -> dict:
    """`analyze_group`, or the fits kept from an earlier call on the same numbers, options and code."""
    from scalelab.report.cache import load_results, save_results

    key = fits_key(store, group, analysis, seeds)
    res = load_results(workdir, group, "fits", key)
    if res is None:
        res = analyze_group(store, group, analysis, seeds=seeds)
        save_results(workdir, group, "fits", key, res)
    return res


def report_sweep(workdir: str | Path, sweep: str, analysis: Analysis | None = None) -> tuple[dict, Path]:
    """Fit the scaling laws of store group `sweep` (Kaplan 2020, Hoffmann 2022) and write
    `<workdir>/reports/<sweep>.html`; returns (the analysis, the report path)."""
    from scalelab.store import RunStore

    analysis = analysis or Analysis()
    path = report_path(workdir, sweep)  # refuses a path-like name before any work
    store = RunStore.in_workdir(workdir)
    res = analyze_cached(store, workdir, sweep, analysis)
    return res, write(res, store, path)
