"""Scaling of preference-model accuracy with model size and the number of comparisons.

Bai et al. 2022 (arXiv 2204.05862) find PM accuracy roughly linear in log model size and log
dataset size; for helpfulness PMs, Acc = 0.72 + 0.007 log(P / 1e11) + 0.015 log(D / 8e4), with P the
parameter count and D the number of training comparisons. `fit_pm_accuracy` fits

    Acc = a + b * log(N / n_ref) + c * log(D / d_ref)

by least squares, with percentile-bootstrap intervals over the measured points (resampled with
replacement; resamples that cannot identify all three coefficients are dropped and counted). With
the default references, ``a`` is the accuracy predicted at N = 1e11 and D = 8e4, as in the paper.
Logs are natural unless ``log_base`` says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.bootstrap import percentile_ci


@dataclass(frozen=True)
class PMScalingFit:
    """Fitted a, b, c with bootstrap intervals ``ci[name] = (lo, hi)``, and how well the fit does."""

    a: float
    b: float
    c: float
    ci: dict[str, tuple[float, float]]
    n_points: int
    rmse: float  # root mean squared residual, in accuracy units
    n_boot_used: int  # resamples that identified all three coefficients
    n_ref: float
    d_ref: float
    log_base: float

    def predict(self, n_params: float | np.ndarray, n_comparisons: float | np.ndarray) -> np.ndarray:
        """Accuracy the fit predicts at N parameters and D comparisons."""
        log_n = np.log(np.asarray(n_params, dtype=float) / self.n_ref) / math.log(self.log_base)
        log_d = np.log(np.asarray(n_comparisons, dtype=float) / self.d_ref) / math.log(self.log_base)
        return self.a + self.b * log_n + self.c * log_d


def _design(n_params: np.ndarray, n_comparisons: np.ndarray, n_ref: float, d_ref: float,
            log_base: float) -> np.ndarray:
    scale = math.log(log_base)
    return np.column_stack([np.ones_like(n_params), np.log(n_params / n_ref) / scale,
                            np.log(n_comparisons / d_ref) / scale])  # (n_points, 3)


def fit_pm_accuracy(
    n_params: Sequence[float] | np.ndarray,
    n_comparisons: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    *,
    n_ref: float = 1e11,
    d_ref: float = 8e4,
    log_base: float = math.e,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PMScalingFit:
    """Least-squares fit of Acc = a + b log(N / n_ref) + c log(D / d_ref) with bootstrap intervals.

    ``n_params`` (N), ``n_comparisons`` (D) and ``accuracy`` hold one entry per trained PM. Needs at
    least 4 points that vary in both N and D (not all on one line in (log N, log D)).
    """
    n = np.asarray(n_params, dtype=float)
    d = np.asarray(n_comparisons, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    if not (n.ndim == d.ndim == acc.ndim == 1 and n.size == d.size == acc.size):
        raise UserError(f"n_params, n_comparisons and accuracy must be flat and equally long, got sizes "
                        f"{n.size}, {d.size}, {acc.size}")
    if n.size < 4:
        raise UserError(f"need at least 4 (N, D, accuracy) points to fit 3 coefficients with an interval, "
                        f"got {n.size}")
    if not (np.all(np.isfinite(n)) and np.all(n > 0) and np.all(np.isfinite(d)) and np.all(d > 0)):
        raise UserError("n_params and n_comparisons must be finite and > 0")
    if not (np.all(np.isfinite(acc)) and np.all((acc >= 0) & (acc <= 1))):
        raise UserError("accuracy values must lie in [0, 1]")
    if n_ref <= 0 or d_ref <= 0 or log_base <= 0 or log_base == 1:
        raise UserError("n_ref and d_ref must be > 0 and log_base > 0 and != 1")
    if not 0 < level < 1 or n_boot < 1:
        raise UserError(f"need 0 < level < 1 and n_boot >= 1, got {level} and {n_boot}")
    x = _design(n, d, n_ref, d_ref, log_base)
    if np.linalg.matrix_rank(x) < 3:
        raise UserError("the points do not identify a, b and c: vary both model size and dataset size, "
                        "and not in lock-step (log D must not be a linear function of log N)")
    coef, *_ = np.linalg.lstsq(x, acc, rcond=None)
    rmse = float(np.sqrt(np.mean((acc - x @ coef) ** 2)))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, n.size, n.size)
        if np.linalg.matrix_rank(x[idx]) == 3:
            draws.append(np.linalg.lstsq(x[idx], acc[idx], rcond=None)[0])
    if not draws:
        raise UserError("no bootstrap resample identified all three coefficients; measure more points")
    coefs = np.array(draws)
    ci = {name: percentile_ci(coefs[:, i], level) for i, name in enumerate("abc")}
    return PMScalingFit(float(coef[0]), float(coef[1]), float(coef[2]), ci, int(n.size), rmse, len(draws),
                        float(n_ref), float(d_ref), float(log_base))
