"""Sweep specs and plans: a base config, grid axes over any config key, and a way to choose budgets.

A spec in TOML:

    name = "scaling"
    [base]                      # any run config (data / model / train sections)
    model.recipe = "modern"
    [grid]                      # axes: config key -> values; the plan is their product
    "model.size" = ["3xs", "2xs", "xs", "s"]
    "train.seed" = [0, 1]
    [budget]
    mode = "tokens_per_param"   # "fixed" (the base's iters/tokens), "tokens_per_param" or "isoflop"
    tokens_per_param = 20       # D = ratio * N
    flops = [1e13, 3e13]        # isoflop: D = C / (FLOPs per token) for every size, at each C
    [analysis]
    fit_params = "nonembed"     # which N the laws use: "nonembed" (Kaplan) or "total"

`plan(spec, workdir)` turns it into one `PlannedRun` per grid point (and compute budget), each
with its parameter count, tokens and FLOPs, C = (6N + 12 L H Q T) D. That is the one definition of
C from budget to fit: an IsoFLOP run gets D = C / (FLOPs per token), the store records C and D as
trained, and the fits take those (`laws.fit_isoflop(..., tokens=D)`), never C / (6 N).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from scalelab.config import RunConfig, _Strict, apply_overrides, build_config, read_toml
from scalelab.errors import UserError
from scalelab.names import check_name


class BudgetSpec(_Strict):
    mode: Literal["fixed", "tokens_per_param", "isoflop"] = "fixed"
    tokens_per_param: float = 20.0
    params: Literal["nonembed", "total"] = "total"
    """Which parameter count `tokens_per_param` multiplies."""
    flops: list[float] = Field(default_factory=list)
    """Compute budgets for 'isoflop'."""
    min_iters: int = 20
    """Runs whose budget gives fewer optimizer steps are dropped from the plan (said in the plan)."""


class AnalysisSpec(_Strict):
    fit_params: Literal["nonembed", "total"] = "nonembed"
    """N of L(N) in the sweep report (Kaplan: non-embedding); L(N, D) uses total N (Hoffmann)."""
    bootstrap: int = 200


class SweepSpec(_Strict):
    name: str = "sweep"
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    """Explicit points (config key -> value), crossed with the grid: for designs that are no product,
    such as a baseline plus treatments."""
    probes: bool = False
    """Run the mechanism probes (induction, copying, in-context learning) at every evaluation."""
    budget: BudgetSpec = BudgetSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    evals_per_run: int = 8
    """Evaluations spread over each run (sets train.eval_every), for loss-vs-tokens curves."""
    warmup_fraction: float | None = 0.05
    """If set, train.warmup_iters = this fraction of each run's steps (budgets differ per run)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        """The name becomes a run group and a report file name: a slug, never a path."""
        try:
            return check_name(v, "sweep name")
        except UserError as e:
            raise ValueError(str(e)) from None


@dataclass
class PlannedRun:
    name: str
    cfg: RunConfig
    axes: dict[str, Any]
    params: int
    params_nonembed: int
    flops_per_token: int
    tokens: int
    iters: int
    kind: str = "lm"
    """Which worker trains it: "lm" (the training loop) or another registered kind ("pm")."""
    stage: int = 0
    """Runs of stage k start once every run of an earlier stage has finished (a later run may refer to an
    earlier one as "run:<name>")."""
    flops: float = field(init=False)

    def __post_init__(self):
        self.flops = float(self.flops_per_token) * self.tokens

    @property
    def config_hash(self) -> str:
        return self.cfg.config_hash()


def load_spec(path: str | Path | None, overrides: list[str] | None = None, raw: dict | None = None) -> SweepSpec:
    data = dict(raw or {}) if path is None else read_toml(path)
    apply_overrides(data, overrides)
    spec = build_config(data, origin=str(path or "spec"), cls=SweepSpec)
    build_config(dict(spec.base), origin=f"{path or 'spec'} [base]")  # the base alone must be a valid config
    return spec


def _axis_label(key: str, value: Any) -> str:
    """`size=L2`, `lr=0.003`: a name part that is a safe file name whatever the value (a path, a list)."""
    short = key.rsplit(".", 1)[-1]
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{short}=" + (re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.") or "x")


def set_key(raw: dict, key: str, value: Any) -> None:
    """raw["a"]["b"] = value for key "a.b" (nested dicts made as needed)."""
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def run_counts(cfg: RunConfig, vocab_size: int) -> tuple[int, int, int]:
    """(params, params_nonembed, FLOPs per token) without allocating the model."""
    import torch

    from scalelab.flops import flops_per_token
    from scalelab.model.gpt import GPT
    from scalelab.model.sizes import resolve

    g = resolve(cfg.model, vocab_size)
    with torch.device("meta"):
        c = GPT(g).param_counts()
    return c["params"], c["params_nonembed"], flops_per_token(c["params_flops"], g.n_layer, g.n_head, g.head_dim,
                                                              g.block_size)  # fmt: skip


def vocab_size_of(cfg: RunConfig, workdir: Path, cache: dict) -> int:
    """The tokenizer's vocabulary (257 for bytes; trained/loaded once per data config, memoised in `cache`)."""
    if cfg.data.tokenizer == "byte":
        return 257
    key = cfg.data.model_dump_json()
    if key not in cache:
        from scalelab.data.shards import prepare_shards

        cache[key] = prepare_shards(cfg.data, Path(workdir) / "cache", progress=False).vocab_size
    return cache[key]


def plan(spec: SweepSpec, workdir: str | Path) -> tuple[list[PlannedRun], list[str]]:
    """The runs of a spec, and notes on anything dropped or adjusted."""
    grid_keys = list(spec.grid)
    grid_points = list(itertools.product(*(spec.grid[k] for k in grid_keys))) if grid_keys else [()]
    extra = spec.points or [{}]
    combos = [dict(zip(grid_keys, g)) | e for g in grid_points for e in extra]
    budgets: list[float | None] = list(spec.budget.flops) if spec.budget.mode == "isoflop" else [None]
    if spec.budget.mode == "isoflop" and not budgets:
        raise UserError("budget.mode = 'isoflop' needs budget.flops = [C1, C2, ...]")
    runs, notes, vocab_cache = [], [], {}
    for combo in combos:
        for flops in budgets:
            raw = copy_tree(spec.base)
            for k, v in combo.items():
                set_key(raw, k, v)
            labels = [_axis_label(k, v) for k, v in combo.items()]
            if flops is not None:
                labels.append(f"C={flops:.2g}")
            name = "-".join([spec.name, *labels]) if labels else spec.name
            raw["name"] = name
            cfg = build_config(raw, origin=f"sweep point {name}")
            params, nonembed, fpt = run_counts(cfg, vocab_size_of(cfg, Path(workdir), vocab_cache))
            tokens_per_step = cfg.train.batch_size * cfg.model.block_size * cfg.train.grad_accum
            if spec.budget.mode == "fixed":
                iters = cfg.train.iters or math.ceil(cfg.train.tokens / tokens_per_step)
            else:
                n = nonembed if spec.budget.params == "nonembed" else params
                tokens = spec.budget.tokens_per_param * n if flops is None else flops / fpt
                iters = max(1, round(tokens / tokens_per_step))
                if iters < spec.budget.min_iters:
                    notes.append(f"dropped {name}: {iters} steps < budget.min_iters={spec.budget.min_iters}")
                    continue
            set_key(raw, "train.iters", iters)
            set_key(raw, "train.tokens", None)
            if spec.evals_per_run:
                every = max(1, iters // spec.evals_per_run)
                set_key(raw, "train.eval_every", every)
                set_key(raw, "train.ckpt_every", max(every, iters // 4))
            if spec.warmup_fraction is not None:
                set_key(raw, "train.warmup_iters", max(1, int(spec.warmup_fraction * iters)))
            cfg = build_config(raw, origin=f"sweep point {name}")
            runs.append(PlannedRun(name, cfg, dict(combo) | ({"flops": flops} if flops else {}),
                                   params, nonembed, fpt, iters * tokens_per_step, iters))  # fmt: skip
    if not runs:
        raise UserError(f"the sweep {spec.name!r} plans no runs; " + ("; ".join(notes) or "add grid values"))
    return runs, notes


def copy_tree(d: dict) -> dict:
    return {k: copy_tree(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v) for k, v in d.items()}
