"""The Ray executor: each run a Ray task with its resource request; results return to the driver.

`address=None` starts a local Ray instance sized to `workers` CPUs; `address="auto"` or
`"ray://host:10001"` joins an existing cluster. Workers need the work directory on a shared
filesystem (checkpoints and caches live there); the store is written by the driver alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from scalelab.errors import UserError


def run_ray(tasks, workdir: Path, workers: int, address: str | None, gpus_per_run: float,
            threads: int, probes: bool = False) -> Iterator[tuple]:  # fmt: skip
    try:
        import ray
    except ImportError:
        raise UserError("the Ray executor needs the ray extra: pip install 'scalelab[ray]'") from None
    from scalelab.sweep.worker import run_worker

    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=workers * threads, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
            started_here = True
    try:
        remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=0)(run_worker)
        root = str(Path(workdir).resolve())
        pending = {remote.remote(t.planned.kind, t.planned.cfg.to_dict(), root, t.run_id, threads, probes): t
                   for t in tasks}  # fmt: skip
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as e:  # the task itself died (worker crash)
                result = {"run_id": task.run_id, "status": "failed", "error": f"ray task died: {e}"}
            yield task, result
    finally:
        if started_here:
            ray.shutdown()
