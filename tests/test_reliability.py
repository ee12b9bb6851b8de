"""Fault injection: hostile checkpoints, signals, kills, concurrent owners, corrupt files, bad input.

Run alone with `python -m pytest -m reliability`.
"""

from __future__ import annotations

import builtins

import pytest
import torch

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.train.checkpoint import latest_checkpoint
from scalelab.train.loop import train

pytestmark = pytest.mark.reliability


class _Evil:
    """Unpickling this creates a file: what a crafted checkpoint would do with a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _plant(ckpt, obj) -> None:
    """Replace a checkpoint's state.pt, as an attacker with write access to the work directory would
    (rewriting the checksum manifest too, so that only the unpickler stands in the way)."""
    torch.save(obj, ckpt / "state.pt")
    from scalelab.train import checkpoint as ck

    if hasattr(ck, "write_manifest") and (ckpt / "manifest.json").exists():
        ck.write_manifest(ckpt)


def test_crafted_pickle_state_is_refused_and_runs_nothing(tiny_cfg, tmp_path):
    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    ckpt = latest_checkpoint(tmp_path / "runs" / part["run_id"] / "ckpt")
    marker = tmp_path / "pwned"
    _plant(ckpt, {"state": _Evil(marker)})
    with pytest.raises(UserError, match="refusing to load"):
        train(tiny_cfg(), tmp_path, resume=part["run_id"], progress=False)
    assert not marker.exists()
    assert RunStore.in_workdir(tmp_path).get_run(part["run_id"])["status"] == "interrupted"


@pytest.mark.parametrize("name", ["../../../../tmp/x/pwned", "m[/]x", "a b", ".hidden", "x" * 101, "", "a\nb"])
def test_path_like_names_are_refused(name):
    from scalelab.config import load_config
    from scalelab.names import check_name
    from scalelab.sweep.spec import SweepSpec

    with pytest.raises(UserError):
        check_name(name, "name")
    with pytest.raises(UserError, match="name"):
        load_config(None, [f"name='{name}'"] if "\n" not in name else ["name='a\\nb'"])
    with pytest.raises(Exception, match="sweep name"):
        SweepSpec(name=name)


def test_good_names_pass():
    from scalelab.names import check_name

    for name in ("run", "scaling-size=L2-C=1e+13", "a.b_c-1"):
        assert check_name(name, "name") == name


def test_run_id_prefix_is_literal_not_a_pattern(tmp_path):
    store = RunStore.in_workdir(tmp_path)
    a = store.create_run("a", {}, "h1")
    store.create_run("b", {}, "h2")
    assert store.get_run("%") is None and store.get_run("_") is None and store.get_run("") is None
    assert store.get_run(a[:-1])["id"] == a
    with pytest.raises(UserError, match="ambiguous"):
        store.get_run(a[:7])  # both share the date prefix 'YYMMDD-'
    assert store.get_run(a)["id"] == a and store.get_run("b")["name"] == "b"


# ----------------------------------------------------------------------------- signals, kills, owners


def _cli(workdir, *args, resume=None, **extra):
    """The `scalelab train` command line of a tiny config (the console script, as a user runs it)."""
    import shutil

    from tests.conftest import tiny_overrides

    cmd = [shutil.which("scalelab") or "scalelab", "train", "--workdir", str(workdir), "--json", *args]
    for o in tiny_overrides(**extra):
        cmd += ["--set", o]
    return cmd + (["--resume", resume] if resume else [])


def _wait_for(predicate, proc=None, timeout=120.0):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


LONG = dict(train__iters="100000", train__schedule="'constant'", train__log_every="1")


def _only_run(workdir) -> dict:
    runs = RunStore.in_workdir(workdir).find_runs()
    assert len(runs) == 1, [r["id"] for r in runs]
    return runs[0]


def _has_checkpoint(workdir) -> bool:
    return any((workdir / "runs").glob("*/ckpt/latest")) if (workdir / "runs").exists() else False


@pytest.mark.slow
def test_sigterm_checkpoints_then_exits_interrupted(tmp_path):
    import signal
    import subprocess

    proc = subprocess.Popen(_cli(tmp_path, **LONG), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _has_checkpoint(tmp_path), proc), proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    import json

    summary = json.loads(out.splitlines()[-1])
    run = _only_run(tmp_path)
    assert run["status"] == "interrupted" and run["holder"] is None
    ckpt = latest_checkpoint(tmp_path / "runs" / run["id"] / "ckpt")
    assert ckpt.name == f"step_{summary['iters']:08d}"  # the step it stopped at, not the last periodic one


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_exact_curve(tiny_cfg, tmp_path):
    import signal
    import subprocess

    wd = tmp_path / "killed"
    proc = subprocess.Popen(_cli(wd, **LONG), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _has_checkpoint(wd), proc), proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    run = _only_run(wd)
    assert run["status"] == "interrupted"  # stored 'running', but its owner is gone
    ckpt_step = int(latest_checkpoint(wd / "runs" / run["id"] / "ckpt").name.split("_")[1])
    iters = str(ckpt_step + 12)
    resumed = train(tiny_cfg(**(LONG | {"train__iters": iters})), wd, resume=run["id"], progress=False)
    full = train(tiny_cfg(**(LONG | {"train__iters": iters})), tmp_path / "whole", progress=False)
    assert resumed["status"] == "completed" and resumed["iters"] == int(iters)
    a = _curve(tmp_path / "whole", full["run_id"])
    b = _curve(wd, run["id"])
    assert sorted(a) == sorted(b) == list(range(1, int(iters) + 1))
    assert all(a[k] == b[k] for k in a), [(k, a[k], b[k]) for k in a if a[k] != b[k]][:5]
    assert resumed["final_val_loss"] == full["final_val_loss"]


def _curve(workdir, run_id, split="train", name="loss"):
    rows = RunStore.in_workdir(workdir).conn.execute(
        "SELECT step, value FROM metrics WHERE run_id = ? AND split = ? AND name = ?", (run_id, split, name)
    ).fetchall()
    return {s: v for s, v in rows}


@pytest.mark.slow
def test_concurrent_resume_one_trains_the_other_is_refused(tiny_cfg, tmp_path):
    import signal
    import subprocess

    part = train(tiny_cfg(**LONG), tmp_path, progress=False, stop_after=10)
    procs = [subprocess.Popen(_cli(tmp_path, resume=part["run_id"], **LONG), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    try:
        assert _wait_for(lambda: any(p.poll() is not None for p in procs), timeout=180)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, err = loser.communicate()
        assert loser.returncode == 2, err[-2000:]
        assert "being trained right now by pid" in err and str(winner.pid) in err
        assert "Traceback" not in err
        assert RunStore.in_workdir(tmp_path).get_run(part["run_id"])["holder"]["pid"] == winner.pid
        winner.send_signal(signal.SIGTERM)
        winner.communicate(timeout=60)
        assert winner.returncode == 130
    finally:
        for p in procs:
            p.kill()
    store = RunStore.in_workdir(tmp_path)
    assert len(store.find_runs()) == 1 and store.get_run(part["run_id"])["status"] == "interrupted"
    dupes = store.conn.execute(
        "SELECT step, split, name, COUNT(*) FROM metrics GROUP BY step, split, name HAVING COUNT(*) > 1"
    ).fetchall()
    assert not dupes, dupes[:5]


def test_lease_held_refuses_training_and_busy_runs_are_not_swept(tiny_cfg, tmp_path):
    import os

    from scalelab.errors import RunBusy
    from scalelab.lease import RunLease
    from scalelab.sweep.run import classify
    from scalelab.sweep.spec import PlannedRun

    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    store = RunStore.in_workdir(tmp_path)
    cfg = tiny_cfg()
    store.update_run(part["run_id"], grp="g")
    planned = PlannedRun(cfg.name, cfg, {}, 1, 1, 1, 1, 30)
    with RunLease(tmp_path / "runs" / part["run_id"], part["run_id"]):
        with pytest.raises(RunBusy, match=f"pid {os.getpid()}"):
            train(tiny_cfg(), tmp_path, resume=part["run_id"], progress=False)
        row = store.get_run(part["run_id"])
        assert row["status"] == "running" and row["holder"]["pid"] == os.getpid()
        tasks, done = classify([planned], store, "g", retry_failed=False)
        assert tasks == [] and done[0][1]["id"] == part["run_id"] and len(store.find_runs()) == 1
    tasks, _ = classify([planned], store, "g", retry_failed=False)
    assert [(t.run_id, t.action) for t in tasks] == [(part["run_id"], "resume")]


def test_an_exception_marks_the_run_failed_with_its_text(tiny_cfg, tmp_path):
    from scalelab.lease import lease_holder

    def boom(model, step):
        raise ValueError("disk on fire")

    with pytest.raises(ValueError, match="disk on fire"):
        train(tiny_cfg(), tmp_path, progress=False, extra_evals=[boom])
    run = _only_run(tmp_path)
    assert run["status"] == "failed" and "disk on fire" in run["error"]
    assert lease_holder(tmp_path / "runs" / run["id"]) is None


# ----------------------------------------------------------------------------- corrupt files


def _truncate(path, keep=100):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_corrupt_latest_checkpoint_warns_and_falls_back(tiny_cfg, tmp_path):
    from scalelab.train.checkpoint import CheckpointWarning

    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=25)
    ckpt_dir = tmp_path / "runs" / part["run_id"] / "ckpt"
    assert sorted(p.name for p in ckpt_dir.glob("step_*")) == ["step_00000020", "step_00000025"]
    _truncate(ckpt_dir / "step_00000025" / "model.safetensors")
    with pytest.warns(CheckpointWarning, match="step_00000025.*model.safetensors"):
        assert latest_checkpoint(ckpt_dir).name == "step_00000020"
    with pytest.warns(CheckpointWarning):
        s = train(tiny_cfg(), tmp_path, resume=part["run_id"], progress=False)
    assert s["status"] == "completed" and s["iters"] == 30
    steps = RunStore.in_workdir(tmp_path).conn.execute(
        "SELECT step FROM metrics WHERE run_id = ? AND split = 'train' AND name = 'loss'", (part["run_id"],)
    ).fetchall()
    assert sorted(r[0] for r in steps) == sorted({r[0] for r in steps})  # no step logged twice


def test_no_intact_checkpoint_is_a_user_error(tiny_cfg, tmp_path):
    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    ckpt_dir = tmp_path / "runs" / part["run_id"] / "ckpt"
    _truncate(ckpt_dir / "step_00000010" / "state.pt")
    with pytest.raises(UserError, match="no intact checkpoint.*state.pt"):
        train(tiny_cfg(), tmp_path, resume=part["run_id"], progress=False)


def test_sample_of_a_truncated_checkpoint_is_a_clear_error(tiny_cfg, tmp_path):
    import subprocess

    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    step = tmp_path / "runs" / part["run_id"] / "ckpt" / "step_00000010"
    _truncate(step / "model.safetensors")
    from scalelab.sampling import sample_text

    with pytest.raises(UserError, match="corrupt"):
        sample_text(str(step), "", 5, 1.0, None, 0, tmp_path)
    with pytest.raises(UserError, match="no intact checkpoint"):
        sample_text(part["run_id"], "", 5, 1.0, None, 0, tmp_path)
    import shutil

    r = subprocess.run([shutil.which("scalelab") or "scalelab", "sample", str(step), "-n", "3"],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and "corrupt" in r.stderr


def test_tokenizer_or_weights_of_another_model_are_refused(tiny_cfg, tmp_path):
    from scalelab.data import tokenizers as tk
    from scalelab.train.checkpoint import load_for_inference, write_manifest

    part = train(tiny_cfg(), tmp_path / "a", progress=False, stop_after=10)
    other = train(tiny_cfg(model__n_embd="64"), tmp_path / "b", progress=False, stop_after=10)
    step = tmp_path / "a" / "runs" / part["run_id"] / "ckpt" / "step_00000010"
    model, tok, info = load_for_inference(part["run_id"], tmp_path / "a")
    assert info["step"] == 10 and info["run_id"] == part["run_id"] and tok.kind == "byte"

    tk.save_spec(tk.CharTokenizer("abcdef"), step / "tokenizer.json")  # a mixed-up tokenizer, checksums redone
    write_manifest(step)
    with pytest.raises(UserError, match="trained with a byte tokenizer of 257 tokens"):
        load_for_inference(step)
    tk.save_spec(tk.CharTokenizer("".join(chr(i) for i in range(32, 400))), step / "tokenizer.json")
    write_manifest(step)
    with pytest.raises(UserError, match="belongs to another model"):
        load_for_inference(step)

    tk.save_spec(tk.ByteTokenizer(), step / "tokenizer.json")
    big = tmp_path / "b" / "runs" / other["run_id"] / "ckpt" / "step_00000010" / "model.safetensors"
    (step / "model.safetensors").write_bytes(big.read_bytes())
    write_manifest(step)
    with pytest.raises(UserError, match="do not fit the model"):
        load_for_inference(step)
    (step / "manifest.json").unlink()  # an older checkpoint without checksums: the same checks hold
    with pytest.raises(UserError, match="do not fit the model"):
        load_for_inference(step)


# ----------------------------------------------------------------------------- the store


def test_read_only_store_serves_reads_and_refuses_writes(tiny_cfg, tmp_path, monkeypatch):
    import os

    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    ro = RunStore.in_workdir(tmp_path, readonly=True)
    assert ro.get_run(part["run_id"])["status"] == "interrupted"
    with pytest.raises(UserError, match="read-only"):
        ro.update_run(part["run_id"], status="failed")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK else real(p, mode))
    auto = RunStore.in_workdir(tmp_path)  # an unwritable store opens read-only by itself
    assert auto.readonly and auto.list_runs(["id", "status"]) == [{"id": part["run_id"], "status": "interrupted"}]
    from scalelab.sampling import sample_text

    assert isinstance(sample_text(part["run_id"][:8], "", 5, 1.0, None, 0, tmp_path), str)


def test_broken_work_directories_are_clear_errors(tiny_cfg, tmp_path):
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "scalelab.db").write_bytes(b"this is no database" * 100)
    for readonly in (False, True):
        with pytest.raises(UserError, match="not a usable scalelab run store"):
            RunStore.in_workdir(tmp_path / "garbage", readonly=readonly)
    (tmp_path / "dir" / "scalelab.db").mkdir(parents=True)
    with pytest.raises(UserError, match="is a folder"):
        RunStore.in_workdir(tmp_path / "dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        RunStore.in_workdir(tmp_path / "file")
    with pytest.raises(UserError, match="is a file"):
        train(tiny_cfg(), tmp_path / "file" / "sub", progress=False)
    with pytest.raises(UserError, match="no run store"):
        RunStore.in_workdir(tmp_path / "none", readonly=True)


# ----------------------------------------------------------------------------- bad configuration values

BAD_VALUES = [
    "train.batch_size=0", "train.eval_every=0", "train.ckpt_every=0", "train.grad_accum=0", "train.eval_batches=0",
    "train.lr=nan", "train.lr=-1", "train.lr=0", "train.min_lr=-1e-4", "data.val_fraction=1.5",
    "data.test_fraction=-0.1", "data.val_fraction=0.6", "model.dropout=2", "model.dropout=1", "train.device='tpu9'",
    "train.device='cuda:x'", "train.threads=-3", "train.iters=0", "train.iters=-1", "name='../x'",
]  # fmt: skip


def _console_main():
    """The `scalelab` console script's function, found as the installed entry point names it."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "scalelab"]
    return ep.load()


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_bad_config_value_exits_2_before_any_row(bad, tmp_path, monkeypatch, capsys):
    extra = ["--set", "data.test_fraction=0.5"] if bad == "data.val_fraction=0.6" else []
    argv = ["scalelab", "train", "--workdir", str(tmp_path), *extra, "--set", bad]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as e:
        _console_main()()
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert bad.split("=")[0].split(".")[-1] in err and "Traceback" not in err
    db = tmp_path / "scalelab.db"
    assert not db.exists() or RunStore(db).find_runs() == []


@pytest.mark.slow
def test_bad_config_values_through_the_console_script(tmp_path):
    import shutil
    import subprocess

    for bad in ("train.batch_size=0", "train.lr=nan"):
        cmd = [shutil.which("scalelab") or "scalelab", "train", "--workdir", str(tmp_path), "--set", bad]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr and bad.split("=")[0] in r.stderr, r.stderr[-1500:]
        db = tmp_path / "scalelab.db"
        assert not db.exists() or RunStore(db).find_runs() == []


def test_model_size_as_a_number_works():
    from scalelab.config import load_config
    from scalelab.model.sizes import resolve

    for text in ("1e4", "12288", "'1e4'"):
        cfg = load_config(None, [f"model.size={text}"])
        assert resolve(cfg.model, 257).n_layer == 1
    assert load_config(None, ["model.size=1e6"]).model.size == "1e+06"
    assert resolve(load_config(None, ["model.size=1e6"]).model, 257).n_layer == 4


def test_building_dir_publishes_whole_or_not_at_all(tmp_path):
    """A cache folder appears complete or not at all; a second finisher keeps the first one's copy."""
    from scalelab.atomic import building_dir

    final = tmp_path / "cache" / "key"
    with pytest.raises(RuntimeError), building_dir(final) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted while writing")
    assert not final.exists() and not list(final.parent.iterdir())
    with building_dir(final) as tmp:
        (tmp / "meta.json").write_text("first")
    with building_dir(final) as tmp:  # another process finished the same folder meanwhile
        (tmp / "meta.json").write_text("second")
    assert (final / "meta.json").read_text() == "first" and [p.name for p in final.parent.iterdir()] == ["key"]
