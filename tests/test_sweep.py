"""Sweeps: planning, budgets, idempotent and resumable execution, failure isolation, executors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.sweep.run import run_sweep
from scalelab.sweep.spec import load_spec, plan

BASE = {
    "data": {"source": "stdlib", "max_documents": 60},
    "model": {"recipe": "modern", "block_size": 32},
    "train": {"batch_size": 8, "eval_batches": 2, "log_every": 5, "device": "cpu", "threads": 1, "lr": 3e-3},
}


def _spec(**kw):
    raw = {"name": "t", "base": json.loads(json.dumps(BASE)), "grid": {"model.size": ["L1", "L2"]},
           "budget": {"mode": "tokens_per_param", "tokens_per_param": 0.3, "min_iters": 5}, "evals_per_run": 3}
    raw.update(kw)
    return load_spec(None, raw=raw)


def test_plan_budgets_and_flops(tmp_path):
    runs, notes = plan(_spec(), tmp_path)
    assert [r.name for r in runs] == ["t-size=L1", "t-size=L2"] and not notes
    for r in runs:
        assert r.iters == round(0.3 * r.params / (8 * 32))
        assert r.tokens == r.iters * 8 * 32 and r.flops == r.tokens * r.flops_per_token
        assert r.cfg.train.iters == r.iters and r.cfg.train.eval_every == max(1, r.iters // 3)
    iso = _spec(budget={"mode": "isoflop", "flops": [2e9, 8e9], "min_iters": 2})
    runs, _ = plan(iso, tmp_path)
    assert len(runs) == 4
    for r in runs:
        assert abs(r.flops - r.axes["flops"]) / r.axes["flops"] < 0.15  # rounded to whole steps
    fixed = _spec(budget={"mode": "fixed"}, grid={"train.lr": [1e-3, 3e-3]})
    assert [r.cfg.train.lr for r in plan(fixed, tmp_path)[0]] == [1e-3, 3e-3]


def test_spec_errors(tmp_path):
    with pytest.raises(UserError, match="unknown key 'budget.tokens_per_parm'"):
        load_spec(None, raw={"budget": {"tokens_per_parm": 3}})
    with pytest.raises(UserError, match="base"):
        load_spec(None, raw={"base": {"train": {"lrr": 1}}})
    with pytest.raises(UserError, match="plans no runs"):
        plan(_spec(budget={"mode": "tokens_per_param", "tokens_per_param": 1e-6}), tmp_path)


def test_rerun_skips_finished_and_failed_run_does_not_stop_others(tmp_path):
    spec = _spec(grid={"model.size": ["L1", "L2"], "train.lr": [3e-3, 1e30]},
                 base=BASE | {"train": BASE["train"] | {"grad_clip": 0.0, "warmup_iters": 0}}, warmup_fraction=None)
    res = run_sweep(spec, tmp_path)
    assert res["planned"] == 4 and res["completed"] == 2 and res["failed"] == 2
    store = RunStore.in_workdir(tmp_path)
    failed = [r for r in store.find_runs(group="t") if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["error"] for r in failed)
    again = run_sweep(spec, tmp_path)
    assert again["ran"] == 0 and again["skipped"] == 4 and len(store.find_runs(group="t")) == 4
    retry = run_sweep(spec, tmp_path, retry_failed=True)
    assert retry["ran"] == 2 and retry["failed"] == 2 and len(store.find_runs(group="t")) == 4
    m = store.metrics_df([r["id"] for r in store.find_runs(group="t", status="completed")], name="loss")
    assert set(m.split) >= {"train", "val"}


def test_local_workers_and_report(tmp_path):
    spec = _spec(grid={"model.size": ["L1", "L2", "L3", "L4"]},
                 budget={"mode": "tokens_per_param", "tokens_per_param": 0.1, "min_iters": 5})
    res = run_sweep(spec, tmp_path, workers=2)
    assert res["completed"] == 4
    from scalelab.studies.scaling.config import Analysis
    from scalelab.studies.scaling.report import report_sweep

    fits, path = report_sweep(tmp_path, "t", Analysis(bootstrap=20))
    assert path.exists() and path.with_suffix(".md").exists()
    html = path.read_text()
    assert "data:image/png;base64" in html and all(r["id"] in html for r in fits["runs"])
    assert "power_N" in fits["fits"]


def test_killed_sweep_loses_nothing_and_repeats_nothing(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(
        'name = "k"\nevals_per_run = 4\n[base.data]\nsource = "stdlib"\nmax_documents = 60\n'
        '[base.model]\nrecipe = "modern"\nblock_size = 32\n'
        '[base.train]\nbatch_size = 8\neval_batches = 2\ndevice = "cpu"\nthreads = 1\nlog_every = 5\n'
        '[grid]\n"model.size" = ["L1", "L2", "L3"]\n'
        '[budget]\nmode = "tokens_per_param"\ntokens_per_param = 0.2\n'
    )
    wd = tmp_path / "w"
    cmd = [sys.executable, "-m", "scalelab", "sweep", str(spec_file), "--workdir", str(wd), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = wd / "scalelab.db"
    deadline = time.time() + 120
    done_first = False
    while time.time() < deadline and not done_first:  # kill -9 once the first run finished
        time.sleep(0.3)
        if db.exists():
            done_first = any(r["status"] == "completed" for r in RunStore(db).find_runs(group="k"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done_first
    before = {r["id"]: r["status"] for r in RunStore(db).find_runs(group="k")}
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    after = {x["id"]: x["status"] for x in RunStore(db).find_runs(group="k")}
    assert set(after) == set(before) | set(after) and len(after) == 3  # no duplicate runs
    assert all(s == "completed" for s in after.values())
    finished_before = [i for i, s in before.items() if s == "completed"]
    assert res["skipped"] == len(finished_before) and res["ran"] == 3 - len(finished_before)
    assert "report" in res


def test_ray_executor_local_instance(tmp_path):
    pytest.importorskip("ray")
    spec = _spec(budget={"mode": "tokens_per_param", "tokens_per_param": 0.1, "min_iters": 5})
    res = run_sweep(spec, tmp_path, executor="ray", workers=2)
    assert res["completed"] == 2 and res["failed"] == 0
    runs = RunStore.in_workdir(tmp_path).find_runs(group="t")
    assert all(r["final_val_loss"] is not None for r in runs)


def test_points_and_probes(tmp_path):
    spec = _spec(grid={"model.size": ["L1"]}, probes=True,
                 points=[{"data.repeat_fraction": 0.0}, {"data.repeat_fraction": 0.5, "data.repeat_epochs": 4}],
                 budget={"mode": "fixed"}, base=BASE | {"train": BASE["train"] | {"iters": 12}})
    runs, _ = plan(spec, tmp_path)
    assert [r.name for r in runs] == ["t-size=L1-repeat_fraction=0", "t-size=L1-repeat_fraction=0.5-repeat_epochs=4"]
    res = run_sweep(spec, tmp_path)
    assert res["completed"] == 2
    store = RunStore.in_workdir(tmp_path)
    m = store.metrics_df([r["id"] for r in store.find_runs(group="t")])
    names = set(m[m.split == "eval"].name)
    assert {"induction_max", "copy_loss_first", "copy_loss_later", "icl_score"} <= names
    assert set(m[m.split == "repeated"].run_id) == {r["id"] for r in store.find_runs(group="t") if "0.5" in r["name"]}
