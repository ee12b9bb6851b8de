"""Effective data transferred (Hernandez et al. 2021, "Scaling Laws for Transfer", arXiv 2102.01293).

A model pre-trained on distribution A and fine-tuned on D_F tokens of B reaches some loss on B.
D_E is the amount of B a model of the same size trained from scratch needs to reach that loss;
the data transferred is D_T = D_E - D_F and the effective data multiplier D_E / D_F (Section 2).
The paper fits D_T = k D_F^alpha N^beta (Eq. 1.2; N non-embedding parameters) and finds, text ->
Python, k = 1.9e4, alpha = 0.18, beta = 0.38 in the low-data regime.

- `invert_scratch_curve`: D_E from one size's measured from-scratch L(D), interpolated linearly in
  log-log between the measured points; a loss outside the measured range is reached by a power law
  through the two nearest points and FLAGGED (`extrapolated`), never clipped to the range.
- `transfer_table`: D_E, D_T, the multiplier and ossification (the fine-tuned model worse than
  from scratch on the same data: D_T < 0, Section 3.3) for every (size, D_F).
- `fit_transfer`: log D_T = log k + alpha log D_F + beta log N by least squares over the points
  with D_T > 0, with percentile intervals from a case bootstrap.

Pure NumPy: the numbers may come from any runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.bootstrap import percentile_ci

PAPER_TEXT_TO_PYTHON = {"k": 1.9e4, "alpha": 0.18, "beta": 0.38}
"""Hernandez et al. 2021, Eq. 1.2 and Table 1: English text -> Python."""


def _curve(tokens, loss) -> tuple[np.ndarray, np.ndarray]:
    """The measured from-scratch curve sorted by D and made non-increasing (best loss with at most D tokens)."""
    d = np.asarray(tokens, dtype=float)
    y = np.asarray(loss, dtype=float)
    ok = np.isfinite(d) & np.isfinite(y) & (d > 0) & (y > 0)
    d, y = d[ok], y[ok]
    if np.unique(d).size < 2:
        raise UserError("inverting a from-scratch L(D) needs at least two finite points at different D; "
                        "train from scratch at more data sizes")  # fmt: skip
    order = np.argsort(d, kind="stable")
    return d[order], np.minimum.accumulate(y[order])


def _tail_points(y: np.ndarray) -> tuple[list[int], list[int]]:
    """Index pairs of the power laws that extend the curve: below its smallest and beyond its largest D
    (the nearest points whose losses differ, so that a flat stretch does not make the law flat)."""
    nxt = np.flatnonzero(y < y[0])
    last = np.flatnonzero(y > y[-1])
    return [0, int(nxt[0]) if nxt.size else y.size - 1], [int(last[-1]) if last.size else 0, y.size - 1]


def _power_through(d: np.ndarray, loss: np.ndarray, target: float) -> float:
    """D where the power law L = a D^-b through two (D, L) points reaches `target`; inf when it never does."""
    (d0, d1), (l0, l1) = np.log(d), np.log(loss)
    if d1 == d0:
        return math.inf
    slope = (l1 - l0) / (d1 - d0)  # = -b
    if slope >= 0:
        return math.inf if target < min(loss) else 0.0  # a flat curve: never reached / reached with no data
    return float(math.exp(d0 + (math.log(target) - l0) / slope))


def invert_scratch_curve(tokens, loss, target: float) -> tuple[float, str | None]:
    """(D_E, flag): the from-scratch data at which L(D) = target, and None, 'beyond_largest' or 'below_smallest'.

    The measured curve is first made non-increasing (the best loss reached with at most D tokens),
    then inverted by linear interpolation of log D in log L. A target below the lowest loss lies beyond
    the largest D measured, one above the highest loss before the smallest: both are extrapolated
    along the power law through the two nearest points and flagged.
    """
    d, y = _curve(tokens, loss)
    if not math.isfinite(target) or target <= 0:
        return math.nan, "no_loss"
    head, tail = _tail_points(y)
    if target < y[-1]:
        return _power_through(d[tail], y[tail], target), "beyond_largest"
    if target > y[0]:
        return _power_through(d[head], y[head], target), "below_smallest"
    i = int(np.flatnonzero(y >= target)[-1])  # y[i] >= target > y[i + 1], or target == y[-1]
    if i == d.size - 1 or y[i] == target:
        return float(d[np.flatnonzero(y == y[i])[0]]), None
    frac = (math.log(y[i]) - math.log(target)) / (math.log(y[i]) - math.log(y[i + 1]))  # log-log: exact on a power law
    return float(math.exp(math.log(d[i]) + frac * (math.log(d[i + 1]) - math.log(d[i])))), None


def scratch_loss_at(tokens, loss, d: float) -> float:
    """The from-scratch loss at D: log-log interpolation of the non-increasing curve, extended outside it by
    the same power laws as `invert_scratch_curve` (so that ossification and D_E < D_F agree)."""
    x, y = _curve(tokens, loss)
    head, tail = _tail_points(y)
    if x[0] <= d <= x[-1]:
        return float(np.exp(np.interp(math.log(d), np.log(x), np.log(y))))
    i, j = head if d < x[0] else tail
    if y[i] == y[j]:
        return float(y[j] if d > x[-1] else y[0])
    slope = (math.log(y[j]) - math.log(y[i])) / (math.log(x[j]) - math.log(x[i]))
    return float(math.exp(math.log(y[i]) + slope * (math.log(d) - math.log(x[i]))))


def transfer_table(n: float, scratch_tokens, scratch_loss, finetune_tokens, finetune_loss) -> list[dict]:
    """One row per fine-tuning run of a model with N (non-embedding) parameters: D_F, its loss, D_E, D_T,
    the multiplier D_E / D_F, the from-scratch loss at D_F, whether D_E was extrapolated, ossification."""
    rows = []
    for d_f, l_ft in zip(finetune_tokens, finetune_loss):
        d_e, flag = invert_scratch_curve(scratch_tokens, scratch_loss, float(l_ft))
        l_s = scratch_loss_at(scratch_tokens, scratch_loss, float(d_f))
        rows.append({"N": float(n), "D_F": float(d_f), "loss_finetuned": float(l_ft), "loss_scratch_at_D_F": l_s,
                     "D_E": d_e, "D_T": d_e - float(d_f), "multiplier": d_e / float(d_f),
                     "extrapolated": flag is not None, "extrapolation": flag,
                     "ossified": bool(l_ft > l_s)})  # fmt: skip
    return rows


@dataclass
class TransferFit:
    """D_T = k D_F^alpha N^beta (Hernandez et al. 2021, Eq. 1.2) with percentile intervals."""

    k: float
    alpha: float
    beta: float
    ci: dict[str, list[float]]
    n_points: int
    rmse_log: float
    """Root-mean-square residual of ln D_T."""
    n_boot: int
    excluded: int = 0
    """Points left out because D_T <= 0 (ossified or no transfer) or not finite."""
    paper_inside: dict[str, bool] = field(default_factory=dict)
    """Whether each of the paper's text -> Python values lies inside its interval."""

    def predict(self, d_f, n) -> np.ndarray:
        return self.k * np.asarray(d_f, dtype=float) ** self.alpha * np.asarray(n, dtype=float) ** self.beta

    def to_dict(self) -> dict:
        return {"k": self.k, "alpha": self.alpha, "beta": self.beta, "ci": self.ci, "n_points": self.n_points,
                "rmse_log": self.rmse_log, "n_boot": self.n_boot, "excluded": self.excluded,
                "paper": PAPER_TEXT_TO_PYTHON, "paper_inside": self.paper_inside}  # fmt: skip


def _lstsq(log_df: np.ndarray, log_n: np.ndarray, log_dt: np.ndarray) -> np.ndarray | None:
    """(ln k, alpha, beta), or None when the design cannot identify them (one D_F or one N)."""
    X = np.column_stack([np.ones_like(log_df), log_df, log_n])
    if np.linalg.matrix_rank(X) < 3:
        return None
    return np.linalg.lstsq(X, log_dt, rcond=None)[0]


def fit_transfer(d_f, n, d_t, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> TransferFit:
    """Least squares of ln D_T on ln D_F and ln N over the points with D_T > 0; intervals by resampling points."""
    d_f, n, d_t = (np.asarray(v, dtype=float).reshape(-1) for v in (d_f, n, d_t))
    if not d_f.size == n.size == d_t.size:
        raise UserError("fit_transfer: D_F, N and D_T must have the same length")
    ok = np.isfinite(d_f) & np.isfinite(n) & np.isfinite(d_t) & (d_f > 0) & (n > 0) & (d_t > 0)
    x1, x2, y = np.log(d_f[ok]), np.log(n[ok]), np.log(d_t[ok])
    point = _lstsq(x1, x2, y) if y.size >= 4 else None
    if point is None:
        raise UserError(f"fitting D_T = k D_F^alpha N^beta needs at least 4 points with D_T > 0 spanning 2 model "
                        f"sizes and 2 fine-tuning sizes; got {y.size} (of {d_t.size}); add sizes or D_F values, "
                        "or fine-tune where the pre-trained model helps")  # fmt: skip
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        b = _lstsq(x1[idx], x2[idx], y[idx])
        if b is not None:
            draws.append(b)
    arr = np.array(draws, dtype=float).reshape(-1, 3)
    ci = {"k": list(percentile_ci(np.exp(arr[:, 0]), level)), "alpha": list(percentile_ci(arr[:, 1], level)),
          "beta": list(percentile_ci(arr[:, 2], level))}  # fmt: skip
    resid = y - (point[0] + point[1] * x1 + point[2] * x2)
    inside = {key: bool(lo <= PAPER_TEXT_TO_PYTHON[key] <= hi) for key, (lo, hi) in ci.items()}
    return TransferFit(k=float(np.exp(point[0])), alpha=float(point[1]), beta=float(point[2]), ci=ci,
                       n_points=int(y.size), rmse_log=float(np.sqrt(np.mean(resid**2))), n_boot=len(draws),
                       excluded=int(d_t.size - y.size), paper_inside=inside)  # fmt: skip
