"""End-to-end CLI tests on tiny configs, through a real subprocess (exit codes, stdout, stderr)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import tiny_overrides

KEYS = {"run_id", "params", "params_nonembed", "tokens", "flops", "final_train_loss", "final_val_loss",
        "tokens_per_s", "wall_s", "status"}  # fmt: skip


def cli(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)  # fmt: skip


def _sets(**extra):
    return [a for kv in tiny_overrides(**extra) for a in ("--set", kv)]


def test_train_json_sample_and_runs(tmp_path):
    wd = str(tmp_path / "w")
    r = cli("train", *_sets(), "--workdir", wd, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert KEYS <= set(res) and res["status"] == "completed"
    s = cli("sample", res["run_id"], "--prompt", "def ", "--tokens", "20", "--workdir", wd, "--json")
    assert s.returncode == 0, s.stderr
    assert isinstance(json.loads(s.stdout.splitlines()[-1])["text"], str)
    runs = cli("runs", "--workdir", wd, "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout)[0]["id"] == res["run_id"]
    table = cli("runs", "--workdir", wd)
    assert res["run_id"] in table.stdout


def test_train_from_toml_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "from-file"\n[train]\niters = 10\n')
    r = cli("train", str(cfg), *_sets(train__iters="10"), "--workdir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["iters"] == 10


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--set", "train.learnig_rate=1"], "unknown key 'train.learnig_rate'"),
        (["train", "--set", "train.iters=many"], "train.iters"),
        (["train", "--set", "data.source='/no/such/dir'"], "data source not found"),
        (["train", "missing.toml"], "config file not found"),
        (["sample", "nope"], "neither a checkpoint path nor a run"),
        (["runs", "--workdir", "/tmp/definitely-not-a-workdir"], "no run store"),
        (["bench", "train", "--preset", "nope"], "unknown bench preset"),
    ],
)
def test_user_errors_exit_2_without_traceback(tmp_path, args, needle):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    wd = tmp_path / "w"
    args = [sys.executable, "-m", "scalelab", "train", *_sets(train__iters="100000", train__ckpt_every="1000000"),
            "--workdir", str(wd), "--json"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = wd / "scalelab.db"
    deadline = time.time() + 120
    while time.time() < deadline and not list(wd.glob("runs/*/config.json")):
        time.sleep(0.2)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    res = json.loads(stdout.splitlines()[-1])
    assert res["status"] == "interrupted" and res["iters"] > 0 and "--resume" in stderr
    assert db.exists() and list(wd.glob("runs/*/ckpt/step_*"))
    r = cli("train", *_sets(train__iters=str(res["iters"] + 5)), "--workdir", str(wd), "--resume",
            res["run_id"], "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.splitlines()[-1])
    assert done["status"] == "completed" and done["iters"] == res["iters"] + 5 and done["run_id"] == res["run_id"]


def test_bench_train_json(tmp_path, shakespeare):
    r = cli("bench", "train", "--preset", "shakespeare-char", "--recipe", "gpt2", "--data", str(shakespeare),
            "--set", "train.iters=20", "--set", "train.eval_every=10", "--target", "4.0", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    for k in ("tokens_per_s", "final_val_loss", "time_to_target_s", "target_val_loss", "iters", "mfu"):
        assert k in res
    assert res["iters"] == 20 and res["mfu"] is None and res["time_to_target_s"] is not None
