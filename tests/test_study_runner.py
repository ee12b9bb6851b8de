"""The study runner: presets with overrides, dry run, staged execution, reuse of finished runs, one report."""

import json
from types import SimpleNamespace

import pytest
from pydantic import Field

from scalelab.config import _Strict
from scalelab.errors import UserError
from scalelab.studies import runner
from scalelab.sweep.spec import load_spec
from scalelab.sweep.spec import plan as plan_sweep

BASE = {
    "data": {"source": "stdlib", "max_documents": 60},
    "model": {"recipe": "modern", "block_size": 32},
    "train": {"batch_size": 8, "eval_batches": 2, "log_every": 5, "device": "cpu", "threads": 1, "lr": 3e-3},
}


class ToyConfig(_Strict):
    name: str = "toy"
    sizes: list[str] = Field(default_factory=lambda: ["L1", "L2"])
    iters: int = 12
    second_stage: bool = False
    trackers: list[str] = Field(default_factory=list)


def _plan(config, workdir):
    base = json.loads(json.dumps(BASE))
    base["train"]["trackers"] = config.trackers
    spec = load_spec(None, raw={"name": config.name, "base": base,
                                "grid": {"model.size": config.sizes, "train.iters": [config.iters]}})
    runs, _ = plan_sweep(spec, workdir)
    if config.second_stage:
        runs[-1].stage = 1
    return runs


def _analyze(store, config):
    rows = store.find_runs(group=config.name, status="completed")
    return {"losses": {r["name"]: r["final_val_loss"] for r in rows}}


@pytest.fixture
def toy(monkeypatch, tmp_path):
    module = SimpleNamespace(Config=ToyConfig, plan=_plan, analyze=_analyze,
                             summary=lambda res: f"{len(res['losses'])} runs", figures=lambda res, store: [])
    monkeypatch.setattr(runner, "study_module", lambda name: module)
    preset = tmp_path / "toy.toml"
    preset.write_text('name = "toy"\nsizes = ["L1", "L2"]\n')
    return str(preset)


def test_dry_run_then_run_then_reuse(toy, tmp_path):
    work = tmp_path / "w"
    dry = runner.run_study("toy", toy, ["iters=10"], work, dry_run=True, progress=False)
    assert dry["dry_run"] and dry["totals"]["runs"] == 2 and dry["totals"]["new"] == 2
    assert [r["status"] for r in dry["runs"]] == ["new", "new"] and all(r["iters"] == 10 for r in dry["runs"])
    res = runner.run_study("toy", toy, ["iters=10", "second_stage=true"], work, progress=False)
    assert res["ran"] == 2 and res["completed"] == 2 and res["skipped"] == 0
    assert len(res["results"]["losses"]) == 2 and res["summary"] == "2 runs"
    assert (work / "reports" / "toy.html").exists() and (work / "reports" / "toy.md").exists()
    again = runner.run_study("toy", toy, ["iters=10", "second_stage=true"], work, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 2
    dry = runner.run_study("toy", toy, ["iters=10"], work, dry_run=True, progress=False)
    assert [r["status"] for r in dry["runs"]] == ["completed", "completed"]


def test_bad_overrides_and_names(toy, tmp_path):
    with pytest.raises(UserError, match="sizess"):
        runner.run_study("toy", toy, ["sizess=['L1']"], tmp_path, dry_run=True)
    with pytest.raises(UserError, match="letters, digits"):
        runner.run_study("toy", toy, ["name='../../x'"], tmp_path, dry_run=True)
    with pytest.raises(UserError, match="no preset file"):
        runner.run_study("toy", str(tmp_path / "nope.toml"), None, tmp_path, dry_run=True)


def test_unknown_study():
    with pytest.raises(UserError, match="the studies are"):
        runner.study_module("nope")


def test_the_report_goes_to_the_runs_trackers(toy, tmp_path):
    pytest.importorskip("tensorboard")
    work = tmp_path / "w"
    runner.run_study("toy", toy, ["iters=6", "sizes=['L1']", "trackers=['tensorboard']"], work, progress=False)
    folders = sorted(p.name for p in (work / "tensorboard" / "toy").iterdir())
    assert len(folders) == 2 and sum("report" in f for f in folders) == 1  # the run, and the study's report


def test_trackers_of_runs_without_a_train_section():
    from scalelab.interop.trackers import trackers_of

    lm = SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(trackers=["mlflow"])))
    rl = SimpleNamespace(cfg=SimpleNamespace(policy="run:x"))  # an RL/gold-PM spec: no train section
    assert trackers_of([lm, rl]) == ["mlflow"] and trackers_of([rl]) == []


def test_runs_are_planned_again_after_prepare_builds_their_inputs(toy, tmp_path, monkeypatch):
    """A config hash stamps input files by content: the runs trained must be planned once the files exist."""
    work = tmp_path / "w"
    built = work / "inputs.txt"

    def plan(config, workdir):
        return _plan(config.model_copy(update={"iters": 6 if built.exists() else 7}), workdir)

    def prepare(config, workdir):
        built.parent.mkdir(parents=True, exist_ok=True)
        built.write_text("built")

    module = runner.study_module("toy")
    patched = SimpleNamespace(**(vars(module) | {"plan": plan, "prepare": prepare}))
    monkeypatch.setattr(runner, "study_module", lambda name: patched)
    res = runner.run_study("toy", toy, ["sizes=['L1']"], work, progress=False)
    assert res["completed"] == 1 and res["failed"] == 0
    assert [r["config"]["train"]["iters"] for r in res_runs(work)] == [6]


def res_runs(work):
    from scalelab.store import RunStore

    store = RunStore.in_workdir(work, readonly=True)
    try:
        return store.find_runs(group="toy", status="completed")
    finally:
        store.close()
