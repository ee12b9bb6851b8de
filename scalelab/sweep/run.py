"""Running a sweep: resumable, idempotent, failure-isolated; only the driver writes the store.

For every planned run the driver looks up the store (by sweep name and config hash):
- completed: skipped;
- created / running / interrupted: resumed from its checkpoint (same run id);
- failed: skipped unless `retry_failed`, then resumed from its last good checkpoint;
- absent: created, then trained.
Runs go stage by stage (`PlannedRun.stage`): a stage starts once the runs of every earlier stage
have finished, so that a later run (a preference model, a fine-tune) can use an earlier one.
Workers (the driver itself, persistent local processes of `sweep.pool.WorkerPool` that train run after
run, or Ray tasks) train with `record="files"`: they write
metrics into the run folder and return a summary; the driver ingests both into the store. A
failed run is recorded and the others go on. Progress: `sweep.progress.SweepProgress`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.sweep import worker
from scalelab.sweep.pool import WorkerPool
from scalelab.sweep.progress import SweepProgress
from scalelab.sweep.spec import PlannedRun, SweepSpec, plan
from scalelab.sweep.worker import run_worker
from scalelab.train.record import ingest


@dataclass
class Task:
    planned: PlannedRun
    run_id: str
    action: str  # "new" | "resume" | "retry"


def classify(runs: list[PlannedRun], store: RunStore, group: str, retry_failed: bool) -> tuple[list[Task], list]:
    """Tasks to run, and the planned runs already done (with their store rows).

    Statuses are the store's effective ones: a run whose lease is held by a live process is `running`
    with a `holder` (pid, host) and is busy: neither resumed nor re-created, it goes with the done
    runs (status `running`); a `running` run whose owner is gone reads `interrupted` and is resumed.
    """
    tasks, done = [], []
    for p in runs:
        prior = store.find_runs(config_hash=p.config_hash, group=group)
        finished = [r for r in prior if r["status"] == "completed"]
        if finished:
            done.append((p, finished[-1]))
            continue
        busy = [r for r in prior if r.get("holder")]
        if busy:
            done.append((p, busy[-1]))
            continue
        live = [r for r in prior if r["status"] in ("created", "running", "interrupted")]
        failed = [r for r in prior if r["status"] == "failed"]
        if live:
            tasks.append(Task(p, live[-1]["id"], "resume"))
        elif failed and retry_failed:
            tasks.append(Task(p, failed[-1]["id"], "retry"))
        elif failed:
            done.append((p, failed[-1]))
        else:
            run_id = store.create_run(p.name, p.cfg.to_dict(), p.config_hash, group=group, params=p.params,
                                      params_nonembed=p.params_nonembed, flops_per_token=p.flops_per_token)  # fmt: skip
            tasks.append(Task(p, run_id, "new"))
    return tasks, done


def _record(store: RunStore, workdir: Path, task: Task, result: dict) -> dict:
    """Write a worker's result into the store; return the run's final row. A busy run (held by
    another process, which writes its own record) is left as it is."""
    if result.get("status") == "busy":
        return store.get_run(task.run_id)
    ingest(store, task.run_id, workdir / "runs" / task.run_id)
    if result.get("status") == "failed":
        store.update_run(task.run_id, status="failed", error=result.get("error"), finished_at=time.time())
    return store.get_run(task.run_id)


def _local(tasks: list[Task], workdir: Path, workers: int, threads: int, probes: bool,
           pool: WorkerPool | None) -> Iterator[tuple]:  # fmt: skip
    """(task, result) as local runs finish: in the driver when workers == 1, else in the pool's persistent
    worker processes, largest runs first (so that the last run to start is a short one)."""
    if pool is None:
        for task in tasks:
            yield task, run_worker(task.planned.kind, task.planned.cfg.to_dict(), str(workdir), task.run_id, None,
                                   probes)  # fmt: skip
        return
    ordered = sorted(tasks, key=lambda t: -t.planned.flops)  # stable: equal runs keep the plan's order
    jobs = [(t, run_worker, (t.planned.kind, t.planned.cfg.to_dict(), str(workdir), t.run_id, threads, probes))
            for t in ordered]  # fmt: skip
    with _forward_sigterm(pool):
        yield from pool.run(jobs)


@contextmanager
def _forward_sigterm(pool: WorkerPool):
    """A SIGTERM to the driver (a scheduler stopping the job) reaches the workers too, which checkpoint and
    stop; the driver then stops as on Ctrl-C, after the busy workers answered, so no worker is orphaned.
    (Ctrl-C in a terminal already reaches every process of the group.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum, frame):
        for pid in pool.pids():
            with suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def execute(
    runs: list[PlannedRun],
    group: str,
    workdir: str | Path,
    executor: str = "local",
    workers: int = 1,
    retry_failed: bool = False,
    address: str | None = None,
    gpus_per_run: float = 0.0,
    probes: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> dict:
    """Train every planned run of `group` not yet finished, stage by stage; return counts and store rows."""
    if executor not in ("local", "ray"):
        raise UserError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    workdir = Path(workdir)
    console = console or Console(stderr=True)
    store = RunStore.in_workdir(workdir)
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    worker.forget()  # evaluations built by an earlier sweep of this process are built again
    results: dict[str, dict] = {}
    done_rows: list[dict] = []
    interrupted = False
    t0 = time.perf_counter()
    stages = [list(g) for _, g in groupby(sorted(runs, key=lambda r: r.stage), key=lambda r: r.stage)]
    monitor = SweepProgress(workdir, len(runs), 0, sum(r.flops for r in runs), console, enabled=progress)
    pool = WorkerPool(workers) if executor == "local" and workers > 1 else None  # one set of processes, all stages
    with monitor, pool or nullcontext():
        for stage_runs in stages:
            tasks, done = classify(stage_runs, store, group, retry_failed)
            done_rows += [row for _, row in done]
            monitor.skip(sum(p.flops for p, _ in done), len(done))
            busy = sum(bool(row.get("holder")) for _, row in done)
            if len(stages) == 1 or tasks:
                console.print(f"{escape(group)}: {len(stage_runs)} runs planned" + (f" in stage {stage_runs[0].stage}"
                              if len(stages) > 1 else "") + f", {len(done)} already done" + (f" or busy ({busy} held "
                              "by another process)" if busy else "") + f", {len(tasks)} to run "
                              f"({sum(t.action == 'resume' for t in tasks)} resumed)", highlight=False)  # fmt: skip
            for t in tasks:
                monitor.start(t.run_id, t.planned.name, t.planned.flops)
            if executor == "ray":
                from scalelab.sweep.ray_executor import run_ray

                finished = run_ray(tasks, workdir, workers, address, gpus_per_run, threads, probes)
            else:
                finished = _local(tasks, workdir, workers, threads, probes, pool)
            for task, result in finished:
                row = _record(store, workdir, task, result)
                results[task.run_id] = result
                monitor.finish(task.run_id, row["status"] if row else "failed")
                _report(console, task, row, result)
                if result.get("status") == "interrupted":
                    interrupted = True
                    if executor == "local" and workers <= 1:
                        break
            failed = [t.planned.name for t in tasks if results.get(t.run_id, {}).get("status") == "failed"]
            if interrupted:
                break
            if failed and stage_runs is not stages[-1]:
                console.print(f"{len(failed)} run(s) failed ({', '.join(failed[:3])}): the later stages build on "
                              "them and are not started; fix and rerun with --retry-failed", markup=False)  # fmt: skip
                break
    rows = [store.get_run(rid) for rid in results] + done_rows
    statuses = [r["status"] for r in rows if r]
    return {
        "sweep": group, "planned": len(runs), "skipped": len(done_rows), "ran": len(results),
        "completed": statuses.count("completed"), "failed": statuses.count("failed"),
        "interrupted": interrupted or statuses.count("interrupted") > 0, "wall_s": time.perf_counter() - t0,
        "runs": [{"id": r["id"], "name": r["name"], "status": r["status"]} for r in rows if r],
    }  # fmt: skip


def run_sweep(
    spec: SweepSpec,
    workdir: str | Path,
    executor: str = "local",
    workers: int = 1,
    retry_failed: bool = False,
    address: str | None = None,
    gpus_per_run: float = 0.0,
    console: Console | None = None,
    progress: bool = True,
) -> dict:
    """Plan a sweep spec and run every planned run not yet finished; return counts and the store rows."""
    console = console or Console(stderr=True)
    runs, notes = plan(spec, workdir)
    for note in notes:
        console.print(f"[yellow]{escape(note)}[/]")
    res = execute(runs, spec.name, workdir, executor, workers, retry_failed, address, gpus_per_run, spec.probes,
                  console, progress)  # fmt: skip
    return res | {"notes": notes}


def _report(console: Console, task: Task, row: dict | None, result: dict) -> None:
    status = row["status"] if row else result.get("status")
    loss = row.get("final_val_loss") if row else None
    msg = f"  {task.planned.name:<40} {status:<11}"
    if loss is not None:
        msg += f" val {loss:.4f}"
    if status == "failed":
        msg += f"  {result.get('error', row.get('error') if row else '')}"
    console.print(msg, markup=False, highlight=False, soft_wrap=True)
