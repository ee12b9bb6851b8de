"""The runs of a scaling study: the sweep spec's plan, with replicate seeds as one more grid axis."""

from __future__ import annotations

from pathlib import Path

from scalelab.studies.scaling.config import Config
from scalelab.sweep.spec import PlannedRun
from scalelab.sweep.spec import plan as plan_sweep


def sweep_spec(config: Config) -> Config:
    """The config with `train.seed` added to the grid when `seeds` > 1."""
    if config.seeds == 1:
        return config
    base_seed = int(config.base.get("train", {}).get("seed", 1337))
    grid = dict(config.grid) | {"train.seed": [base_seed + i for i in range(config.seeds)]}
    return config.model_copy(update={"grid": grid})


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """One planned run per grid point x explicit point (x seed), with its N, D and FLOPs.

    Runs whose budget gives fewer than `budget.min_iters` steps are dropped (`sweep.spec.plan`).
    """
    runs, _notes = plan_sweep(sweep_spec(config), workdir)
    return runs
