"""`scalelab report` keeps a report whose runs, metrics, options and code are unchanged (issue 13)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scalelab.lease import RunLease
from scalelab.report.cache import cached_report, content_key, remember
from scalelab.report.paths import report_path
from scalelab.store import RunStore


def _store(tmp_path):
    store = RunStore.in_workdir(tmp_path)
    rid = store.create_run("a", {"model": {"size": 1}}, "h1", group="g", params=10)
    store.log_metrics(rid, [(1, 10, 60.0, "train", "loss", 3.0), (2, 20, 120.0, "train", "loss", 2.5)])
    store.update_run(rid, status="completed", tokens=20, final_val_loss=2.6)
    return store, rid


def _draw(tmp_path, key):
    path = report_path(tmp_path, "g")
    path.parent.mkdir(parents=True, exist_ok=True)
    for p in (path, path.with_suffix(".md")):
        p.write_text("report")
    path.with_name("g_figures").mkdir(exist_ok=True)
    remember(path, key)
    return path


def test_report_is_kept_until_runs_metrics_options_or_code_change(tmp_path):
    store, rid = _store(tmp_path)
    key = content_key(store, "g", {"bootstrap": 200}, ["report"])
    assert key == content_key(store, "g", {"bootstrap": 200}, ["report"])  # stable
    assert cached_report(tmp_path, "g", key) is None  # never drawn
    path = _draw(tmp_path, key)
    assert cached_report(tmp_path, "g", key) == path
    assert content_key(store, "g", {"bootstrap": 100}, ["report"]) != key  # other options
    assert content_key(store, "g", {"bootstrap": 200}, ["report", "laws"]) != key  # other code
    store.log_metrics(rid, [(3, 30, 180.0, "val", "loss", 2.4)])  # a new metric
    new = content_key(store, "g", {"bootstrap": 200}, ["report"])
    assert new != key and cached_report(tmp_path, "g", new) is None
    store.update_run(rid, final_val_loss=2.5)  # a changed final loss
    assert content_key(store, "g", {"bootstrap": 200}, ["report"]) != new
    path.with_suffix(".md").unlink()  # a missing file: drawn again
    assert cached_report(tmp_path, "g", key) is None


def test_a_group_with_a_running_run_is_always_redrawn(tmp_path):
    store, _ = _store(tmp_path)
    rid = store.create_run("b", {"model": {"size": 2}}, "h2", group="g")
    store.update_run(rid, status="running")
    with RunLease(store.run_dir(rid), rid):  # a live trainer holds the run
        assert content_key(store, "g", {}, []) is None
        assert cached_report(tmp_path, "g", None) is None
    assert content_key(store, "g", {}, []) is not None  # its trainer died: interrupted, a settled state


@pytest.mark.slow
def test_report_command_keeps_an_unchanged_report_and_redraws_on_request(tmp_path):
    store = RunStore.in_workdir(tmp_path)
    for i, n in enumerate([1e4, 3e4, 1e5, 3e5, 1e6]):
        rid = store.create_run(f"r{i}", {"model": {"size": n}}, f"h{i}", group="g", params=int(n),
                               params_nonembed=int(n), flops_per_token=6 * n)  # fmt: skip
        loss = 1.5 + 30 * n**-0.3
        store.log_metrics(rid, [(s, int(20 * n * s / 4), 0.0, "val", "loss", loss + 0.5 / s) for s in range(1, 5)])
        store.update_run(rid, status="completed", tokens=int(20 * n), flops=120 * n * n, final_val_loss=loss)
    store.close()

    def report(*extra):
        r = subprocess.run([sys.executable, "-m", "scalelab", "report", str(tmp_path), "--bootstrap", "0", *extra],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stderr

    assert "fitting the laws" in report()
    page = report_path(tmp_path, "g")
    stamp = page.stat().st_mtime_ns
    assert "unchanged" in report() and page.stat().st_mtime_ns == stamp  # kept as it was
    assert "fitting the laws" in report("--redraw")
    assert "fitting the laws" in report("--bootstrap", "1")  # other options: drawn again
