"""Chinchilla Approach 2: IsoFLOP profiles.

Hoffmann et al. 2022, Section 3.2: train several model sizes at each of a few fixed FLOP budgets,
fit a parabola to final loss against log N for each budget, and take its minimum as the
compute-optimal N for that budget. Then fit power laws N_opt = k_N C^a and D_opt = k_D C^b across
budgets by least squares in log-log space (their Table 2 reports a = 0.49, b = 0.51). Intervals
come from resampling the runs within each budget and redoing both steps.

One definition of C from the budget to the fit: a sweep that sets D = C / (FLOPs per token) with
the PaLM count (6 N + 12 L H Q T) trains each run on D tokens for which C = 6 N D does not hold,
least of all with non-embedding N (for small models it is off by 1.1x to 2.9x). Pass the `tokens`
each run actually had: D_opt is then read off the profile itself (log D is interpolated linearly
in log N at N_opt), and b is measured, not forced to 1 - a. Without `tokens`, D = C / (6 N) is
assumed, which is right only if C was counted as 6 N D with the same N.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.allocation import FLOPS_PER_PARAM_TOKEN
from scalelab.laws.bootstrap import percentile_ci
from scalelab.laws.validate import positive_finite, same_length


@dataclass(frozen=True)
class IsoFlopMinimum:
    """The parabola minimum of one IsoFLOP profile (loss = c2 x^2 + c1 x + c0, x = log N)."""

    flops: float
    params: float
    tokens: float
    loss: float
    curvature: float
    n_runs: int


@dataclass
class IsoFlopFit:
    """Approach 2 result: per-budget minima and the power laws through them.

    N_opt = params_coef * C^a and D_opt = tokens_coef * C^b; `ci` holds 95% percentile intervals
    (keys a, b, params_coef, tokens_coef) when bootstrapped.
    """

    minima: list[IsoFlopMinimum]
    a: float
    b: float
    params_coef: float
    tokens_coef: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain numbers for JSON."""
        return {
            "a": self.a, "b": self.b, "params_coef": self.params_coef, "tokens_coef": self.tokens_coef,
            "minima": [vars(m).copy() for m in self.minima],
            "ci": {k: list(v) for k, v in self.ci.items()},
        }


def group_budgets(flops: np.ndarray, rtol: float = 0.05) -> np.ndarray:
    """Label runs with the same budget: sorted budgets within `rtol` of a group's first share a label.

    Budgets read off plots or computed as 6ND rarely match exactly; `rtol` absorbs that.
    """
    c = np.asarray(flops, dtype=float)
    order = np.argsort(c, kind="stable")
    labels = np.empty(len(c), dtype=int)
    group, first = -1, -np.inf
    for i in order:
        if c[i] > first * (1.0 + rtol):
            group, first = group + 1, c[i]
        labels[i] = group
    return labels


def parabola_minimum(params: np.ndarray, loss: np.ndarray, flops: float,
                     tokens: np.ndarray | None = None) -> IsoFlopMinimum:
    """Fit loss = c2 (log N)^2 + c1 log N + c0 and return the minimum (Hoffmann et al. 2022, Sec. 3.2).

    D_opt: interpolated in the profile's own (log N, log D) if `tokens` are given, else C / (6 N_opt).
    """
    x = np.log(np.asarray(params, dtype=float))
    if np.unique(x).size < 3:
        raise UserError(
            f"the IsoFLOP profile at C={flops:.3g} has fewer than 3 distinct model sizes; a parabola "
            "needs at least 3: add runs at this budget or drop it"
        )
    c2, c1, c0 = np.polyfit(x, np.asarray(loss, dtype=float), 2)
    if not c2 > 0:
        raise UserError(
            f"the IsoFLOP profile at C={flops:.3g} is not convex (its parabola opens downwards), so it "
            "has no minimum: add smaller and larger models at this budget so that the valley is bracketed"
        )
    x_min = -c1 / (2.0 * c2)
    n_opt = float(np.exp(x_min))
    if tokens is None:
        d_opt = float(flops / (FLOPS_PER_PARAM_TOKEN * n_opt))
    else:
        d_opt = float(np.exp(_interpolate(x, np.log(np.asarray(tokens, dtype=float)), x_min)))
    return IsoFlopMinimum(flops=float(flops), params=n_opt, tokens=d_opt,
                          loss=float(c0 - c1 * c1 / (4.0 * c2)), curvature=float(c2), n_runs=len(x))


def _interpolate(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """Piecewise-linear y(at) through the points sorted by x, extended along the end segments.

    At a fixed C, log D = log C - log FLOPs-per-token(N) bends in log N (embeddings and attention
    weigh more in small models), so D_opt comes from the neighbouring runs, not a global line.
    """
    ux, idx = np.unique(x, return_index=True)
    uy = y[idx]
    if ux.size == 1:
        return float(uy[0])
    i = int(np.clip(np.searchsorted(ux, at) - 1, 0, ux.size - 2))
    t = (at - ux[i]) / (ux[i + 1] - ux[i])
    return float(uy[i] + t * (uy[i + 1] - uy[i]))


def _power_fit(c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares exponent and coefficient of y = k C^p in log-log space."""
    p, log_k = np.polyfit(np.log(c), np.log(y), 1)
    return float(p), float(np.exp(log_k))


def _fit_minima(minima: list[IsoFlopMinimum]) -> tuple[float, float, float, float]:
    c = np.array([m.flops for m in minima])
    a, k_n = _power_fit(c, np.array([m.params for m in minima]))
    b, k_d = _power_fit(c, np.array([m.tokens for m in minima]))
    return a, b, k_n, k_d


def fit_isoflop(
    params: np.ndarray,
    loss: np.ndarray,
    flops: np.ndarray,
    tokens: np.ndarray | None = None,
    *,
    rtol: float = 0.05,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> IsoFlopFit:
    """Approach 2 of Hoffmann et al. 2022: parabola minima per budget, then N_opt ∝ C^a, D_opt ∝ C^b.

    Args:
        params, loss, flops: one entry per run; runs within `rtol` of each other's budget form one
            IsoFLOP profile (the budget is their geometric mean).
        tokens: the tokens each run trained on (recommended; see the module docstring). Without
            them D_opt = C / (6 N_opt), right only if `flops` were counted as 6 N D with this N.
        n_boot: if > 0, resample runs within each profile, redo the fits, and report percentile
            intervals at `level` in `ci`.
    """
    n = positive_finite("params", params)
    y = positive_finite("loss", loss)
    c = positive_finite("flops", flops)
    d = None if tokens is None else positive_finite("tokens", tokens)
    if d is None:
        same_length(params=n, loss=y, flops=c)
    else:
        same_length(params=n, loss=y, flops=c, tokens=d)
    labels = group_budgets(c, rtol)
    groups = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    if len(groups) < 2:
        raise UserError("IsoFLOP fitting needs at least 2 compute budgets to fit N_opt ∝ C^a; add runs "
                        "at another budget")
    budgets = [float(np.exp(np.mean(np.log(c[g])))) for g in groups]

    def minimum(idx: np.ndarray, budget: float) -> IsoFlopMinimum:
        return parabola_minimum(n[idx], y[idx], budget, None if d is None else d[idx])

    minima = [minimum(g, cb) for g, cb in zip(groups, budgets, strict=True)]
    a, b, k_n, k_d = _fit_minima(minima)
    fit = IsoFlopFit(minima=minima, a=a, b=b, params_coef=k_n, tokens_coef=k_d)
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(n_boot):
            try:
                boot = [minimum(s, cb) for g, cb in zip(groups, budgets, strict=True)
                        for s in [rng.choice(g, size=len(g))]]
            except UserError:  # a resample can lose the valley; count it as missing
                draws.append((np.nan,) * 4)
                continue
            draws.append(_fit_minima(boot))
        arr = np.array(draws)
        fit.ci = {k: percentile_ci(arr[:, i], level)
                  for i, k in enumerate(("a", "b", "params_coef", "tokens_coef"))}
    return fit
