"""Running a sweep: resumable, idempotent, failure-isolated; only the driver writes the store.

For every planned run the driver looks up the store (by sweep name and config hash):
- completed: skipped;
- created / running / interrupted: resumed from its checkpoint (same run id);
- failed: skipped unless `retry_failed`, then resumed from its last good checkpoint;
- absent: created, then trained.
Workers (local processes or Ray tasks) train with `record="files"`: they write metrics into the
run folder and return a summary; the driver ingests both into the store. A failed run is recorded
and the others go on.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from scalelab.store import RunStore
from scalelab.sweep.spec import PlannedRun, SweepSpec, plan
from scalelab.train.record import ingest


@dataclass
class Task:
    planned: PlannedRun
    run_id: str
    action: str  # "new" | "resume" | "retry"


def _probe_evals(cfg, workdir: Path) -> list:
    """The mechanism probes as an evaluation callback of the training loop."""
    from scalelab.data.batches import eval_windows
    from scalelab.data.shards import prepare_shards
    from scalelab.evals.probes import make_probe_eval

    shards = prepare_shards(cfg.data, workdir / "cache", progress=False)
    heldout = eval_windows(shards.tokens("val"), cfg.model.block_size, 8, 8, cfg.train.seed)  # 64 windows
    return [make_probe_eval(shards.tokenizer, heldout=heldout, seed=cfg.train.seed)]


def train_worker(cfg_dict: dict, workdir: str, run_id: str, threads: int | None, probes: bool = False) -> dict:
    """Train one run in a worker (process or Ray task); never raises."""
    try:
        import torch

        from scalelab.config import RunConfig
        from scalelab.train.loop import train

        if threads:
            torch.set_num_threads(threads)
        cfg = RunConfig.model_validate(cfg_dict)
        extra = _probe_evals(cfg, Path(workdir)) if probes else None
        return train(cfg, Path(workdir), run_id=run_id, record="files", progress=False, extra_evals=extra)
    except BaseException as e:  # a failed run must not take the sweep down
        return {"run_id": run_id, "status": "failed", "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=6)}  # fmt: skip


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
    """Write a worker's result into the store; return the run's final row."""
    ingest(store, task.run_id, workdir / "runs" / task.run_id)
    if result.get("status") == "failed":
        store.update_run(task.run_id, status="failed", error=result.get("error"), finished_at=time.time())
    return store.get_run(task.run_id)


def run_sweep(
    spec: SweepSpec,
    workdir: str | Path,
    executor: str = "local",
    workers: int = 1,
    retry_failed: bool = False,
    address: str | None = None,
    gpus_per_run: float = 0.0,
    console: Console | None = None,
) -> dict:
    """Run every planned run not yet finished; return counts and the store rows of the sweep."""
    workdir = Path(workdir)
    console = console or Console(stderr=True)
    runs, notes = plan(spec, workdir)
    store = RunStore.in_workdir(workdir)
    tasks, done = classify(runs, store, spec.name, retry_failed)
    for note in notes:
        console.print(f"[yellow]{note}[/]")
    console.print(f"sweep {spec.name}: {len(runs)} runs planned, {len(done)} already done, {len(tasks)} to run "
                  f"({sum(t.action == 'resume' for t in tasks)} resumed)")  # fmt: skip
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    results: dict[str, dict] = {}
    interrupted = False
    t0 = time.perf_counter()
    if executor == "ray":
        from scalelab.sweep.ray_executor import run_ray

        for task, result in run_ray(tasks, workdir, workers, address, gpus_per_run, threads, spec.probes):
            results[task.run_id] = _report(console, task, _record(store, workdir, task, result), result)
    elif executor == "local" and workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(train_worker, t.planned.cfg.to_dict(), str(workdir), t.run_id, threads, spec.probes): t
                    for t in tasks}  # fmt: skip
            for fut in as_completed(futs):
                task = futs[fut]
                result = fut.result()
                results[task.run_id] = _report(console, task, _record(store, workdir, task, result), result)
                interrupted |= result.get("status") == "interrupted"
    elif executor == "local":
        for task in tasks:
            result = train_worker(task.planned.cfg.to_dict(), str(workdir), task.run_id, None, spec.probes)
            results[task.run_id] = _report(console, task, _record(store, workdir, task, result), result)
            if result.get("status") == "interrupted":
                interrupted = True
                break
    else:
        from scalelab.errors import UserError

        raise UserError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    rows = [store.get_run(t.run_id) for t in tasks] + [row for _, row in done]
    statuses = [r["status"] for r in rows]
    return {
        "sweep": spec.name, "planned": len(runs), "skipped": len(done), "ran": len(results),
        "completed": statuses.count("completed"), "failed": statuses.count("failed"),
        "interrupted": interrupted or statuses.count("interrupted") > 0, "wall_s": time.perf_counter() - t0,
        "notes": notes, "runs": [{"id": r["id"], "name": r["name"], "status": r["status"]} for r in rows],
    }  # fmt: skip


def _report(console: Console, task: Task, row: dict, result: dict) -> dict:
    status = row["status"] if row else result.get("status")
    loss = row.get("final_val_loss") if row else None
    msg = f"  {task.planned.name:<40} {status:<11}"
    if loss is not None:
        msg += f" val {loss:.4f}"
    if status == "failed":
        msg += f"  [red]{result.get('error', row.get('error') if row else '')}[/]"
    console.print(msg)
    return result
