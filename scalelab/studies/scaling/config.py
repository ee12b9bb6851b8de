"""The scaling study's typed config: a sweep spec (sizes, budget, base run) plus the analysis choices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scalelab.config import _Strict
from scalelab.sweep.spec import SweepSpec


class Analysis(_Strict):
    """Which laws are fitted on which N, and how the forecast is scored."""

    power_params: Literal["nonembed", "total"] = "nonembed"
    """N of the single-variable laws L(N): non-embedding parameters, as Kaplan et al. 2020 count them."""
    chinchilla_params: Literal["total", "nonembed"] = "total"
    """N of L(N, D) and the IsoFLOP fit: total parameters, as Hoffmann et al. 2022 count them."""
    forecast_law: Literal["power_N", "frontier", "chinchilla"] = "power_N"
    """The law that forecasts the largest run: L(N), the compute frontier L(C), or L(N, D)."""
    forecast_compute_ratio: float = Field(4.0, ge=1.0)
    """The forecast is fitted only on runs with at most 1/ratio of the held-out run's FLOPs."""
    huber_delta: float = Field(1e-3, gt=0.0)
    """Huber threshold on log-loss residuals (Hoffmann et al. 2022: 1e-3). With residuals well above it
    (small runs, ~1% seed noise) the objective is nearly L1 and flat along the E-A-alpha ridge, so the
    point estimate wanders; a threshold above the noise (e.g. 0.02) makes it least squares for inliers."""
    bootstrap: int = Field(200, ge=0)
    """Bootstrap refits behind every interval (0: no intervals)."""
    level: float = Field(0.95, gt=0.0, lt=1.0)
    """Coverage of the intervals."""
    seed: int = 0
    """Seed of the bootstrap resamples."""


class Config(SweepSpec):
    """A scaling sweep (Kaplan et al. 2020; Hoffmann et al. 2022) and its analysis.

    The sweep fields (`base`, `grid`, `points`, `budget`, ...) are those of `scalelab sweep`'s spec.
    """

    name: str = "scaling-quick"
    """The group of the study's runs in the store, and the report's file name."""
    seeds: int = Field(1, ge=1)
    """Replicate training seeds per point (train.seed = base seed + 0..seeds-1): with more than one,
    the noise floor of the forecast is measured from the seeds rather than from curve jitter."""
    workers: int = Field(1, ge=1)
    """Runs trained at once (the default of --workers); each gets cores / workers threads."""
    analysis: Analysis = Analysis()  # type: ignore[assignment]
    """Which laws, on which N, and the forecast."""
