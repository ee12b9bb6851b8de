"""Repeated data: Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data".

Method (the paper's Section 2, at any scale). Every model size is trained on the same token
budget D, once on data seen once (the baseline) and once per treatment (f, R): a share f of the
D training tokens comes from a random subset of f D / R tokens seen R times, the rest is unique
(`data.RepetitionMixer`, chunk granularity). Test loss is measured during training on the val
split, which holds none of the repeated subset; loss on the repeated subset is logged beside it,
and the mechanism probes (prefix matching, copying, in-context learning; Section 5) run at every
evaluation when the spec says `probes = true`.

Analysis (`analyze`, numbers in `repetition_analysis`):
- eval noise sigma from the baseline curves' jitter (and from replicate seeds when there are any);
- double descent during training: a sustained rise of test loss after an earlier minimum, above
  z sigma sqrt(2) (`detect_rise`);
- double descent across R: the repeat count of peak degradation per model size (`peak_degradation`);
- effective size: L(N) fitted on the baselines and inverted at each degraded final loss, "performs
  like a model k times smaller", with a bootstrap interval (`effective_size`);
- the data-constrained law's effective data (Muennighoff et al. 2023) for the same runs;
- the probes at the end of training, repeated minus baseline.

A preset is a sweep spec (`repetition_quick.toml`, `repetition_full.toml`) with a `[study]` table
(`StudyConfig`): the design (sizes, fractions, repeat counts) and the analysis settings.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scalelab.config import build_config, read_toml
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.sweep.spec import PlannedRun, SweepSpec, load_spec
from scalelab.sweep.spec import plan as plan_sweep

PRESETS = ("quick", "full")
_DESIGN_KEYS = ("model.size", "data.repeat_fraction", "data.repeat_epochs")


class StudyConfig(BaseModel):
    """The `[study]` table of a spec: the design of Hernandez et al. 2022 and the analysis settings."""

    model_config = ConfigDict(extra="forbid")

    sizes: list[str] = Field(default_factory=list)
    """Model sizes trained with and without repetition (ladder names 'L1', 's', ... or counts '1e6')."""
    baseline_sizes: list[str] = Field(default_factory=list)
    """Extra sizes trained without repetition only: more points for the baseline law L(N)."""
    repeat_fractions: list[float] = Field(default_factory=list)
    """Shares f of the training tokens drawn from the repeated subset."""
    repeat_epochs: list[int] = Field(default_factory=list)
    """Repeat counts R of the subset (its size is f D / R tokens)."""
    baseline_seeds: list[int] = Field(default_factory=list)
    """Extra seeds of every baseline run (replicates measure seed noise); the base seed always runs."""
    baseline_token_fractions: list[float] = Field(default_factory=list)
    """Extra baselines at these fractions of the token budget (fixed budgets only): they give the
    data-constrained law its Chinchilla base L(N, D)."""
    workers: int = 1
    """Runs trained at once by local processes (each gets cores / workers threads)."""
    noise_z: float = 3.0
    """Rises and degradations count when above noise_z standard errors."""
    noise_floor: float = 0.0
    """A lower bound on the eval noise sigma (nats), e.g. a seed-to-seed spread measured separately."""
    law_bootstrap: Literal["auto", "cases", "parametric"] = "auto"
    """Bootstrap of L(N): resample runs ('cases', >= 5 sizes), redraw losses with the noise, or auto."""
    seed: int = 0
    """Seed of the bootstrap and noise draws of the analysis."""


class RepetitionStudy(BaseModel):
    """A loaded study: the sweep spec (with the design's points filled in) and the `[study]` settings."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec: SweepSpec
    study: StudyConfig
    source: str


def preset_path(preset: str) -> Path:
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)} or give --spec FILE")
    return Path(str(resources.files("scalelab.studies") / f"repetition_{preset}.toml"))


def load_study(preset: str = "quick", spec: str | Path | None = None, overrides: list[str] | None = None
               ) -> RepetitionStudy:  # fmt: skip
    """Read a preset (or the spec file given instead) and expand its `[study]` design into sweep points."""
    from scalelab.config import apply_overrides

    path = Path(spec) if spec is not None else preset_path(preset)
    raw = read_toml(path)
    apply_overrides(raw, overrides)
    study = build_config(raw.pop("study", {}), origin=f"{path} [study]", cls=StudyConfig)
    if study.sizes:
        _expand_design(raw, study, str(path))
    try:
        sweep = load_spec(None, raw=raw)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if study.workers < 1:
        raise UserError(f"{path}: study.workers must be at least 1")
    return RepetitionStudy(spec=sweep, study=study, source=str(path))


def _depth(size: str) -> int:
    from scalelab.model.sizes import shape_for_size

    return shape_for_size(size)[0]


def _expand_design(raw: dict, study: StudyConfig, origin: str) -> None:
    """Fill `points`: per size the baseline (and its extra seeds and budgets), then every (f, R).

    Largest models come first so that parallel workers finish at about the same time.
    """
    clash = [k for k in _DESIGN_KEYS if k in raw.get("grid", {})]
    if clash or raw.get("points"):
        raise UserError(f"{origin}: give the design either in [study] (sizes, repeat_fractions, repeat_epochs) "
                        f"or as grid/points, not both (found {clash or 'points'})")  # fmt: skip
    if not study.repeat_fractions or not study.repeat_epochs:
        raise UserError(f"{origin}: [study] sizes need repeat_fractions and repeat_epochs, e.g. "
                        "repeat_fractions = [0.5], repeat_epochs = [4, 16, 64]")  # fmt: skip
    if any(not 0 < f <= 1 for f in study.repeat_fractions) or any(r < 2 for r in study.repeat_epochs):
        raise UserError(f"{origin}: repeat_fractions must lie in (0, 1] and repeat_epochs be >= 2")
    iters = raw.get("base", {}).get("train", {}).get("iters")
    if study.baseline_token_fractions and (raw.get("budget", {}).get("mode", "fixed") != "fixed" or not iters):
        raise UserError(f"{origin}: baseline_token_fractions need budget.mode = 'fixed' and base.train.iters")
    points: list[dict[str, Any]] = []
    treated = set(study.sizes)
    for size in sorted(dict.fromkeys(study.baseline_sizes + study.sizes), key=_depth, reverse=True):
        base = {"model.size": size, "data.repeat_fraction": 0.0}
        points.append(base)
        points += [base | {"train.seed": s} for s in study.baseline_seeds]
        points += [base | {"train.iters": max(1, round(fr * iters))} for fr in study.baseline_token_fractions]
        if size in treated:
            points += [{"model.size": size, "data.repeat_fraction": f, "data.repeat_epochs": r}
                       for f in study.repeat_fractions for r in study.repeat_epochs]  # fmt: skip
    raw["points"] = points


def plan(study: RepetitionStudy, workdir: str | Path) -> tuple[list[PlannedRun], list[str]]:
    """The run configs of the study (one per sweep point), and notes on anything dropped."""
    runs, notes = plan_sweep(study.spec, workdir)
    fractions = [r.cfg.data.repeat_fraction for r in runs]
    if not any(f == 0 for f in fractions) or not any(f > 0 for f in fractions):
        raise UserError(f"{study.source}: the study compares runs with and without repetition; the plan needs both "
                        "data.repeat_fraction = 0 (baselines) and > 0 (treatments)")  # fmt: skip
    return runs, notes


def run_study(preset: str = "quick", spec: str | Path | None = None, workdir: str | Path = "scalelab-work",
              progress: bool = True, overrides: list[str] | None = None) -> dict:  # fmt: skip
    """Train what is not yet trained (finished runs are reused), analyse, write the report; return the numbers.

    The dict holds `summary` (text), `report` (HTML path), the sweep's counts and wall time, and the
    results of `analyze` (JSON-serialisable).
    """
    from rich.console import Console

    from scalelab.sweep.run import run_sweep

    t0 = time.perf_counter()
    study = load_study(preset, spec, overrides)
    workdir = Path(workdir)
    plan(study, workdir)  # checks the design before anything trains
    console = Console(stderr=True, quiet=not progress)
    sweep = run_sweep(study.spec, workdir, workers=study.study.workers, console=console)
    sweep_info = {k: sweep[k] for k in ("planned", "skipped", "ran", "completed", "failed", "interrupted", "wall_s")}
    if sweep["interrupted"]:
        return {"summary": "interrupted: run the same command again to resume", "report": None,
                "sweep": sweep_info, "wall_s": time.perf_counter() - t0}  # fmt: skip
    store = RunStore.in_workdir(workdir)
    t1 = time.perf_counter()
    res = analyze(store, study.spec.name, study.study, fit_params=study.spec.analysis.fit_params,
                  n_boot=study.spec.analysis.bootstrap)  # fmt: skip
    label = preset if spec is None else Path(spec).stem.removeprefix("repetition_").removeprefix("repetition-")
    path = write(res, store, workdir / "reports" / f"repetition-{label}.html")
    res.update(summary=summary_text(res), report=str(path), sweep=sweep_info, preset=label, source=study.source,
               analysis_s=time.perf_counter() - t1, wall_s=time.perf_counter() - t0)  # fmt: skip
    return _plain(res)


def analyze(store: RunStore, sweep: str, study: StudyConfig | None = None, fit_params: str = "nonembed",
            n_boot: int = 200) -> dict:  # fmt: skip
    """Read the sweep's runs from the store and compute every number of the report (see module docstring)."""
    from scalelab.studies.repetition_results import analyze_runs

    return analyze_runs(store, sweep, study or StudyConfig(), fit_params, n_boot)


def summary_text(res: dict) -> str:
    from scalelab.studies.repetition_results import summary_text as text

    return text(res)


def write(res: dict, store: RunStore, path: str | Path) -> Path:
    """The HTML report (and its Markdown twin) of an analysis."""
    from scalelab.report import write_report
    from scalelab.studies.repetition_figures import report_sections

    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} from {store.path}"
    return write_report(path, f"Repeated data (Hernandez et al. 2022): {res['sweep']}",
                        report_sections(res, store, summary_text(res)), meta=meta)  # fmt: skip


def _plain(x: Any) -> Any:
    """Numbers as plain floats (non-finite ones as None), containers recursively: safe for json.dumps."""
    import math

    import numpy as np

    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def figures(res: dict, store: RunStore) -> list:
    """The report's matplotlib figures (see `repetition_figures`)."""
    from scalelab.studies.repetition_figures import figures as draw

    return draw(res, store)
