"""Experiment trackers: TensorBoard and MLflow logs read back with their own readers; a failing
tracker never fails a run; `runs export` backfills finished runs."""

from __future__ import annotations

import json
import warnings

import pytest

from scalelab.errors import UserError
from scalelab.interop import trackers as tr
from scalelab.store import RunStore
from scalelab.train.loop import train


def _store_series(workdir, run_id, name="loss", split="train") -> dict[int, float]:
    series = RunStore.in_workdir(workdir, readonly=True).metric_series([run_id], split, name)[run_id]
    return {step: value for step, _tokens, _flops, value in series}


def _tb_scalars(folder, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


@pytest.mark.slow  # importing TensorBoard's writer and reader takes seconds
def test_tensorboard_log_reads_back(tiny_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    s = train(tiny_cfg(train__trackers="['tensorboard']", train__iters="12"), tmp_path, progress=False)
    (folder,) = (tmp_path / "tensorboard" / "runs").iterdir()
    assert folder.name.endswith(s["run_id"])
    want = _store_series(tmp_path, s["run_id"])
    got = _tb_scalars(folder, "train/loss")
    assert sorted(got) == sorted(want) == [1, 5, 10, 12]
    assert all(got[k] == pytest.approx(want[k], rel=1e-6) for k in want)
    assert _tb_scalars(folder, "val/loss")[12] == pytest.approx(s["final_val_loss"], rel=1e-6)
    assert _tb_scalars(folder, "final/final_val_loss")[12] == pytest.approx(s["final_val_loss"], rel=1e-6)


def _mlflow_run(workdir, run_id, experiment="scalelab"):
    client = tr.MLflowTracker.client(workdir)
    found = tr.MLflowTracker.find(client, experiment, run_id)
    assert found is not None
    return client, found


@pytest.mark.slow  # MLflow creates its SQLite schema (alembic migrations): several seconds
def test_mlflow_log_reads_back_and_backfill(tiny_cfg, tmp_path):
    pytest.importorskip("mlflow")
    from typer.testing import CliRunner

    from scalelab.cli.app import app

    s = train(tiny_cfg(train__trackers="['mlflow']", train__iters="12"), tmp_path, progress=False)
    client, run = _mlflow_run(tmp_path, s["run_id"])
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert history == pytest.approx(_store_series(tmp_path, s["run_id"]))
    assert run.info.status == "FINISHED" and run.info.run_name == s["name"]
    assert run.data.params["train.iters"] == "12" and json.loads(run.data.params["train.trackers"]) == ["mlflow"]
    assert run.data.metrics["final/final_val_loss"] == pytest.approx(s["final_val_loss"])

    plain = train(tiny_cfg(train__iters="6"), tmp_path, progress=False)  # no tracker: backfilled below
    args = ["runs", "export", "--to", "mlflow", "--workdir", str(tmp_path), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["exported"] == [plain["run_id"]] and out["skipped"] == [s["run_id"]]
    client, run = _mlflow_run(tmp_path, plain["run_id"])
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val/loss")}
    assert history == pytest.approx(_store_series(tmp_path, plain["run_id"], split="val"))
    again = json.loads(CliRunner().invoke(app, args).stdout.strip().splitlines()[-1])
    assert again["exported"] == []


@pytest.mark.slow
def test_tensorboard_backfill(tiny_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from typer.testing import CliRunner

    from scalelab.cli.app import app

    s = train(tiny_cfg(train__iters="6"), tmp_path, progress=False, group="grp")
    args = ["runs", "export", "--to", "tensorboard", "--group", "grp", "-w", str(tmp_path), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["exported"] == [s["run_id"]]
    (folder,) = (tmp_path / "tensorboard" / "grp").iterdir()
    assert _tb_scalars(folder, "train/loss") == pytest.approx(_store_series(tmp_path, s["run_id"]))
    res = CliRunner().invoke(app, ["runs", "export", "--to", "neptune", "-w", str(tmp_path)])
    assert isinstance(res.exception, UserError) and "'tensorboard', 'mlflow', 'wandb'" in str(res.exception)
    assert "grp" in CliRunner().invoke(app, ["runs", "-w", str(tmp_path)]).stdout  # `runs` still lists


class Exploding:
    name = "exploding"
    calls: list[str] = []

    def start(self, info):
        Exploding.calls.append("start")

    def log(self, rows):
        Exploding.calls.append("log")
        raise RuntimeError("disk full")

    def finish(self, status, summary):  # never reached: dropped after the first failure
        Exploding.calls.append("finish")


class Recording:
    name = "recording"
    rows: list = []
    final: list = []

    def start(self, info):
        self.info = info

    def log(self, rows):
        Recording.rows += rows

    def finish(self, status, summary):
        Recording.final.append((status, summary["final_val_loss"]))


def test_a_failing_tracker_warns_once_and_the_run_goes_on(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(tr, "FACTORIES", {"tensorboard": Exploding, "mlflow": Recording})
    Exploding.calls.clear(), Recording.rows.clear(), Recording.final.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = train(tiny_cfg(train__trackers="['tensorboard', 'mlflow']"), tmp_path, progress=False)
    mine = [w for w in caught if issubclass(w.category, tr.TrackerWarning)]
    assert len(mine) == 1 and "disk full" in str(mine[0].message) and "'tensorboard'" in str(mine[0].message)
    assert s["status"] == "completed" and Exploding.calls == ["start", "log"]
    assert Recording.final == [("completed", s["final_val_loss"])]  # the other tracker kept going
    assert {(r[0], r[4]) for r in Recording.rows if r[3] == "train"} >= {(30, "loss"), (1, "loss")}


def test_tracker_not_installed_warns(tmp_path, monkeypatch):
    class Missing:
        name = "wandb"

        def start(self, info):
            raise ImportError("No module named 'wandb'", name="wandb")

    monkeypatch.setattr(tr, "FACTORIES", {"wandb": Missing})
    with pytest.warns(tr.TrackerWarning, match=r"wandb is not installed \(pip install 'scalelab\[track\]'\)"):
        t = tr.Trackers(["wandb"], tr.RunInfo("r1", "n", None, {}, tmp_path))
    assert t.active == {}
    t.log([(1, 0, 0.0, "train", "loss", 1.0)])  # nothing left to call: no error


def test_trackers_config_is_checked_and_does_not_change_the_hash(tiny_cfg):
    with pytest.raises(UserError, match="trackers"):
        tiny_cfg(train__trackers="['neptune']")
    assert tiny_cfg(train__trackers="['mlflow']").config_hash() == tiny_cfg().config_hash()


def test_a_report_is_attached_to_a_run_of_its_group_and_a_failure_only_warns(tmp_path, monkeypatch):
    seen = []

    class Keeps:
        def start(self, info):
            seen.append(("start", info.run_id, info.group))

        def artifact(self, path):
            seen.append(("artifact", path.name))

        def finish(self, status, summary):
            seen.append(("finish", status, summary))

    class Breaks(Keeps):
        def artifact(self, path):
            raise OSError("read-only file system")

    report = tmp_path / "study.html"
    report.write_text("<html></html>")
    monkeypatch.setattr(tr, "FACTORIES", {"mlflow": Keeps, "tensorboard": Breaks})
    with pytest.warns(tr.TrackerWarning, match="'tensorboard' .* read-only file system"):
        tr.attach_report(["mlflow", "tensorboard"], tmp_path, "scaling-quick", report, {"alpha": 0.3})
    assert seen[:3] == [("start", "scaling-quick-report", "scaling-quick"), ("start", "scaling-quick-report",
                        "scaling-quick"), ("artifact", "study.html")]  # fmt: skip
    assert seen[-1] == ("finish", "completed", {"alpha": 0.3})
    tr.attach_report([], tmp_path, "g", report)  # no tracker configured: nothing to do
