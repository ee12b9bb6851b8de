"""The efficiency study's typed config: recipes (name, date, run-config overrides), sizes, seeds, target."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from scalelab.config import _Strict
from scalelab.errors import UserError
from scalelab.names import check_name


class Recipe(_Strict):
    """One training recipe: a name, when it appeared, and what it changes in the base run config."""

    name: str
    """A slug naming the recipe (part of its runs' names)."""
    date: str | None = None
    """Publication date 'YYYY-MM' for the doubling-time fit; None leaves the recipe out of the dated table."""
    set: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the run config by dotted key, e.g. {"model.recipe" = "modern", "train.optimizer" = "muon"}."""

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        try:
            return check_name(v, "recipe name")
        except UserError as e:
            raise ValueError(str(e)) from None

    @field_validator("date")
    @classmethod
    def _date(cls, v: str | None) -> str | None:
        from scalelab.laws.efficiency import decimal_year

        if v is not None:
            try:
                decimal_year(v)
            except UserError as e:
                raise ValueError(str(e)) from None
        return v


class Config(_Strict):
    """Compute-to-target of several recipes (Hernandez & Brown 2020) at a few sizes and seeds."""

    name: str = "efficiency-quick"
    """The group of the study's runs in the store, and the report's file name."""
    base: dict[str, Any] = Field(default_factory=dict)
    """The run config every run starts from (data, model, train sections)."""
    recipes: list[Recipe] = Field(default_factory=list)
    """The recipes compared; add one in a preset (or --set) to measure it against the baseline."""
    baseline: str = "gpt2"
    """The recipe the efficiency multipliers divide (the paper's AlexNet)."""
    sizes: list[str] = Field(default_factory=lambda: ["3xs", "2xs"], min_length=1)
    """Model sizes (the ladder of model/sizes.py); each recipe is taken at its best size for the target."""
    seeds: int = Field(3, ge=1)
    """Training seeds per (recipe, size): train.seed = base seed + 0..seeds-1; the bootstrap resamples them."""
    iters: int = Field(300, ge=2)
    """Optimizer steps of every run."""
    evals: int = Field(20, ge=2)
    """Evaluations per run (train.eval_every = iters // evals): the crossing is resolved to one interval."""
    target_loss: float | None = Field(None, gt=0)
    """The target validation loss; None: the baseline's final loss (its worst seed at its best size, so
    that every baseline seed reaches it), as the paper's target is AlexNet's final accuracy."""
    interpolate: bool = False
    """Place the crossing between evaluations by log-linear interpolation instead of the paper's first
    evaluation at or below the target."""
    bootstrap: int = Field(1000, ge=10)
    """Resamples of the seeds behind every interval."""
    level: float = Field(0.95, gt=0, lt=1)
    """Coverage of the intervals."""
    seed: int = 0
    """Seed of the bootstrap."""
    workers: int = Field(1, ge=1)
    """Runs trained at once (the default of --workers)."""
    paper_table: bool = False
    """Train nothing: fit the doubling time on the paper's ImageNet table (`--paper-table`)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        try:
            return check_name(v, "study name")
        except UserError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="before")
    @classmethod
    def _paper_table_name(cls, data: Any) -> Any:
        """The paper-table analysis gets its own group and report name (`<name>-paper-table`), so that it
        never replaces the report of the preset's trained runs."""
        if isinstance(data, dict) and data.get("paper_table") is True:
            name = str(data.get("name", "efficiency"))
            if not name.endswith("-paper-table"):
                data = {**data, "name": f"{name}-paper-table"}
        return data

    @model_validator(mode="after")
    def _check_recipes(self) -> Config:
        if self.paper_table:
            return self
        names = [r.name for r in self.recipes]
        if not names:
            raise ValueError("no recipes: add [[recipes]] entries (name, date, set) to the preset")
        if len(set(names)) != len(names):
            raise ValueError(f"recipe names must be unique, got {names}")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the recipes {names}; "
                             "set baseline to one of them")
        return self
