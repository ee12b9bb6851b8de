"""The preference study: its config, its staged plan, and a micro study end to end through the study runner,
killed mid-way and resumed without repeating finished runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies.runner import load_study_config, run_study

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MICRO = """
name = "pref-micro"
sizes = ["3xs", "2xs"]
context = 64
corpus_max_documents = 40
pretrain_iters = 10
pretrain_batch = 4
target = "arith"
data_max = 160
test_fraction = 0.3
n_train = 48
n_test = 32
efficiency_n = [16, 48]
pmp = "arith"
pmp_formats = ["binary", "ranked"]
pmp_max = 24
min_steps = 3
batch_size = 8
threads = 1
device = "cpu"
"""


def test_plan_is_staged_and_every_pm_names_a_finished_earlier_run(tmp_path, micro):
    module, config = load_study_config("preference", micro)
    runs = module.plan(config, tmp_path)
    by_name = {r.name: r for r in runs}
    assert len(by_name) == len(runs) == 25
    assert {r.name for r in runs if r.kind == "lm"} == {"backbone-3xs", "backbone-2xs"}
    assert all(r.stage == 0 for r in runs if r.kind == "lm")
    for r in (r for r in runs if r.kind == "pm"):
        parent = by_name[r.cfg.base.removeprefix("run:")]
        assert r.cfg.base.startswith("run:") and parent.stage < r.stage and r.cfg.group == "pref-micro"
        assert r.cfg.base_config_hash == parent.config_hash  # a PM never trains on a stale backbone
    assert by_name["pm-2xs-binary-rankedpmp-n16"].stage == 2 and by_name["pmp-ranked-2xs"].cfg.binarize is False
    # another backbone recipe changes every PM's hash, so finished PMs of the old backbones are not reused
    _, longer = load_study_config("preference", micro, ["pretrain_iters=11"])
    changed = {r.name: r.config_hash for r in module.plan(longer, tmp_path)}
    assert all(changed[r.name] != r.config_hash for r in runs)


@pytest.mark.slow
def test_pmp_sets_from_train_documents_still_split_into_train_and_test(tmp_path, micro):
    """The PMP set holds only the target's train documents; split with the target's seed, its test part
    would be empty (the hash below 0.1 is also below the target's test fraction)."""
    from scalelab.align.pm_data import split_set
    from scalelab.data.comparisons import load_comparisons

    over = ["target='code:stdlib'", "pmp='corruptions:stdlib'", "data_max=120", "pmp_max=60", "sizes=['3xs']",
            "context=128", "corpus_max_documents=150"]
    module, config = load_study_config("preference", micro, over)
    pmp_runs = [r for r in module.plan(config, tmp_path) if r.name.startswith("pmp-")]
    assert pmp_runs and not any(Path(r.cfg.data).exists() for r in pmp_runs)  # the plan only names the sets
    module.prepare(config, tmp_path)
    for r in pmp_runs:
        comparisons, _ = load_comparisons(r.cfg.data)
        assert all("doc" in c.meta for c in comparisons)
        train, test = split_set(comparisons, r.cfg.test_fraction, r.cfg.split_seed)
        assert train and test


def test_a_dry_run_plans_without_building_the_comparison_sets(tmp_path, micro):
    out = run_study("preference", micro, workdir=tmp_path, dry_run=True, progress=False)
    assert out["dry_run"] and out["totals"]["runs"] == 25
    assert not (tmp_path / "studies").exists()


def test_config_errors_name_the_key(micro):
    with pytest.raises(UserError, match="sizez"):
        load_study_config("preference", micro, ["sizez=['xs']"])
    with pytest.raises(UserError, match="objectives"):
        load_study_config("preference", micro, ["objectives=['rank']"])
    with pytest.raises(UserError, match="no preset 'huge'"):
        load_study_config("preference", "huge")
    assert load_study_config("preference", "full")[1].context == 1024
    assert load_study_config("preference", "quick")[1].name == "preference-quick"


def _completed(workdir: Path) -> dict[str, dict]:
    if not (workdir / "scalelab.db").exists():
        return {}
    store = RunStore.in_workdir(workdir)
    try:
        return {r["id"]: r for r in store.find_runs(group="pref-micro", status="completed")}
    finally:
        store.close()


@pytest.mark.slow
def test_micro_study_resumes_after_a_kill_without_repeating_finished_runs(tmp_path, micro):
    workdir = tmp_path / "w"
    code = (f"from scalelab.studies.runner import run_study; "
            f"run_study('preference', {micro!r}, workdir={str(workdir)!r})")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(r["name"].startswith("pm-") for r in _completed(workdir).values()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished (or died) before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _completed(workdir)
    assert 3 <= len(before) < 25

    result = run_study("preference", micro, workdir=workdir, progress=False)
    assert result["failed"] == 0 and result["planned"] == 25
    assert result["skipped"] == len(before) and result["ran"] == 25 - len(before)
    after = _completed(workdir)
    assert all(after[i]["finished_at"] == r["finished_at"] for i, r in before.items())  # not trained again
    out = result["results"]
    assert not out["missing"] and Path(result["report"]).is_file()
    assert {(r["size"], r["objective"], r["pmp"]) for r in out["by_size"]} >= {("2xs", "ranked", "binary"),
                                                                               ("3xs", "imitation", None)}
    assert {r["n_train"] for r in out["efficiency"]} == {16, 48}
    curves = {(r["objective"], r["pmp"]) for r in out["efficiency"]}
    assert curves == {(o, p) for o in ("ranked", "binary") for p in (None, "binary", "ranked")} | {("imitation", None)}
    assert {r["pmp"] for r in out["pmp_stages"]} == {"binary", "ranked"} and len(out["zero_shot"]) == 2
    assert all(0 <= r["lo"] <= r["accuracy"] <= r["hi"] <= 1 for r in out["by_size"])
    assert "Headline" in result["summary"] and len(out["calibration"]) == 3
    json.dumps(result)

    again = run_study("preference", micro, workdir=workdir, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 25
    assert [r["accuracy"] for r in again["results"]["by_size"]] == [r["accuracy"] for r in out["by_size"]]
