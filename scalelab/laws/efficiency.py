"""Algorithmic efficiency: compute to reach a target, efficiency multipliers, and the doubling time.

Hernandez & Brown 2020 ("Measuring the algorithmic efficiency of neural networks", arXiv
2005.04305) hold the capability fixed and measure the training compute each method needs to reach
it: the compute until the *first* evaluation at which the model matches the target (their Section
3: AlexNet's 79.1% top-5 on ImageNet). The efficiency multiplier of a method over a baseline is
the ratio of their compute-to-target; the trend over dated methods is a least-squares line of
log2(compute) against date, whose inverse slope is the doubling time of efficiency (16 months on
their ImageNet table, 44x less compute from AlexNet 2012 to EfficientNet-b0 2019).

Here a recipe is trained at a few sizes and seeds; its compute-to-target is that of its *best* size
(the size whose seeds reach the target with the least compute, as the paper takes each method at
its most efficient configuration), with seeds averaged geometrically. The multiplier's interval
is a bootstrap over seeds: each (recipe, size) cell's seeds are resampled, the best size is chosen
again inside every resample, and the ratio is recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.bootstrap import percentile_ci

PFS_DAY = 1e15 * 86400.0
"""One petaflop/s-day in FLOPs (the unit of Hernandez & Brown 2020)."""

PAPER_IMAGENET: tuple[tuple[str, str, float], ...] = (
    ("AlexNet", "2012-06", 3.1),
    ("GoogLeNet", "2014-09", 0.71),
    ("MobileNet_v1", "2017-04", 0.28),
    ("ShuffleNet_v1", "2017-07", 0.15),
    ("ShuffleNet_v2", "2018-06", 0.12),
    ("EfficientNet-b0", "2019-05", 0.069),
)
"""Hernandez & Brown 2020, Figure 1 / Table: (method, publication month, training compute in
petaflop/s-days to reach AlexNet-level top-5 accuracy on ImageNet), the algorithmic frontier."""


def compute_to_target(flops: Sequence[float], loss: Sequence[float], target: float, *,
                      interpolate: bool = False) -> float:
    """Training FLOPs at the first evaluation whose loss is at or below `target`; inf if none is.

    The paper's rule is the first evaluation that matches the target (no interpolation), so the
    answer is resolved only as finely as the evaluations are spaced. With `interpolate`, the
    crossing between the last evaluation above the target and the first at or below it is placed
    by linear interpolation of the loss in log FLOPs (never before the previous evaluation).
    Evaluations are taken in order of FLOPs.
    """
    f = np.asarray(flops, dtype=float)
    y = np.asarray(loss, dtype=float)
    if f.shape != y.shape:
        raise UserError(f"flops ({f.size}) and loss ({y.size}) must have one value per evaluation")
    order = np.argsort(f, kind="stable")
    f, y = f[order], y[order]
    hit = np.flatnonzero(np.isfinite(y) & (y <= target))
    if hit.size == 0:
        return float("inf")
    i = int(hit[0])
    if not interpolate or i == 0 or not f[i - 1] > 0:
        return float(f[i])
    frac = (y[i - 1] - target) / (y[i - 1] - y[i])
    return float(np.exp(np.log(f[i - 1]) + frac * (np.log(f[i]) - np.log(f[i - 1]))))


def best_loss_gap(loss: Sequence[float], target: float) -> float:
    """How far the lowest loss stays above the target (<= 0 when the target is reached)."""
    y = np.asarray(loss, dtype=float)
    y = y[np.isfinite(y)]
    return float(np.min(y) - target) if y.size else float("inf")


def geometric_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Geometric mean along `axis`; inf where any value is inf (a seed that never reached the target)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(v), axis=axis))


Cells = Mapping[str, Mapping[str, Sequence[float]]]
"""{recipe: {size: [compute-to-target of each seed, inf if not reached]}}."""


def best_size(cells: Mapping[str, Sequence[float]]) -> tuple[str | None, float]:
    """(the size with the least geometric-mean compute-to-target over seeds, that compute); (None, inf)."""
    best, value = None, float("inf")
    for size, seeds in cells.items():
        c = float(geometric_mean(np.asarray(seeds, dtype=float)))
        if c < value:
            best, value = size, c
    return best, value


@dataclass
class EfficiencyResult:
    """Compute-to-target per recipe at its best size, and multipliers over the baseline.

    Attributes:
        baseline: the recipe the multipliers divide.
        compute: {recipe: [value, lo, hi]} FLOPs to target at the best size (bootstrap interval over seeds).
        best_size: {recipe: size or None}.
        multipliers: {recipe: [value, lo, hi]} = baseline compute / recipe compute (> 1: more efficient).
        reached: {recipe: bool}: whether any size of the recipe reached the target (every seed of it).
        n_boot, seed, level: the bootstrap.
    """

    baseline: str
    compute: dict[str, list[float]]
    best_size: dict[str, str | None]
    multipliers: dict[str, list[float]]
    reached: dict[str, bool]
    n_boot: int
    seed: int
    level: float

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))


def efficiency_multipliers(cells: Cells, baseline: str, *, n_boot: int = 1000, seed: int = 0,
                           level: float = 0.95) -> EfficiencyResult:
    """Each recipe's compute-to-target at its best size and its multiplier over `baseline`.

    Bootstrap over seeds: in every resample each (recipe, size) cell draws its seeds with
    replacement, each recipe's best size is chosen again, and baseline / recipe is recomputed;
    the interval is the percentile interval of those ratios (resamples where either side never
    reaches the target are dropped from the ratio's samples but counted in nothing else).
    """
    if baseline not in cells:
        raise UserError(f"the baseline recipe {baseline!r} has no runs; the recipes are: {', '.join(cells)}")
    rng = np.random.default_rng(seed)
    point = {r: best_size(c) for r, c in cells.items()}
    draws = {r: np.empty(n_boot) for r in cells}
    for r, sizes in cells.items():
        arrays = {s: np.asarray(v, dtype=float) for s, v in sizes.items() if len(v)}
        per_size = []
        for v in arrays.values():
            idx = rng.integers(0, v.size, size=(n_boot, v.size))
            per_size.append(geometric_mean(v[idx], axis=1))  # (n_boot,)
        draws[r] = np.min(np.stack(per_size), axis=0) if per_size else np.full(n_boot, np.inf)
    compute, mult = {}, {}
    base = draws[baseline]
    for r in cells:
        value = point[r][1]
        compute[r] = [value, *percentile_ci(draws[r], level)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = base / draws[r]
            m = point[baseline][1] / value if np.isfinite(value) else float("nan")
        mult[r] = [float(m) if np.isfinite(m) else float("nan"), *percentile_ci(ratio[ratio > 0], level)]
    return EfficiencyResult(baseline=baseline, compute=compute, best_size={r: p[0] for r, p in point.items()},
                            multipliers=mult, reached={r: np.isfinite(p[1]) for r, p in point.items()},
                            n_boot=n_boot, seed=seed, level=level)


def decimal_year(date: str) -> float:
    """'2019-05' or '2019-05-17' or '2019' -> 2019.33... (months count from the start of the year)."""
    parts = str(date).strip().split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 1
        day = int(parts[2]) if len(parts) > 2 else 1
    except ValueError:
        raise UserError(f"date {date!r} is not YYYY, YYYY-MM or YYYY-MM-DD; write e.g. '2019-05'") from None
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise UserError(f"date {date!r} has no such month or day; write e.g. '2019-05'")
    return year + (month - 1) / 12.0 + (day - 1) / 365.25


@dataclass
class DoublingFit:
    """log2(compute) = intercept + slope * year, by least squares (Hernandez & Brown 2020, Figure 1).

    Attributes:
        months: doubling time of efficiency, -12 / slope (compute halves every `months`).
        months_ci: the interval of `months` from the t interval of the slope at `level`.
        slope, slope_ci: log2 FLOPs per year (negative: less compute each year).
        factor: compute of the earliest entry / compute of the latest (the paper's 44x).
        factor_fit: 2^(-slope * years spanned), the fitted line's factor over the same span.
        n_points, years: table size and span.
    """

    months: float
    months_ci: tuple[float, float]
    slope: float
    slope_ci: tuple[float, float]
    intercept: float
    factor: float
    factor_fit: float
    n_points: int
    years: float
    level: float

    def to_dict(self) -> dict[str, object]:
        out = dict(vars(self))
        out["months_ci"], out["slope_ci"] = list(self.months_ci), list(self.slope_ci)
        return out


def fit_doubling_time(dates: Sequence[str | float], compute: Sequence[float], *, level: float = 0.95) -> DoublingFit:
    """Least squares of log2(compute) on date, and the doubling time -12/slope months with its interval.

    The interval is the classical t interval of the slope (n - 2 degrees of freedom) mapped through
    -12/slope; when the slope's interval reaches 0 or above, efficiency may not be improving at all
    and the upper end is inf.
    """
    from scipy import stats

    t = np.array([decimal_year(d) if isinstance(d, str) else float(d) for d in dates])
    c = np.asarray(compute, dtype=float)
    if t.size != c.size:
        raise UserError(f"{t.size} dates but {c.size} compute values; give one date per entry")
    if t.size < 3 or np.ptp(t) == 0:
        raise UserError("the doubling-time fit needs at least 3 entries with at least two different dates")
    if not np.all(np.isfinite(c) & (c > 0)):
        raise UserError("every compute-to-target must be a positive finite number (a recipe that never "
                        "reached the target has none: leave it out of the dated table)")
    res = stats.linregress(t, np.log2(c))
    half = stats.t.ppf(0.5 + level / 2, t.size - 2) * res.stderr
    lo, hi = res.slope - half, res.slope + half
    months = -12.0 / res.slope if res.slope < 0 else float("inf")
    m_lo = -12.0 / lo if lo < 0 else float("inf")
    m_hi = -12.0 / hi if hi < 0 else float("inf")
    first, last = int(np.argmin(t)), int(np.argmax(t))
    years = float(t[last] - t[first])
    return DoublingFit(months=months, months_ci=(m_lo, m_hi), slope=float(res.slope), slope_ci=(lo, hi),
                       intercept=float(res.intercept), factor=float(c[first] / c[last]),
                       factor_fit=float(2.0 ** (-res.slope * years)), n_points=int(t.size), years=years,
                       level=level)


def paper_table_fit(level: float = 0.95) -> dict[str, object]:
    """The doubling-time fit on Hernandez & Brown 2020's ImageNet table, with the table itself."""
    fit = fit_doubling_time([d for _, d, _ in PAPER_IMAGENET], [c for _, _, c in PAPER_IMAGENET], level=level)
    table = [{"method": m, "date": d, "pfs_days": c, "flops": c * PFS_DAY} for m, d, c in PAPER_IMAGENET]
    return {"table": table, "fit": fit.to_dict(), "doubling_time_months": [fit.months, *fit.months_ci],
            "factor": fit.factor, "source": "Hernandez and Brown 2020, arXiv 2005.04305 (ImageNet, AlexNet-level)"}
