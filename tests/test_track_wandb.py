"""W&B in offline mode: a tiny run's config, per-step and final metrics read back from the `.wandb` file
W&B writes (its own protobuf records), sweep grouping, backfill with `runs export --to wandb`."""

from __future__ import annotations

import json
import struct
import time
import warnings

import pytest

from scalelab.interop import trackers as tr
from scalelab.store import RunStore
from scalelab.train.loop import train

wandb = pytest.importorskip("wandb")


def read_wandb_file(path) -> list:
    """The records of an offline `.wandb` file, decoded with W&B's own protobuf schema.

    W&B 0.31 ships no Python reader for it; the file is a LevelDB-style log: a 7-byte header
    (':W&B', 0xBEE1, version), then 32 KiB blocks of chunks, each with a 7-byte header (crc32, length,
    type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1
    records, pos, block, pending = [], 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block too small for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            records.append(rec)
    return records


def _items(items) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


def wandb_run(workdir, run_id) -> dict:
    """{'run': RunRecord, 'config': {...}, 'history': {step: {...}}, 'summary': {...}} of the offline run."""
    (folder,) = tr.WandbTracker.folders(tr.RunInfo(run_id, "", None, {}, workdir))
    (path,) = folder.glob("*.wandb")
    for _ in range(300):  # wandb-core (another process) may still be writing after run.finish() returned
        records = read_wandb_file(path)
        if records and records[-1].WhichOneof("record_type") == "exit":
            break
        time.sleep(0.1)
    out = {"config": {}, "history": {}, "summary": {}}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = rec.run
            out["config"] |= _items(rec.run.config.update)
        elif kind == "config":
            out["config"] |= _items(rec.config.update)
        elif kind == "history":
            row = _items(rec.history.item)
            out["history"][row["_step"]] = row
        elif kind == "summary":
            out["summary"] |= _items(rec.summary.update)
    return out


def _store_series(workdir, run_id, name="loss", split="train") -> dict[int, float]:
    series = RunStore.in_workdir(workdir, readonly=True).metric_series([run_id], split, name)[run_id]
    return {step: value for step, _tokens, _flops, value in series}


@pytest.mark.slow  # W&B starts its wandb-core service: seconds
def test_wandb_offline_run_reads_back_and_backfill(tiny_cfg, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from scalelab.cli.app import app

    monkeypatch.delenv("WANDB_MODE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tr.TrackerWarning)  # the tracker must work, not be dropped
        s = train(tiny_cfg(train__trackers="['wandb']", train__iters="12"), tmp_path, progress=False)
    got = wandb_run(tmp_path, s["run_id"])
    assert got["run"].run_id == s["run_id"] and got["run"].project == "scalelab"
    cfg = got["config"]
    assert cfg["train"]["iters"] == 12 and cfg["model"]["n_layer"] == 1 and cfg["train"]["trackers"] == ["wandb"]
    want = _store_series(tmp_path, s["run_id"])
    loss = {step: row["train/loss"] for step, row in got["history"].items() if "train/loss" in row}
    assert sorted(loss) == sorted(want) == [1, 5, 10, 12]
    assert all(loss[k] == pytest.approx(want[k], rel=1e-6) for k in want)
    assert got["history"][12]["val/loss"] == pytest.approx(s["final_val_loss"], rel=1e-6)
    assert got["summary"]["final_val_loss"] == pytest.approx(s["final_val_loss"], rel=1e-6)
    assert got["summary"]["status"] == "completed"

    # a tracker-less run of a sweep group, backfilled: grouped by its group, skipped the second time
    other = train(tiny_cfg(train__iters="3", train__eval_every="3"), tmp_path, progress=False, group="sweep-a")
    w = ["--workdir", str(tmp_path), "--json"]
    res = CliRunner().invoke(app, ["runs", "export", "--to", "wandb", "--group", "sweep-a", *w])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["exported"] == [other["run_id"]]
    back = wandb_run(tmp_path, other["run_id"])
    assert back["run"].run_group == "sweep-a"
    assert back["summary"]["final_val_loss"] == pytest.approx(other["final_val_loss"], rel=1e-6)
    res = CliRunner().invoke(app, ["runs", "export", "--to", "wandb", "--group", "sweep-a", *w])
    assert json.loads(res.stdout.strip().splitlines()[-1])["skipped"] == [other["run_id"]]

    report = tmp_path / "sweep-a.html"
    report.write_text("<html>the report</html>")
    tr.attach_report(["wandb"], tmp_path, "sweep-a", report, {"final_val_loss": 1.5})
    got = wandb_run(tmp_path, "sweep-a-report")
    assert got["run"].run_group == "sweep-a" and got["summary"]["final_val_loss"] == 1.5
    (folder,) = tr.WandbTracker.folders(tr.RunInfo("sweep-a-report", "", None, {}, tmp_path))
    assert (folder / "files" / "sweep-a.html").read_text() == "<html>the report</html>"


def test_a_raising_wandb_never_fails_the_run(tiny_cfg, tmp_path, monkeypatch):
    """W&B itself raising (here: at init, as with a bad WANDB_MODE) warns once and the run completes."""

    def broken_init(*args, **kwargs):
        raise RuntimeError("wandb service did not start")

    monkeypatch.setattr(wandb, "init", broken_init)
    with pytest.warns(tr.TrackerWarning, match="'wandb' is off .* RuntimeError: wandb service did not start"):
        s = train(tiny_cfg(train__trackers="['wandb']", train__iters="3", train__eval_every="3"), tmp_path,
                  progress=False)  # fmt: skip
    assert s["status"] == "completed"
    assert not (tmp_path / "wandb").exists() or not list((tmp_path / "wandb").glob("offline-run-*"))
