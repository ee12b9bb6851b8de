"""What a sweep worker (a local process, a Ray task or the driver itself) runs for one planned run.

`run_worker(kind, cfg_dict, workdir, run_id, threads, probes)` trains one run and returns its summary;
it never raises, since a failed run must not take the sweep down (a run that another process holds
comes back with status "busy"). The kind names the trainer:
"lm" is the training loop; other kinds are registered in `RUN_KINDS` as "module:function" with the
signature `fn(cfg_dict, workdir, run_id, threads) -> dict`, and write their record into the run folder
as the training loop's file recorder does, so that the driver ingests every kind the same way. A kind may
raise: `run_worker` turns any exception into a "failed" result (Ctrl-C into "interrupted") for every kind.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path

from scalelab.errors import RunBusy

RUN_KINDS: dict[str, str] = {
    "pm": "scalelab.align.pm_run:pm_worker",
    "distill": "scalelab.align.distill_run:distill_worker",
    "rl": "scalelab.align.rl.run:rl_worker",
    "gold-pm": "scalelab.align.gold_pm:gold_pm_worker",
}


_TASK_EVALS: dict[tuple, list] = {}
"""Capability-task evaluations built in this process during the current sweep, by data config and context.
A packed worker (`sweep.pool`) trains run after run of one sweep: a run with the same data and context as
the last reuses its fixed examples (and skips the corpus fingerprint behind them, ~1.5 s for the embedded
corpus). A task evaluation holds no state between calls, so scores are unchanged. Emptied by `forget()`
when a sweep starts, so that data edited between two sweeps of one process is read again."""


def forget() -> None:
    _TASK_EVALS.clear()


def _task_evals(cfg, workdir: str) -> list:
    from scalelab.evals.tasks import task_evals_for

    if not cfg.data.eval_tasks:
        return []
    key = (str(Path(workdir).resolve()), cfg.data.model_dump_json(), cfg.model.block_size)
    if key not in _TASK_EVALS:
        _TASK_EVALS.clear()  # one sweep's runs share their data: keep the latest only
        _TASK_EVALS[key] = task_evals_for(cfg, Path(workdir))
    return _TASK_EVALS[key]


def _probe_evals(cfg, workdir: Path) -> list:
    """The mechanism probes as an evaluation callback of the training loop."""
    from scalelab.data.batches import eval_windows
    from scalelab.data.shards import prepare_shards
    from scalelab.evals.probes import make_probe_eval

    shards = prepare_shards(cfg.data, workdir / "cache", progress=False)
    heldout = eval_windows(shards.tokens("val"), cfg.model.block_size, 8, 8, cfg.train.seed)  # 64 windows
    return [make_probe_eval(shards.tokenizer, heldout=heldout, seed=cfg.train.seed)]


def _train_lm(cfg_dict: dict, workdir: str, run_id: str, threads: int | None, probes: bool) -> dict:
    import torch

    from scalelab.config import RunConfig
    from scalelab.train.loop import train

    if threads:
        torch.set_num_threads(threads)
    cfg = RunConfig.model_validate(cfg_dict)
    extra = _probe_evals(cfg, Path(workdir)) if probes else []
    extra += _task_evals(cfg, workdir)  # capability tasks named in data.eval_tasks (issue 11)
    return train(cfg, Path(workdir), run_id=run_id, record="files", progress=False, extra_evals=extra)


def run_worker(kind: str, cfg_dict: dict, workdir: str, run_id: str, threads: int | None,
               probes: bool = False) -> dict:  # fmt: skip
    """Train one run of any kind; never raises."""
    try:
        if kind == "lm":
            return _train_lm(cfg_dict, workdir, run_id, threads, probes)
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}; known: lm, {', '.join(RUN_KINDS)}")
        module, fn = RUN_KINDS[kind].split(":")
        return getattr(importlib.import_module(module), fn)(cfg_dict, workdir, run_id, threads)
    except RunBusy as e:  # another process took the run between planning and now: its run, not a failure
        return {"run_id": run_id, "status": "busy", "error": str(e)}
    except BaseException as e:  # a failed run must not take the sweep down; Ctrl-C leaves it resumable
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        return {"run_id": run_id, "status": status, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=6)}  # fmt: skip

