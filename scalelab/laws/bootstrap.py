"""Bootstrap confidence intervals for fitted scaling laws: resample the points, refit, take percentiles.

Besiroglu et al. 2024 report percentile intervals from refits of bootstrap resamples
of the 240 points (Efron & Tibshirani 1993, Ch. 13). With delta = 1e-3 the Huber objective is
nearly L1 and flat along the E-A-alpha ridge, so a refit started only from the full-data optimum
may not move, and refits started only from the starts that did best on the full data miss the
resamples whose optimum lies in another basin (on a 16-point design 2 of 30 resamples ended worse,
beta 0.78 instead of 0.04): the tails of the intervals go missing. Here every resample is refitted
by a genuine multi-start chosen by a cheap screen of the full grid: the objective of each resample
at every candidate point (the 4,500 grid starts and the full fit's end points) is one matrix
product of the resample weights with the points' Huber losses; each resample starts from its own
best `n_starts` candidates plus the 8 starts that did best on the full data, and every start runs
to convergence (pruning after a few iterations favoured starts that rush to the E -> 0 plateau
and lost the better basin). Each resample is a vector of integer point weights (how often each
point was drawn), so all resamples x starts are optimised together by one batched BFGS
(`multistart.BatchBFGS`). On 16-point designs with a weak D term, 1 of 120 refits ended (by 0.1%)
above a full 4,500-start fit of the same resample, against 6 of 120 before; 1,000 refits of 240
points take about 23 s on this 2-core machine under load (`benchmarks/RESULTS_demo.md`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from scalelab.laws.allocation import FLOPS_PER_PARAM_TOKEN
from scalelab.laws.chinchilla import ChinchillaFit, check_chinchilla_data, fit_chinchilla
from scalelab.laws.multistart import BatchBFGS
from scalelab.laws.objective import HUBER_DELTA, LogSumExpHuber, huber, log_sum_exp_prediction
from scalelab.laws.power import PowerLawFit, check_power_data, fit_power_law

Progress = Callable[[int, int], None]
"""Called as progress(done, total) after each chunk of resamples."""


@dataclass
class BootstrapResult:
    """Point estimates, bootstrap samples and percentile intervals per quantity.

    Attributes:
        point: estimate on the full data, per quantity.
        samples: (n_boot,) refit values per quantity.
        ci: (lo, hi) percentile interval per quantity at `level`.
        level: coverage of the intervals (0.95: the 2.5th and 97.5th percentiles).
        n_boot: number of resamples; seed: the seed that drew them.
    """

    point: dict[str, float]
    samples: dict[str, np.ndarray]
    ci: dict[str, tuple[float, float]]
    level: float
    n_boot: int
    seed: int

    def to_dict(self) -> dict[str, object]:
        """Point estimates and intervals as plain floats and lists (no samples), for JSON."""
        return {"point": dict(self.point), "ci": {k: list(v) for k, v in self.ci.items()},
                "level": self.level, "n_boot": self.n_boot, "seed": self.seed}


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Equal-tailed percentile interval of the finite samples (Efron & Tibshirani 1993, Ch. 13).

    The one home of percentile intervals in scalelab: (lo, hi) at `level` (0.95: the 2.5th and
    97.5th percentiles); NaN and infinite samples (failed refits) are left out; (nan, nan) if none.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    finite = np.asarray(samples, dtype=float).reshape(-1)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


def resample_weights(n_points: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_points) draw counts: each row is n_points draws with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_points, np.full(n_points, 1.0 / n_points), size=n_boot).astype(float)


def screen_starts(
    log_x: np.ndarray, log_y: np.ndarray, weights: np.ndarray, candidates: np.ndarray, n_starts: int,
    *, delta: float = HUBER_DELTA,
) -> np.ndarray:
    """(R, k, P): for each weight row, the `n_starts` candidate points with the lowest objective.

    The Huber loss of every candidate at every point is computed once, (S, n); each resample's
    objective at every candidate is then one row of weights @ losses.T, (R, S).
    """
    candidates = np.atleast_2d(candidates)
    k = min(n_starts, len(candidates))
    with np.errstate(all="ignore"):
        losses = huber(log_sum_exp_prediction(candidates, log_x) - log_y, delta)  # (S, n)
    losses = np.where(np.isfinite(losses), losses, 1e300)
    f = weights @ losses.T  # (R, S)
    top = np.argpartition(f, k - 1, axis=1)[:, :k] if k < len(candidates) else np.tile(
        np.arange(len(candidates)), (len(weights), 1))
    return candidates[top]


def refit_weighted(
    log_x: np.ndarray,
    log_y: np.ndarray,
    weights: np.ndarray,
    starts: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    screen_iter: int = 25,
    keep_per_problem: int | None = 2,
    max_iter: int = 3000,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the weighted Huber/LSE objective once per weight row, each from every start.

    `starts` is (S, P), shared by every problem, or (R, S, P), one set per problem (`screen_starts`).
    After `screen_iter` iterations only the `keep_per_problem` best starts of each problem go on
    (None: all of them).
    Returns (theta (R, P), objective (R,)), the best end point of each problem.
    """
    n_prob, n_start, n_par = weights.shape[0], starts.shape[-2], starts.shape[-1]
    if n_prob == 0:
        return np.empty((0, n_par)), np.empty(0)
    obj = LogSumExpHuber(log_x, log_y, delta=delta, weights=weights)
    rows = np.repeat(np.arange(n_prob), n_start)
    x0 = starts.reshape(-1, n_par) if starts.ndim == 3 else np.tile(starts, (n_prob, 1))
    opt = BatchBFGS(obj, x0, rows)
    if screen_iter > 0 and keep_per_problem is not None and keep_per_problem < n_start:
        opt.run(screen_iter)
        f = np.where(np.isfinite(opt.f), opt.f, np.inf).reshape(n_prob, n_start)
        best = np.argsort(f, axis=1, kind="stable")[:, :keep_per_problem]
        opt.keep((best + n_start * np.arange(n_prob)[:, None]).ravel())
    opt.run(max_iter)
    f = np.where(np.isfinite(opt.f), opt.f, np.inf).reshape(n_prob, -1)
    pick = np.argmin(f, axis=1)
    theta = opt.x.reshape(n_prob, -1, n_par)[np.arange(n_prob), pick]
    return theta, f[np.arange(n_prob), pick]


def refit_resamples(
    log_x: np.ndarray, log_y: np.ndarray, weights: np.ndarray, candidates: np.ndarray, *,
    n_starts: int = 8, always: np.ndarray | None = None, delta: float = HUBER_DELTA, chunk: int = 250,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Refit every weight row from its own screened starts (plus `always`), every start to convergence.

    Returns (theta (R, P), objective (R,)); weight rows are done `chunk` at a time.
    """
    thetas, funs = [], []
    for lo in range(0, len(weights), chunk):
        w = weights[lo : lo + chunk]
        starts = screen_starts(log_x, log_y, w, candidates, n_starts, delta=delta)
        if always is not None and len(always):
            starts = np.concatenate([starts, np.broadcast_to(always, (len(w), *always.shape))], axis=1)
        theta, f = refit_weighted(log_x, log_y, w, starts, delta=delta, keep_per_problem=None)
        thetas.append(theta)
        funs.append(f)
        if progress is not None:
            progress(min(lo + chunk, len(weights)), len(weights))
    if not thetas:
        return np.empty((0, candidates.shape[1])), np.empty(0)
    return np.concatenate(thetas), np.concatenate(funs)


def _summarise(point: dict[str, float], samples: dict[str, np.ndarray], level: float, n_boot: int,
               seed: int) -> BootstrapResult:
    ci = {k: percentile_ci(v, level) for k, v in samples.items()}
    return BootstrapResult(point=point, samples=samples, ci=ci, level=level, n_boot=n_boot, seed=seed)


def chinchilla_quantities(theta: np.ndarray, flops: Sequence[float] = ()) -> dict[str, np.ndarray]:
    """Parameters and derived quantities for rows (a, b, e, alpha, beta) (Hoffmann et al. 2022, Eq. 4).

    Keys: E, A, B, alpha, beta, a, b, G, and for each budget C: N_opt@C, D_opt@C, tokens_per_param@C.
    """
    theta = np.atleast_2d(theta)
    A, B, E = np.exp(theta[:, 0]), np.exp(theta[:, 1]), np.exp(theta[:, 2])
    alpha, beta = theta[:, 3], theta[:, 4]
    with np.errstate(all="ignore"):  # a resample can land on alpha or beta <= 0: NaN, not a crash
        a, b = beta / (alpha + beta), alpha / (alpha + beta)
        G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
        out = {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": a, "b": b, "G": G}
        for c in flops:
            n_opt = G * (c / FLOPS_PER_PARAM_TOKEN) ** a
            d_opt = (c / FLOPS_PER_PARAM_TOKEN) ** b / G
            out[f"N_opt@{c:.3g}"] = n_opt
            out[f"D_opt@{c:.3g}"] = d_opt
            out[f"tokens_per_param@{c:.3g}"] = d_opt / n_opt
    return out


def bootstrap_chinchilla(
    N: np.ndarray,
    D: np.ndarray,
    loss: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    fit: ChinchillaFit | None = None,
    n_starts: int = 8,
    flops: Sequence[float] = (),
    level: float = 0.95,
    delta: float = HUBER_DELTA,
    chunk: int = 250,
    progress: Progress | None = None,
) -> BootstrapResult:
    """Percentile intervals for E, A, B, alpha, beta, a, b, G and allocations at budgets `flops`.

    Each of `n_boot` resamples (points drawn with replacement, seeded) is refitted from its own
    `n_starts` best candidates of a screen of the full grid and the full fit's 8 best starts
    (see the module docstring;
    `fit_chinchilla` is run first if `fit` is None). `samples["objective"]` holds each refit's
    summed Huber loss.
    """
    n, d, y = check_chinchilla_data(N, D, loss)
    if fit is None:
        fit = fit_chinchilla(n, d, y, delta=delta)
    candidates = fit.candidates if len(fit.candidates) else np.vstack([fit.best_starts, fit.theta[None]])
    weights = resample_weights(len(y), n_boot, seed)
    log_x = np.stack([np.log(n), np.log(d)])
    theta, f = refit_resamples(log_x, np.log(y), weights, candidates, n_starts=n_starts,
                               always=fit.best_starts[:8], delta=delta, chunk=chunk, progress=progress)
    point = {k: float(v[0]) for k, v in chinchilla_quantities(fit.theta, flops).items()}
    samples = chinchilla_quantities(theta, flops)
    result = _summarise(point, samples, level, n_boot, seed)
    result.samples["objective"] = f
    return result


def bootstrap_power_law(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    fit: PowerLawFit | None = None,
    n_starts: int = 8,
    level: float = 0.95,
    delta: float = HUBER_DELTA,
    chunk: int = 500,
    progress: Progress | None = None,
) -> BootstrapResult:
    """Percentile intervals for E, A and alpha of L(x) = E + A x^(-alpha) by resample-and-refit."""
    xa, ya = check_power_data(x, y)
    if fit is None:
        fit = fit_power_law(xa, ya, delta=delta)
    x_ref = fit.x_ref
    theta_fit = np.array([np.log(fit.A) - fit.alpha * np.log(x_ref), np.log(fit.E), fit.alpha])
    candidates = fit.candidates if len(fit.candidates) else np.vstack([fit.best_starts, theta_fit[None]])
    weights = resample_weights(len(ya), n_boot, seed)
    theta, _ = refit_resamples(np.log(xa / x_ref)[None], np.log(ya), weights, candidates, n_starts=n_starts,
                               always=fit.best_starts[:8], delta=delta, chunk=chunk, progress=progress)
    samples = {"E": np.exp(theta[:, 1]), "A": np.exp(theta[:, 0] + theta[:, 2] * np.log(x_ref)),
               "alpha": theta[:, 2]}
    point = {"E": fit.E, "A": fit.A, "alpha": fit.alpha}
    return _summarise(point, samples, level, n_boot, seed)
