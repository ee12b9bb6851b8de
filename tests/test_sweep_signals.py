"""A SIGTERM to a sweep's driver stops its worker processes too: they checkpoint, nothing is orphaned."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scalelab.store import RunStore
from tests.conftest import tiny_base

SPEC = (
    """
name = "sig"
evals_per_run = 4
[base]
name = "sig"
"""
    + tiny_base(data={"max_documents": 60}, train={"batch_size": 8, "log_every": 2})
    + """[grid]
"model.size" = ["L1", "L2"]
"train.iters" = [4000]
"""
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_to_driver_stops_workers(tmp_path):
    spec = tmp_path / "sig.toml"
    spec.write_text(SPEC)
    work = tmp_path / "w"
    driver = subprocess.Popen([sys.executable, "-m", "scalelab", "sweep", str(spec), "--workers", "2", "--workdir",
                               str(work)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    files = []
    while time.time() < deadline and len(files) < 2:
        files = list((work / "runs").glob("*/progress.json")) if (work / "runs").exists() else []
        time.sleep(0.5)
    assert len(files) == 2, driver.stderr.read() if driver.poll() is not None else "no progress files"
    pids = {json.loads(f.read_text())["pid"] for f in files}
    assert driver.pid not in pids and len(pids) == 2
    driver.send_signal(signal.SIGTERM)
    driver.wait(timeout=120)
    assert driver.returncode != 0
    time.sleep(1)
    assert not [p for p in pids if _alive(p)], "worker processes outlived their driver"
    runs = RunStore.in_workdir(work).find_runs(group="sig")
    assert len(runs) == 2 and all(r["status"] == "interrupted" for r in runs)
    assert all(list((work / "runs" / r["id"] / "ckpt").glob("step_*")) for r in runs)  # checkpointed on the way out
