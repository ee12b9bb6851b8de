"""Inverting a fitted power law, and a parametric bootstrap of it: pure NumPy/SciPy.

- `invert_power_law`: the x at which L(x) = E + A x^-alpha reaches a given loss.
- `parametric_bootstrap_power_law`: intervals for E, A, alpha by redrawing every loss as the
  fitted value plus Gaussian noise of a known sigma and refitting (Efron & Tibshirani 1993,
  Ch. 6.5). Use it when there are too few points for a case bootstrap (`bootstrap_power_law`):
  with 3 or 4 sizes most case resamples repeat one size and cannot identify three parameters.
- `effective_size`: "performs like a model k times smaller" (Hernandez et al. 2022, Section 3):
  the size N_eff of an unaltered model with the same loss, read off the inverted law, with an
  interval from the bootstrap refits and the noise of the loss itself.
"""

from __future__ import annotations

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.bootstrap import BootstrapResult, percentile_ci
from scalelab.laws.power import PowerLawFit, check_power_data, fit_power_law


def invert_power_law(loss: np.ndarray | float, E, A, alpha) -> np.ndarray:
    """x with E + A x^-alpha = loss: x = (A / (loss - E))^(1/alpha); inf where loss <= E, NaN where alpha <= 0.

    Every argument broadcasts, so bootstrap arrays of (E, A, alpha) invert in one call.
    """
    loss, E, A, alpha = (np.asarray(v, dtype=float) for v in (loss, E, A, alpha))
    with np.errstate(all="ignore"):
        n = (A / (loss - E)) ** (1.0 / alpha)
        n = np.where(loss > E, n, np.inf)
        return np.where(alpha > 0, n, np.nan)


def parametric_bootstrap_power_law(
    x: np.ndarray,
    y: np.ndarray,
    sigma: float,
    *,
    n_boot: int = 200,
    seed: int = 0,
    fit: PowerLawFit | None = None,
    n_starts: int = 8,
    level: float = 0.95,
) -> BootstrapResult:
    """Percentile intervals of E, A, alpha: y_b = fit(x) + N(0, sigma^2), refitted n_boot times.

    Each refit starts from the `n_starts` grid starts that ended lowest on the data (a screen of
    the full grid would cost 15x more for these 3-parameter fits, which rarely have a second basin).
    """
    xa, ya = check_power_data(x, y)
    if not np.isfinite(sigma) or sigma <= 0:
        raise UserError("a parametric bootstrap needs a positive noise estimate sigma; measure it from replicate "
                        "seeds or the evaluation jitter")  # fmt: skip
    if fit is None:
        fit = fit_power_law(xa, ya)
    rng = np.random.default_rng(seed)
    y_hat = fit.predict(xa)
    starts = fit.best_starts[:n_starts] if len(fit.best_starts) else None
    rows = []
    for _ in range(n_boot):
        y_b = np.maximum(y_hat + sigma * rng.standard_normal(xa.size), 1e-6)
        f = fit_power_law(xa, y_b, grid=starts)
        rows.append((f.E, f.A, f.alpha))
    arr = np.array(rows, dtype=float).reshape(-1, 3)
    samples = {"E": arr[:, 0], "A": arr[:, 1], "alpha": arr[:, 2]}
    ci = {k: percentile_ci(v, level) for k, v in samples.items()}
    point = {"E": fit.E, "A": fit.A, "alpha": fit.alpha}
    return BootstrapResult(point=point, samples=samples, ci=ci, level=level, n_boot=n_boot, seed=seed)


def effective_size(
    N: float,
    loss: float,
    loss_se: float,
    point: dict[str, float],
    samples: dict[str, np.ndarray],
    n_range: tuple[float, float],
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """N_eff with L(N_eff) = loss, k = N / N_eff, and their percentile intervals (Hernandez et al. 2022, Sec. 3).

    point: the law's E, A, alpha; samples: bootstrap arrays of the same; n_range: the sizes the
    law was fitted on (N_eff outside it is flagged `extrapolated`). Each refit is inverted at a
    redraw of the loss, loss + N(0, loss_se^2), so the interval counts both uncertainties.
    k > 1: performs like a model k times smaller; k < 1: better than the law's model of its size.
    """
    n_eff = float(invert_power_law(loss, point["E"], point["A"], point["alpha"]))
    draws = loss + loss_se * np.random.default_rng(seed).standard_normal(np.asarray(samples["E"]).size)
    n_eff_b = invert_power_law(draws, samples["E"], samples["A"], samples["alpha"])
    with np.errstate(divide="ignore"):
        k_b = N / n_eff_b
    k = N / n_eff if n_eff > 0 else float("nan")
    return {"N_eff": n_eff, "N_eff_ci": list(percentile_ci(n_eff_b, level)), "k": float(k),
            "k_ci": list(percentile_ci(k_b, level)),
            "extrapolated": bool(not (n_range[0] <= n_eff <= n_range[1]))}  # fmt: skip
