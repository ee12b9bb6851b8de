"""Packed sweeps: persistent worker processes train run after run, isolated from each other's failures."""

import json
import os
import signal
import threading
import time

import pytest

from scalelab.store import RunStore
from scalelab.sweep.pool import WorkerPool
from scalelab.sweep.run import execute
from scalelab.sweep.spec import load_spec, plan


def _ok(x):
    return {"status": "completed", "x": x, "pid": os.getpid()}


def _raises(x):
    raise RuntimeError(f"bad {x}")


def _dies(x):
    os._exit(3)


def test_pool_reuses_processes_and_isolates_failures():
    jobs = [(0, _ok, (0,)), (1, _raises, (1,)), (2, _ok, (2,)), (3, _dies, (3,)), (4, _ok, (4,))]
    with WorkerPool(1) as pool:  # one slot: the jobs run in this order
        results = dict(pool.run(jobs))
        pids = pool.pids()
    assert sorted(results) == list(range(5))  # every job answered, the one after the crash too
    assert results[1] == {"status": "failed", "error": "RuntimeError: bad 1"}  # a raise keeps its process
    assert results[3]["status"] == "failed" and "exited with status 3" in results[3]["error"]
    assert all(results[k]["status"] == "completed" for k in (0, 2, 4))
    assert results[0]["pid"] == results[2]["pid"] != results[4]["pid"]  # reused; replaced after the crash
    assert pool.started == 2
    assert pids and not pool.pids()  # closed: no process left
    with WorkerPool(2) as pool:  # two slots: all answered, at most one replacement
        results = dict(pool.run(jobs))
    assert sorted(results) == list(range(5)) and [results[k]["status"] for k in (0, 2, 4)] == ["completed"] * 3
    assert pool.started in (2, 3)


SPEC = """
name = "pack"
evals_per_run = 2
[base]
name = "pack"
[base.data]
source = "stdlib"
max_documents = 40
eval_tasks = ["add1", "copy"]
[base.model]
recipe = "modern"
block_size = 32
n_layer = 1
n_head = 1
n_embd = 16
[base.train]
batch_size = 4
eval_batches = 2
final_eval_batches = 2
log_every = 5
device = "cpu"
threads = 1
"""


def _spec(tmp_path, points: str):
    path = tmp_path / "pack.toml"
    path.write_text(f"points = [{points}]\n" + SPEC)
    return load_spec(path)


def _losses(work) -> dict:
    """{run name: (status, final val loss, error, every logged evaluation: val losses, task scores)}."""
    store = RunStore.in_workdir(work)
    out = {}
    for r in store.find_runs(group="pack"):
        sql = ("SELECT step, split, name, value FROM metrics WHERE run_id = ? AND split IN ('val', 'eval') "
               "ORDER BY step, split, name")  # fmt: skip
        out[r["name"]] = (r["status"], r["final_val_loss"], r["error"], store.conn.execute(sql, (r["id"],)).fetchall())
    return out


def _kill_when_running(work, name_part: str, done: list) -> None:
    """SIGKILL the worker process training the run whose name holds `name_part` (an OOM kill, a segfault)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        for f in (work / "runs").glob("*/progress.json") if (work / "runs").exists() else []:
            cfg = json.loads((f.parent / "config.json").read_text())
            if name_part in cfg["name"]:
                os.kill(json.loads(f.read_text())["pid"], signal.SIGKILL)
                done.append(True)
                return
        time.sleep(0.1)


@pytest.mark.slow
def test_packed_runs_give_the_same_numbers_and_survive_a_killed_worker(tmp_path):
    short = '{ "train.seed" = 0, "train.iters" = 30 }, { "train.seed" = 1, "train.iters" = 30 }'
    runs, _ = plan(_spec(tmp_path, short), tmp_path / "alone")
    execute(runs, "pack", tmp_path / "alone", workers=1, progress=False)  # in the driver, unpacked
    alone = _losses(tmp_path / "alone")

    work = tmp_path / "packed"
    runs, _ = plan(_spec(tmp_path, '{ "train.seed" = 2, "train.iters" = 3000 }, ' + short), work)
    killed: list = []
    killer = threading.Thread(target=_kill_when_running, args=(work, "seed=2", killed), daemon=True)
    killer.start()
    res = execute(runs, "pack", work, workers=2, progress=False)
    killer.join()
    packed = _losses(work)
    assert killed and res["failed"] == 1 and res["completed"] == 2
    status, loss, error, _ = next(v for k, v in packed.items() if "seed=2" in k)
    assert status == "failed" and "killed by SIGKILL" in error and "--retry-failed" in error
    for name, (status, loss, _, metrics) in alone.items():
        assert any("task_add1" in m[2] for m in metrics)  # the capability tasks were scored
        assert status == "completed" and packed[name][:2] == (status, loss)  # to the bit
        assert packed[name][3] == metrics  # every evaluation, task scores included


def _sleeps_until_told(x):
    """A job that stops on SIGTERM, as a training run does (it checkpoints, then returns)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(True))
    deadline = time.time() + 60
    while not stop and time.time() < deadline:
        time.sleep(0.05)
    return {"status": "interrupted" if stop else "completed"}


def test_a_driver_that_stops_on_an_error_stops_its_busy_workers():
    def fail(*a):
        raise TimeoutError("the driver failed")

    old = signal.signal(signal.SIGALRM, fail)
    pool = WorkerPool(1)
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.0)  # the driver fails while the job runs
        with pytest.raises(TimeoutError):
            list(pool.run([(0, _sleeps_until_told, (0,))]))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert pool.pids()
    t = time.time()
    pool.close()  # the busy worker is told to stop (SIGTERM), and does so at once
    assert time.time() - t < 30 and not pool.pids()
