"""Prediction intervals at any new points: fit a law on TRAIN runs, predict TEST runs, score them.

`scalelab fit chinchilla TRAIN.csv --predict TEST.csv` and `fit power ... --predict` use these. A
95% *prediction* interval must hold a new observed loss, not only the law's mean: it carries the
uncertainty of the fitted parameters and the scatter of single runs around the law.

Method (default "residual"): the bootstrap prediction interval of Davison & Hinkley 1997
(Bootstrap Methods and their Application, Section 6.3.3, Algorithm 6.4), in log loss, where the
law's noise is multiplicative:
1. fit the law; residuals r_i = log y_i - log f(x_i), centred and inflated by sqrt(n / (n - p))
   because fitted residuals are smaller than the errors they estimate (p parameters);
2. each of K resamples draws new training losses f(x_i) exp(r*_i), r* drawn from those residuals,
   and is refitted from its own multi-start (`bootstrap.refit_resamples`): the parameter spread;
3. each refit predicts the new points, times exp(e*), e* = s t with s = sqrt(sum r^2 / (n - p)) and
   t a Student t variable of n - p degrees of freedom: the scatter of one run, with the uncertainty
   of s itself (the classical regression prediction interval's t quantile). The interval is the
   percentile interval of these draws.
The design (the x's) stays fixed, so an extrapolation's spread is that of refits of data like the
training data, which is what a forecast from that data can know. Drawing e* from the n residuals
themselves (Davison & Hinkley's literal recipe) covered only 85-88% on 6-run designs, because n
values cannot make the tails; the t draw brought it to 90-95% (benchmarks/RESULTS_efficiency.md).
Method "pairs" is the forecast of the scaling study (`forecast.py`): resampled points, Gaussian
noise of the residual sigma; it is kept for comparison (coverage of both at 10x and 100x there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.bootstrap import percentile_ci, refit_resamples, resample_weights
from scalelab.laws.chinchilla import ChinchillaFit, check_chinchilla_data, fit_chinchilla
from scalelab.laws.forecast import NOISE_DRAWS, residual_noise_sd
from scalelab.laws.objective import HUBER_DELTA, log_sum_exp_prediction
from scalelab.laws.power import PowerLawFit, check_power_data, fit_power_law

Method = Literal["residual", "pairs"]


@dataclass
class PointPredictions:
    """Predictions of a fitted law at new points with prediction intervals.

    Attributes:
        predicted: (m,) the full fit's prediction. interval: (m, 2) the prediction interval at `level`.
        noise_sd: sigma of one observation in log loss (inflated residuals). method, n_boot, seed.
    """

    predicted: np.ndarray
    interval: np.ndarray
    noise_sd: float
    method: str
    n_boot: int
    seed: int
    level: float

    def score(self, actual: np.ndarray | None) -> dict[str, object]:
        """Per point: predicted, ci (and actual, rel_error, covered); summary: median |rel error|, coverage."""
        rows: list[dict[str, object]] = [{"predicted": float(p), "ci": [float(lo), float(hi)]}
                                         for p, (lo, hi) in zip(self.predicted, self.interval)]
        summary: dict[str, object] = {"n": len(rows), "level": self.level, "method": self.method,
                                      "n_boot": self.n_boot, "noise_sd_log_loss": self.noise_sd}
        if actual is not None:
            a = np.asarray(actual, dtype=float)
            rel = (self.predicted - a) / a
            covered = (self.interval[:, 0] <= a) & (a <= self.interval[:, 1])
            for row, ai, ri, ci in zip(rows, a, rel, covered):
                row.update(actual=float(ai), rel_error=float(ri), covered=bool(ci))
            summary.update(median_abs_rel_error=float(np.median(np.abs(rel))),
                           coverage=float(np.mean(covered)))
        return {"predictions": rows, "summary": summary}


def _residuals(log_y: np.ndarray, log_fit: np.ndarray, n_params: int) -> np.ndarray:
    r = log_y - log_fit
    r = r - r.mean()
    dof = r.size - n_params
    return r * np.sqrt(r.size / dof) if dof > 0 else r


def _refit_residual(log_x: np.ndarray, log_fit: np.ndarray, resid: np.ndarray, candidates: np.ndarray,
                    always: np.ndarray, n_boot: int, rng: np.random.Generator, delta: float,
                    chunk: int = 20) -> np.ndarray:
    """(n_boot, P) refits of f(x) exp(r*), r* drawn from `resid`; `chunk` problems stacked per batch.

    The objective has one log y per point, so a chunk's resamples are stacked as blocks of one
    long dataset, each problem weighting only its own block.
    """
    n = log_fit.size
    thetas = []
    for lo in range(0, n_boot, chunk):
        k = min(chunk, n_boot - lo)
        log_y = (log_fit[None] + rng.choice(resid, size=(k, n))).ravel()  # (k * n,)
        weights = np.kron(np.eye(k), np.ones((1, n)))  # (k, k * n): problem j sees block j
        theta, _ = refit_resamples(np.tile(log_x, (1, k)), log_y, weights, candidates, always=always,
                                   delta=delta, chunk=k)
        thetas.append(theta)
    return np.concatenate(thetas)


def _intervals(boot_pred: np.ndarray, noise: Method, noise_sd: float, dof: int, level: float,
               rng: np.random.Generator) -> np.ndarray:
    """Percentile intervals of each refit's prediction times exp(one run's noise), per new point."""
    copies = max(1, -(-NOISE_DRAWS // max(1, len(boot_pred))))
    many = np.repeat(boot_pred, copies, axis=0)  # (n_boot * copies, m)
    if noise == "residual" and dof > 0:  # sigma itself is estimated from n - p residuals: Student t
        e = noise_sd * rng.standard_t(dof, size=many.shape)
    else:
        e = noise_sd * rng.standard_normal(many.shape)
    observed = many * np.exp(e)
    return np.array([percentile_ci(col, level) for col in observed.T]).reshape(-1, 2)


def _predict(log_x: np.ndarray, log_y: np.ndarray, log_x_new: np.ndarray, theta: np.ndarray,
             candidates: np.ndarray, always: np.ndarray, n_params: int, n_boot: int, seed: int, level: float,
             method: Method, delta: float) -> PointPredictions:
    if method not in ("residual", "pairs"):
        raise UserError(f"method {method!r} is not known; use 'residual' or 'pairs'")
    if n_boot < 1:
        raise UserError("prediction intervals need bootstrap refits: pass --bootstrap K with K >= 1 (e.g. 200)")
    rng = np.random.default_rng(seed)
    log_fit = log_sum_exp_prediction(theta[None], log_x)[0]
    resid = _residuals(log_y, log_fit, n_params)
    if method == "residual":
        boot = _refit_residual(log_x, log_fit, resid, candidates, always, n_boot, rng, delta)
        sd = float(np.sqrt(np.mean(resid**2)))  # = sqrt(sum r^2 / (n - p)) of the centred residuals
    else:
        weights = resample_weights(log_y.size, n_boot, seed)
        boot, _ = refit_resamples(log_x, log_y, weights, candidates, always=always, delta=delta)
        sd = residual_noise_sd(log_y - log_fit, n_params)
    boot_pred = np.exp(log_sum_exp_prediction(boot, log_x_new))  # (n_boot, m)
    predicted = np.exp(log_sum_exp_prediction(theta[None], log_x_new)[0])
    interval = _intervals(boot_pred, method, sd, log_y.size - n_params, level, rng)
    return PointPredictions(predicted=predicted, interval=interval, noise_sd=sd, method=method, n_boot=n_boot,
                            seed=seed, level=level)


def predict_chinchilla(N: np.ndarray, D: np.ndarray, loss: np.ndarray, N_new: np.ndarray, D_new: np.ndarray, *,
                       n_boot: int = 200, seed: int = 0, level: float = 0.95, method: Method = "residual",
                       delta: float = HUBER_DELTA, fit: ChinchillaFit | None = None) -> PointPredictions:
    """Fit L(N, D) (Approach 3) on the training runs and predict (N_new, D_new) with prediction intervals.

    `fit`: the training runs' fit if already made (it must be of these runs).
    """
    n, d, y = check_chinchilla_data(N, D, loss)
    n_new = np.asarray(N_new, dtype=float)
    d_new = np.asarray(D_new, dtype=float)
    if not (np.all(n_new > 0) and np.all(d_new > 0)):
        raise UserError("every N and D to predict must be a positive number")
    fit = fit or fit_chinchilla(n, d, y, delta=delta)
    log_x = np.stack([np.log(n), np.log(d)])
    return _predict(log_x, np.log(y), np.stack([np.log(n_new), np.log(d_new)]), fit.theta, fit.candidates,
                    fit.best_starts[:8], 5, n_boot, seed, level, method, delta)


def predict_power_law(x: np.ndarray, y: np.ndarray, x_new: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                      level: float = 0.95, method: Method = "residual",
                      delta: float = HUBER_DELTA, fit: PowerLawFit | None = None) -> PointPredictions:
    """Fit L(x) = E + A x^(-alpha) on the training runs and predict x_new with prediction intervals."""
    xa, ya = check_power_data(x, y)
    xn = np.asarray(x_new, dtype=float)
    if not np.all(xn > 0):
        raise UserError("every x to predict must be a positive number")
    fit = fit or fit_power_law(xa, ya, delta=delta)
    ref = fit.x_ref
    theta = np.array([np.log(fit.A) - fit.alpha * np.log(ref), np.log(fit.E), fit.alpha])
    return _predict(np.log(xa / ref)[None], np.log(ya), np.log(xn / ref)[None], theta, fit.candidates,
                    fit.best_starts[:8], 3, n_boot, seed, level, method, delta)
