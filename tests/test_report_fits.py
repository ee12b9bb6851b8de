"""A report's fits are kept under a key of their inputs: a redraw reuses them, and the page is the same."""

from __future__ import annotations

import numpy as np
import pytest

import scalelab.studies.scaling.report as scaling_report
from scalelab.cli.sweep import REPORT_CODE, _remember_report, _report_options
from scalelab.report.cache import cached_report, content_key
from scalelab.store import RunStore
from scalelab.studies.scaling.config import Analysis


def _fill(workdir, n_runs: int = 8) -> list[str]:
    """A small scaling sweep's store: loss = 1.2 + 40 N^-0.3 plus noise, val curves of 5 points."""
    store = RunStore.in_workdir(workdir)
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n_runs):
        n = [1.2e4, 4e4, 1.2e5, 4e5][i % 4]
        final = 1.2 + 40 * n**-0.3 + rng.normal(0, 0.01)
        rid = store.create_run(f"s{i}", {"model": {"size": n}}, f"h{i}", group="g", params=int(1.1 * n),
                               params_nonembed=int(n), flops_per_token=int(6 * n))  # fmt: skip
        rows = [(s, 1000 * s, 6 * n * 1000 * s, "val", "loss", final + 2.0 / s) for s in range(1, 6)]
        store.log_metrics(rid, rows + [(5, 5000, 30000 * n, "train", "loss", final)])
        store.update_run(rid, status="completed", tokens=5000 * (1 + i // 4), flops=30000 * n, final_val_loss=final)
        ids.append(rid)
    store.close()
    return ids


def _page(path) -> str:
    """The Markdown twin without its 'written at' line."""
    return "\n".join(line for line in path.with_suffix(".md").read_text().splitlines() if "written" not in line)


def test_redraw_reuses_the_fits_and_draws_the_same_page(tmp_path, monkeypatch):
    ids = _fill(tmp_path)
    analysis = Analysis(bootstrap=20)
    res, path = scaling_report.report_sweep(tmp_path, "g", analysis)
    assert res["fits"]["power_N"]["ci"]  # fitted, with intervals
    first = _page(path)

    def no_refit(*a, **k):
        raise AssertionError("refitted although nothing the fits read changed")

    monkeypatch.setattr(scaling_report, "analyze_group", no_refit)
    store = RunStore.in_workdir(tmp_path)
    store.log_metrics(ids[0], [(6, 6000, 1.0, "train", "loss", 0.5)])  # the report changes, not the fits
    store.close()
    res2, path2 = scaling_report.report_sweep(tmp_path, "g", analysis)
    assert path2 == path and _page(path) == first
    assert res2["fits"]["power_N"] == res["fits"]["power_N"]  # the same numbers, to the last digit

    with pytest.raises(AssertionError, match="refitted"):  # other options: fitted again
        scaling_report.report_sweep(tmp_path, "g", Analysis(bootstrap=10))
    store = RunStore.in_workdir(tmp_path)
    store.update_run(ids[1], final_val_loss=9.0)  # a number the fits read
    with pytest.raises(AssertionError, match="refitted"):
        scaling_report.report_sweep(tmp_path, "g", analysis)


def test_a_sweeps_own_report_is_kept_by_scalelab_report(tmp_path):
    _fill(tmp_path)
    _, path = scaling_report.report_sweep(tmp_path, "g", Analysis(bootstrap=10))
    _remember_report(tmp_path, "g", path, 10, "nonembed")
    store = RunStore.in_workdir(tmp_path, readonly=True)
    assert cached_report(tmp_path, "g", content_key(store, "g", _report_options(10), REPORT_CODE)) == path
    assert cached_report(tmp_path, "g", content_key(store, "g", _report_options(200), REPORT_CODE)) is None
