"""The runs of the predictability study: the sweep spec's plan (one run per rung of the size ladder)."""

from __future__ import annotations

from pathlib import Path

from scalelab.data.task_mix import check_mix, check_tasks
from scalelab.errors import UserError
from scalelab.studies.predictability.config import Config
from scalelab.sweep.spec import PlannedRun
from scalelab.sweep.spec import plan as plan_sweep


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """One planned run per size; every run mixes `base.data.tasks` in and scores `base.data.eval_tasks`."""
    data = config.base.get("data", {})
    check_tasks(data.get("eval_tasks") or [])  # an empty task set: a UserError naming the known tasks
    if data.get("tasks"):
        check_mix(data["tasks"])
    runs, _notes = plan_sweep(config, workdir)
    if len(runs) < 3 + config.analysis.holdout - 1:
        raise UserError(f"the ladder plans {len(runs)} runs; the forecast and the abrupt-jump rule need at least "
                        f"{2 + config.analysis.holdout} (add points)")  # fmt: skip
    return runs
