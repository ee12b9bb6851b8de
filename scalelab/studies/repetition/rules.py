"""The rules of the repeated-data study (Hernandez et al. 2022, arXiv 2205.10487): pure NumPy/SciPy.

Each function takes plain arrays (read from the run store by `analyze.py`) and returns
plain dicts, so that every rule below can be tested on synthetic curves.

- `curve_noise`: the evaluation noise of a loss curve, from its step-to-step jitter.
- `detect_rise`: double descent *during* training: a sustained rise of test loss after an earlier
  minimum (Hernandez et al. 2022, Figure 2, right), above a noise threshold.
- `peak_degradation`: double descent *across* repeat counts: the R at which final test loss is
  worst for a model size (Figure 2, left), and how stable that choice is under the noise.
- `fit_baseline_law`: L(N) = E + A N^-alpha fitted on the unrepeated runs; `BaselineLaw.effective_size`
  inverts it at a degraded loss (`laws.inversion`): "performs like a model k times smaller"
  (Section 3, the 800M model with 10% repeated tokens performing like a 400M one), with an interval.
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
    """The repeat count R of peak degradation for one model size, and whether the peak is resolved.

    degradation[i] = final test loss at repeats[i] minus the baseline's; se its standard error.
    The peak is the R of largest degradation. It is *resolved* (double descent across R, Hernandez
    et al. 2022, Figure 2 left) only when it lies inside the R grid and exceeds BOTH neighbours by
    more than z standard errors of the difference, sqrt(se_peak^2 + se_neighbour^2) (conservative:
    a shared baseline cancels in the difference). Choosing the largest of several noisy values
    and comparing it with its neighbours is a multiple comparison: on a flat plateau of five
    points the argmax is inside the grid 60% of the time, so "interior" alone is no evidence;
    `tests/test_study_repetition.py` measures the false-positive rate of this rule on simulated
    plateaus. `peak_share`: how often the peak stays the argmax when every degradation is redrawn
    from N(value, se^2); `R_range`: the R values holding 95% of those argmax draws. `band`: the R
    values whose degradation exceeds z se (the poor-performance band, Section 3).
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
    interior = bool(0 < i < d.size - 1)
    margins = [float(d[i] - d[j]) for j in (i - 1, i + 1) if 0 <= j < d.size]
    margin_se = [float(np.hypot(se_arr[i], se_arr[j])) for j in (i - 1, i + 1) if 0 <= j < d.size]
    resolved = interior and all(m > z * s for m, s in zip(margins, margin_se))
    return {
        "R_peak": float(r[i]), "degradation": float(d[i]),
        "degradation_ci": [float(d[i] - Z95 * se_arr[i]), float(d[i] + Z95 * se_arr[i])],
        "peak_share": float(counts[i]), "R_range": sorted(float(r[j]) for j in keep),
        "band": [float(x) for x, dd, s in zip(r, d, se_arr) if dd > z * s],
        "interior": interior, "margins": margins, "margin_se": margin_se, "resolved": bool(resolved), "z": z,
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
        from scalelab.laws import percentile_ci

        ci = {k: list(percentile_ci(v)) for k, v in self.samples.items()}
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "ci": ci, "bootstrap": self.method,
                "n_boot": int(len(self.samples["E"])), "n_points": self.n_points}  # fmt: skip

    def effective_size(self, N: float, loss: float, loss_se: float, seed: int = 0) -> dict:
        """`laws.effective_size` of a degraded run under this law: N_eff, k = N / N_eff, intervals."""
        from scalelab.laws import effective_size

        point = {"E": self.E, "A": self.A, "alpha": self.alpha}
        return effective_size(N, loss, loss_se, point, self.samples, (self.n_min, self.n_max), seed=seed)


def fit_baseline_law(N: np.ndarray, loss: np.ndarray, sigma: float, n_boot: int = 200, seed: int = 0,
                     method: str = "auto") -> BaselineLaw:  # fmt: skip
    """Fit L(N) (Kaplan et al. 2020, Eq. 1.1, with Hoffmann et al.'s E) on baseline runs, with bootstrap refits.

    method 'cases' resamples runs (`laws.bootstrap_power_law`); 'parametric' redraws every loss
    with the noise sigma and refits (`laws.parametric_bootstrap_power_law`); 'auto' takes cases
    when there are at least five distinct sizes (fewer make most case resamples degenerate) and
    parametric otherwise.
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
    elif method == "parametric":
        boot = laws.parametric_bootstrap_power_law(N, loss, sigma, n_boot=n_boot, seed=seed, fit=fit)
    else:
        raise UserError(f"unknown bootstrap method {method!r}; use 'auto', 'cases' or 'parametric'")
    samples = {k: np.asarray(v, dtype=float) for k, v in boot.samples.items()}
    return BaselineLaw(fit.E, fit.A, fit.alpha, samples, method, int(N.size), float(N.min()), float(N.max()))


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
