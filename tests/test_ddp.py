"""Data parallel on 2 CPU processes through torchrun and gloo."""

import json
import os
import subprocess
import sys

from scalelab.store import RunStore
from tests.conftest import tiny_overrides


def test_torchrun_two_processes_gloo(tmp_path):
    sets = [a for kv in tiny_overrides(train__iters="20") for a in ("--set", kv)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "scalelab", "train", *sets, "--workdir", str(tmp_path), "--json"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert results and all(x["world_size"] == 2 for x in results)
    runs = RunStore.in_workdir(tmp_path).find_runs()
    assert len(runs) == 1 and runs[0]["status"] == "completed" and runs[0]["world_size"] == 2
    # two processes of 8 sequences each: twice the tokens of one process per step
    assert runs[0]["tokens"] == 20 * 2 * 8 * 32
    assert runs[0]["final_val_loss"] < 5.0
