"""The predictability study's typed config: a size ladder (a sweep spec) with a task mix, and the analysis."""

from __future__ import annotations

from pydantic import Field

from scalelab.config import _Strict
from scalelab.laws.abrupt import MIN_JUMP_DEFAULT, Z_DEFAULT
from scalelab.sweep.spec import SweepSpec


class Analysis(_Strict):
    """The abrupt-jump rule and the forecast."""

    z: float = Field(Z_DEFAULT, gt=0.0)
    """A jump is abrupt when it exceeds the smooth trend's prediction by z standard deviations..."""
    min_jump: float = Field(MIN_JUMP_DEFAULT, ge=0.0, le=1.0)
    """...and is at least this large (exact-match share)."""
    holdout: int = Field(1, ge=1)
    """The largest `holdout` runs (by compute) are forecast from the others."""


class Config(SweepSpec):
    """A size ladder (Ganguli et al. 2022) on one corpus with capability tasks mixed in and scored.

    The sweep fields (`base`, `grid`, `points`, `budget`, ...) are those of `scalelab sweep`'s spec;
    `base.data.tasks` is the task mix and `base.data.eval_tasks` the tasks scored at every evaluation.
    """

    name: str = "predictability-quick"
    """The group of the study's runs in the store, and the report's file name."""
    workers: int = Field(1, ge=1)
    """Runs trained at once (the default of --workers); each gets cores / workers threads."""
    analysis: Analysis = Analysis()  # type: ignore[assignment]
    """The abrupt-jump rule and the forecast."""
