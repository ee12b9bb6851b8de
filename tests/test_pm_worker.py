"""The PM sweep worker (record files, progress, `run:` backbones) and the one PM loader (`load_pm`)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from scalelab.align.pm import PreferenceModel, load_pm
from scalelab.align.pm_run import PMRunSpec
from scalelab.align.pm_train import PMTrainConfig
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.sweep.worker import run_worker
from scalelab.train.record import ingest

PROGRESS_KEYS = {"step", "iters", "loss", "val_loss", "tokens_per_s", "elapsed_s", "eta_s", "pid", "host", "time"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy_file(path, n: int = 64):
    """An easy task: the good answer is plain, the bad one ends in '!!' (every prompt its own group)."""
    rows = [{"prompt": f"Q{i}:", "chosen": f" good {i}", "rejected": f" bad {i} !!"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _spec(data: str, name: str, **kw) -> PMRunSpec:
    train = PMTrainConfig(steps=24, batch_size=8, lr=3e-3, warmup_steps=2, seed=0)
    return PMRunSpec(data=data, format="generic", test_fraction=0.25, context=64, train=train, name=name, group="g",
                     device="cpu", threads=1, **kw)  # fmt: skip


def _run(store: RunStore, workdir, spec: PMRunSpec) -> tuple[dict, str]:
    """What the sweep driver does: create the run, call the worker, ingest its files."""
    run_id = store.create_run(spec.name, spec.to_dict(), spec.config_hash(), group=spec.group)
    result = run_worker("pm", spec.to_dict(), str(workdir), run_id, 1)
    ingest(store, run_id, workdir / "runs" / run_id)
    return result, run_id


@pytest.mark.slow
def test_pm_worker_records_files_and_resolves_run_references(tmp_path):
    store = RunStore.in_workdir(tmp_path)
    data = _toy_file(tmp_path / "toy.jsonl")
    first = _spec(data, "a", size="3xs")
    result, a_id = _run(store, tmp_path, first)
    assert result["status"] == "completed", result
    run_dir = tmp_path / "runs" / a_id
    assert {"record.json", "metrics.jsonl", "progress.json", "pm", "scores.json"} <= {p.name for p in run_dir.iterdir()}
    assert set(json.loads((run_dir / "progress.json").read_text())) == PROGRESS_KEYS
    row = store.get_run(a_id)
    assert row["status"] == "completed" and row["summary"]["accuracy"] == result["accuracy"]
    assert store.metric_series([a_id], "test", "accuracy")[a_id][0][-1] == result["accuracy"]
    # clearly above chance on held-out pairs (seed fixed): a broken objective or label order gives <= 0.5
    assert result["accuracy"] >= 0.85 and result["accuracy_ci"][0] > 0.6 and result["n_test"] >= 10

    second = _spec(data, "b", objective="binary", base="run:a", base_config_hash=first.config_hash())
    result, b_id = _run(store, tmp_path, second)
    assert result["status"] == "completed", result
    assert result["base_path"] == str(run_dir) and store.get_run(b_id)["status"] == "completed"

    stale = _spec(data, "c", base="run:a", base_config_hash="0" * 16)
    result, c_id = _run(store, tmp_path, stale)
    assert result["status"] == "failed" and "no completed run named 'a'" in result["error"]
    assert run_worker("pm", {"data": data, "bogus": 1}, str(tmp_path), "x", None)["status"] == "failed"


@pytest.mark.slow
def test_load_pm_loads_pms_and_lms_and_never_unpickles(tmp_path):
    store = RunStore.in_workdir(tmp_path)
    result, run_id = _run(store, tmp_path, _spec(_toy_file(tmp_path / "toy.jsonl", 24), "a", size="3xs"))
    texts = ["Q1: good 1", "Q1: bad 1 !!"]
    by_id, by_folder = load_pm(run_id, tmp_path), load_pm(tmp_path / "runs" / run_id / "pm")
    assert by_id.objective == "ranked" and torch.equal(by_id.score(texts), by_folder.score(texts))
    assert load_pm(run_id, tmp_path, objective="binary").objective == "binary"

    folder = tmp_path / "evil"  # a PM folder whose weights file is a pickle that would run code
    PreferenceModel.load(tmp_path / "runs" / run_id).save(folder)
    marker = tmp_path / "pwned"
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(UserError, match="does not hold this PM's weights"):
        load_pm(folder)
    assert not marker.exists()

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "pytorch_model.bin").write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(UserError, match="never unpickles"):
        load_pm(hf)
    assert not marker.exists()


class _Exploit:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_config_hash_follows_file_content_not_path(tmp_path):
    a, b = _toy_file(tmp_path / "a.jsonl"), _toy_file(tmp_path / "b.jsonl")
    same = [_spec(path, "x", size="3xs").config_hash() for path in (a, b)]
    assert same[0] == same[1]  # a moved work directory keeps its runs
    _toy_file(tmp_path / "b.jsonl", n=10)
    assert _spec(b, "x", size="3xs").config_hash() != same[0]
    assert _spec(a, "y", size="3xs").config_hash() == same[0]  # the name is not part of the result
    with pytest.raises(UserError, match="zero-shot"):
        _spec(a, "z", size="3xs", zero_shot=True)


def test_a_new_trainer_version_is_a_new_config(tmp_path, monkeypatch):
    """Finished PM runs of an older trainer (other results for the same spec) are not reused."""
    from scalelab.align import pm_run

    spec = _spec(_toy_file(tmp_path / "toy.jsonl"), "a", size="3xs")
    before = spec.config_hash()
    monkeypatch.setattr(pm_run, "PM_TRAINER_VERSION", pm_run.PM_TRAINER_VERSION + 1)
    assert spec.config_hash() != before
