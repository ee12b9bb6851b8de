"""The numbers of the repeated-data study (Hernandez et al. 2022, arXiv 2205.10487): pure NumPy/SciPy.

Each function takes plain arrays (read from the run store by `studies/repetition.py`) and returns
plain dicts, so that every rule below can be tested on synthetic curves.

- `curve_noise`: the evaluation noise of a loss curve, from its step-to-step jitter.
- `detect_rise`: double descent *during* training: a sustained rise of test loss after an earlier
  minimum (Hernandez et al. 2022, Figure 2, right), above a noise threshold.
- `peak_degradation`: double descent *across* repeat counts: the R at which final test loss is
  worst for a model size (Figure 2, left), and how stable that choice is under the noise.
- `fit_baseline_law` + `effective_size`: L(N) = E + A N^-alpha fitted on the unrepeated runs and
  inverted at a degraded loss: "performs like a model k times smaller" (Section 3, the 800M model
  with 10% repeated tokens performing like a 400M one), with a bootstrap interval.
- `data_constrained`: the effective data D' of Muennighoff et al. 2023 for the same runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError

Z95 = 1.959964  # two-sided 95% normal quantile


def curve_noise(curves: list[np.ndarray], skip_fraction: float = 0.25) -> float:
    """Robust standard deviation of the evaluation noise of loss curves (evenly spaced evaluations).

    On a smooth curve plus white noise of standard deviation sigma, the second difference
    e[i+1] - 2 e[i] + e[i-1] of the noise has standard deviation sigma sqrt(6), while the smooth
    part contributes only its curvature. So sigma = 1.4826 MAD(second differences) / sqrt(6),
    pooled over all curves; the median absolute deviation ignores the curvature of early training
    (the first `skip_fraction` of each curve is dropped as well) and isolated loss spikes.
    Returns NaN when no curve has three points left.
    """
    d2 = []
    for c in curves:
        c = np.asarray(c, dtype=float)
        c = c[int(len(c) * skip_fraction) :]
        if c.size >= 3:
            d2.append(np.diff(c, 2))
    if not d2:
        return float("nan")
    d = np.concatenate(d2)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(6.0))


def replicate_noise(groups: list[np.ndarray]) -> tuple[float, int]:
    """Pooled within-group standard deviation of replicate final losses (e.g. seeds), and its dof."""
    ss, dof = 0.0, 0
    for g in groups:
        g = np.asarray(g, dtype=float)
        if g.size >= 2:
            ss += float(np.sum((g - g.mean()) ** 2))
            dof += g.size - 1
    return (float(np.sqrt(ss / dof)) if dof else float("nan")), dof


def detect_rise(steps: np.ndarray, loss: np.ndarray, threshold: float, min_evals: int = 2) -> dict:
    """Classify a test-loss curve: 'double descent', 'rise', 'spike' or 'none' (Hernandez et al. 2022, Fig. 2).

    Rule: the excess of each evaluation over the lowest loss *before* it is compared with
    `threshold` (set by the caller above the noise, e.g. 3 sigma sqrt(2): the difference of two
    noisy evaluations). A rise is `min_evals` or more consecutive evaluations above the threshold,
    so that a single-evaluation loss spike (an optimiser instability) does not count; it is a
    double descent if the loss afterwards falls again by more than the threshold below the peak.

    Returns shape, the steps of the minimum before the rise and of its peak, rise (peak minus that
    minimum), fall (peak minus the lowest loss after it), max_excess over the whole curve and the
    number of isolated spikes.
    """
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=float)
    out = {"shape": "none", "min_step": None, "peak_step": None, "rise": 0.0, "fall": 0.0, "max_excess": 0.0,
           "spikes": 0, "threshold": float(threshold)}  # fmt: skip
    if loss.size < 3:
        return out
    prior_min = np.minimum.accumulate(loss)[:-1]
    excess = loss[1:] - prior_min  # excess[i - 1] belongs to evaluation i
    out["max_excess"] = float(max(excess.max(), 0.0))
    above = np.concatenate([[False], excess > threshold, [False]])
    edges = np.diff(above.astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # evaluation i in [start, end)
    runs = [(s, e) for s, e in zip(starts, ends) if e - s >= min_evals]
    out["spikes"] = int(sum(e - s < min_evals for s, e in zip(starts, ends)))
    if not runs:
        out["shape"] = "spike" if out["spikes"] else "none"
        return out
    s, e = runs[0]
    i_min = int(np.argmin(loss[:s]))
    i_peak = s + int(np.argmax(loss[s:e]))
    after = loss[i_peak + 1 :]
    fall = float(loss[i_peak] - after.min()) if after.size else 0.0
    out.update(shape="double descent" if fall > threshold else "rise", min_step=int(steps[i_min]),
               peak_step=int(steps[i_peak]), rise=float(loss[i_peak] - loss[i_min]), fall=fall)  # fmt: skip
    return out


def peak_degradation(repeats: np.ndarray, degradation: np.ndarray, se: np.ndarray | float, z: float = 3.0,
                     n_draws: int = 2000, seed: int = 0) -> dict:  # fmt: skip
    """The repeat count R of peak degradation for one model size, with its stability under noise.

    degradation[i] = final test loss at repeats[i] minus the baseline's; se its standard error.
    The peak is the R of largest degradation; `peak_share` is how often it stays the argmax when
    every degradation is redrawn from N(value, se^2), and `R_range` the R values that hold 95% of
    those argmax draws. `band`: the R values whose degradation exceeds z se (the poor-performance
    band of Hernandez et al. 2022, Section 3); `interior`: whether the peak lies inside the R grid
    with lower degradation on both sides (the double-descent shape across R).
    """
    r = np.asarray(repeats, dtype=float)
    order = np.argsort(r)
    r, d = r[order], np.asarray(degradation, dtype=float)[order]
    se_arr = np.asarray(se, dtype=float)
    se_arr = np.full(d.shape, float(se_arr)) if se_arr.ndim == 0 else se_arr[order]
    i = int(np.argmax(d))
    draws = d + se_arr * np.random.default_rng(seed).standard_normal((n_draws, d.size))
    counts = np.bincount(np.argmax(draws, axis=1), minlength=d.size) / n_draws
    keep, total = [], 0.0
    for j in np.argsort(-counts, kind="stable"):
        keep.append(j)
        total += counts[j]
        if total >= 0.95:
            break
    return {
        "R_peak": float(r[i]), "degradation": float(d[i]),
        "degradation_ci": [float(d[i] - Z95 * se_arr[i]), float(d[i] + Z95 * se_arr[i])],
        "peak_share": float(counts[i]), "R_range": sorted(float(r[j]) for j in keep),
        "band": [float(x) for x, dd, s in zip(r, d, se_arr) if dd > z * s],
        "interior": bool(0 < i < d.size - 1),
    }  # fmt: skip


@dataclass
class BaselineLaw:
    """L(N) = E + A N^-alpha on the unrepeated runs, and its bootstrap refits (arrays E, A, alpha)."""

    E: float
    A: float
    alpha: float
    samples: dict[str, np.ndarray]
    method: str
    n_points: int
    n_min: float
    n_max: float

    def to_dict(self) -> dict:
        from scalelab.laws import percentile_interval

        ci = {k: list(percentile_interval(v)) for k, v in self.samples.items()}
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "ci": ci, "bootstrap": self.method,
                "n_boot": int(len(self.samples["E"])), "n_points": self.n_points}  # fmt: skip


def fit_baseline_law(N: np.ndarray, loss: np.ndarray, sigma: float, n_boot: int = 200, seed: int = 0,
                     method: str = "auto") -> BaselineLaw:  # fmt: skip
    """Fit L(N) (Kaplan et al. 2020, Eq. 1.1, with Hoffmann et al.'s E) on baseline runs, with bootstrap refits.

    method 'cases' resamples runs (`laws.bootstrap_power_law`); 'parametric' redraws every loss as
    the fitted value plus N(0, sigma^2) noise and refits; 'auto' takes cases when there are at least
    five distinct sizes (fewer make most case resamples degenerate) and parametric otherwise.
    """
    from scalelab import laws

    N, loss = np.asarray(N, dtype=float), np.asarray(loss, dtype=float)
    if len(np.unique(N)) < 3 or N.size < 4:
        raise UserError(
            f"the baseline law L(N) = E + A N^-alpha needs at least 3 model sizes and 4 unrepeated runs; "
            f"this sweep has {len(np.unique(N))} size(s) and {N.size} run(s): add sizes or baseline seeds"
        )
    fit = laws.fit_power_law(N, loss)
    if method == "auto":
        method = "cases" if len(np.unique(N)) >= 5 else "parametric"
    if method == "cases":
        boot = laws.bootstrap_power_law(N, loss, n_boot=n_boot, seed=seed, fit=fit)
        samples = {k: np.asarray(v, dtype=float) for k, v in boot.samples.items()}
    elif method == "parametric":
        if not np.isfinite(sigma) or sigma <= 0:
            raise UserError("a parametric bootstrap needs a positive noise estimate; add baseline seeds or evaluations")
        rng = np.random.default_rng(seed)
        y_hat = fit.predict(N)
        rows = []
        for _ in range(n_boot):
            f = laws.fit_power_law(N, np.maximum(y_hat + sigma * rng.standard_normal(N.size), 1e-6),
                                   grid=fit.best_starts[:8])  # fmt: skip
            rows.append((f.E, f.A, f.alpha))
        arr = np.array(rows, dtype=float).reshape(-1, 3)
        samples = {"E": arr[:, 0], "A": arr[:, 1], "alpha": arr[:, 2]}
    else:
        raise UserError(f"unknown bootstrap method {method!r}; use 'auto', 'cases' or 'parametric'")
    return BaselineLaw(fit.E, fit.A, fit.alpha, samples, method, int(N.size), float(N.min()), float(N.max()))


def invert_power_law(loss: np.ndarray | float, E, A, alpha) -> np.ndarray:
    """N with E + A N^-alpha = loss: N = (A / (loss - E))^(1/alpha); inf where loss <= E, NaN if alpha <= 0."""
    loss, E, A, alpha = (np.asarray(v, dtype=float) for v in (loss, E, A, alpha))
    with np.errstate(all="ignore"):
        n = (A / (loss - E)) ** (1.0 / alpha)
        n = np.where(loss > E, n, np.inf)
        return np.where(alpha > 0, n, np.nan)


def effective_size(N: float, loss: float, loss_se: float, law: BaselineLaw, seed: int = 0) -> dict:
    """The unrepeated model size with the same test loss, N_eff, and k = N / N_eff (Hernandez et al. 2022, Sec. 3).

    Interval: each bootstrap refit of the law is inverted at a redraw of the degraded loss,
    loss + N(0, loss_se^2); k is read off each pair and the 2.5th / 97.5th percentiles taken.
    k > 1: performs like a model k times smaller; k < 1: better than the baseline of its size.
    """
    from scalelab.laws import percentile_interval

    n_eff = float(invert_power_law(loss, law.E, law.A, law.alpha))
    s = law.samples
    draws = loss + loss_se * np.random.default_rng(seed).standard_normal(s["E"].size)
    n_eff_b = invert_power_law(draws, s["E"], s["A"], s["alpha"])
    with np.errstate(divide="ignore"):
        k_b = N / n_eff_b
    k = N / n_eff if n_eff > 0 else float("nan")
    return {"N_eff": n_eff, "N_eff_ci": list(percentile_interval(n_eff_b)), "k": float(k),
            "k_ci": list(percentile_interval(k_b)),
            "extrapolated": bool(not (law.n_min <= n_eff <= law.n_max))}  # fmt: skip


def data_constrained(N: np.ndarray, D: np.ndarray, U: np.ndarray, loss: np.ndarray, n_boot: int = 100,
                     seed: int = 0) -> dict:  # fmt: skip
    """Effective data D' of Muennighoff et al. 2023 (Section 3) for each run, and the law fitted when possible.

    D' / D at their published R_D* = 15.4 is reported for every run. The decay constant R_D* is
    fitted (`laws.fit_data_constrained`, R_N* not fitted) only if the unrepeated runs support a
    Chinchilla base law: at least 6 of them at 2 or more sizes and 2 or more token budgets.
    Their law treats repetition as whole epochs of one data set; in Hernandez et al.'s design only
    a small subset is repeated, which the law does not distinguish from spreading the same
    repeats over all data.
    """
    from scalelab import laws

    N, D, U, loss = (np.asarray(v, dtype=float) for v in (N, D, U, loss))
    ratio = laws.effective_data(D, U) / D
    out: dict = {"R_D_star_published": laws.R_D_STAR, "effective_data_ratio_published": ratio.tolist(),
                 "fitted": False, "reason": None}  # fmt: skip
    single = D <= U
    n_base, n_sizes, n_budgets = int(single.sum()), len(np.unique(N[single])), len(np.unique(D[single]))
    if n_base < 6 or n_sizes < 2 or n_budgets < 2:
        out["reason"] = (f"not fitted: the Chinchilla base law L(N, D) needs at least 6 unrepeated runs at 2 or more "
                         f"sizes and 2 or more token budgets; this sweep has {n_base} at {n_sizes} size(s) and "
                         f"{n_budgets} budget(s)")  # fmt: skip
        return out
    try:
        fit = laws.fit_data_constrained(N, D, U, loss, fit_rn=False, n_boot=n_boot, seed=seed)
    except UserError as e:
        out["reason"] = f"not fitted: {e}"
        return out
    out.update(fitted=True, R_D_star=fit.r_d_star, R_D_star_ci=list(fit.ci.get("R_D_star", (np.nan, np.nan))),
               effective_data_ratio_fitted=(laws.effective_data(D, U, fit.r_d_star) / D).tolist(),
               predicted_loss=fit.predict(N, D, U).tolist(), base=fit.base.to_dict())  # fmt: skip
    return out
