"""Forecasting: fit a law on the smaller runs, predict the largest, and score the prediction.

The test of a scaling law is extrapolation (Hoffmann et al. 2022, Section 4; Ganguli et al. 2022,
Section 2: loss on the training distribution is predictable from smaller models). We hold out
the largest runs (by N or by C = 6 N D for the Chinchilla law, by x for a power law), fit on the
rest, and report the relative error of each held-out prediction, (predicted - actual) / actual,
and its mean absolute value.

The intervals are prediction intervals, not only parameter intervals: the held-out loss is itself
a noisy observation (seed, data order, evaluation windows), so each bootstrap refit's prediction
(`bootstrap.py`) is multiplied by exp(sigma z), z standard normal, where sigma is the noise of one
observation in log loss: given (e.g. the spread of replicate seeds) or estimated from the training
fit's residuals, sqrt(sum r^2 / (n - p)). With one seed per size the residuals measure the curve's
jitter around the law plus misfit, not the seed-to-seed noise floor; callers should say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.allocation import FLOPS_PER_PARAM_TOKEN
from scalelab.laws.bootstrap import percentile_ci, refit_resamples, resample_weights
from scalelab.laws.chinchilla import check_chinchilla_data, fit_chinchilla
from scalelab.laws.objective import HUBER_DELTA, log_sum_exp_prediction
from scalelab.laws.power import check_power_data, fit_power_law


@dataclass
class Forecast:
    """Held-out predictions of a law fitted on the smaller runs.

    Attributes:
        law: "chinchilla" or "power". by: what "largest" meant ("N", "C" or "x").
        threshold: runs with by-value >= threshold were held out.
        n_train, n_test: run counts.
        test_index: positions of the held-out runs in the input arrays.
        actual, predicted: held-out losses and their predictions from the full training fit.
        rel_error: (predicted - actual) / actual per held-out run.
        rel_error_ci: (n_test, 2) interval of the relative error a forecast from this design makes,
            from bootstrap refits plus the observation noise (it holds 0 iff the actual loss lies in
            the prediction interval).
        prediction_interval: (n_test, 2) interval for the held-out loss at `level`.
        covered: per held-out run, whether the actual loss lies in the prediction interval.
        param_rel_error_ci: (n_test, 2) the same interval from the refits alone (no observation noise).
        noise_sd: sigma of one observation in log loss; noise_source: "given" or "residuals".
        mean_abs_rel_error: mean of |rel_error|; mean_abs_rel_error_ci: its percentile interval.
        params: the training fit's parameters.
    """

    law: str
    by: str
    threshold: float
    n_train: int
    n_test: int
    test_index: np.ndarray
    actual: np.ndarray
    predicted: np.ndarray
    rel_error: np.ndarray
    rel_error_ci: np.ndarray
    mean_abs_rel_error: float
    mean_abs_rel_error_ci: tuple[float, float]
    params: dict[str, float]
    prediction_interval: np.ndarray
    covered: np.ndarray
    param_rel_error_ci: np.ndarray
    noise_sd: float
    noise_source: str
    level: float = 0.95

    def to_dict(self) -> dict[str, object]:
        """Plain numbers and lists, for JSON."""
        out = {k: v for k, v in vars(self).items()}
        for k in ("test_index", "actual", "predicted", "rel_error", "rel_error_ci", "prediction_interval",
                  "covered", "param_rel_error_ci"):
            out[k] = np.asarray(out[k]).tolist()
        out["mean_abs_rel_error_ci"] = list(self.mean_abs_rel_error_ci)
        return out


def holdout_mask(key: np.ndarray, holdout: float | int) -> tuple[np.ndarray, float]:
    """Mask of the largest runs by `key`: a fraction (0 < holdout < 1) or a count (holdout >= 1).

    Runs tied with the smallest held-out value are held out too, so a model size or budget is
    never split between training and test.
    """
    n = len(key)
    count = int(round(holdout * n)) if 0 < holdout < 1 else int(holdout)
    if not 1 <= count < n:
        raise UserError(f"holdout={holdout} selects {count} of {n} runs; choose a fraction in (0, 1) "
                        "or a count between 1 and the number of runs minus one")
    threshold = float(np.sort(key)[::-1][count - 1])
    return key >= threshold, threshold


NOISE_DRAWS = 20_000
"""Draws of (refit, observation noise) pairs behind each prediction interval."""


def residual_noise_sd(log_residuals: np.ndarray, n_params: int) -> float:
    """sigma of one observation in log loss from a fit's residuals: sqrt(sum r^2 / (n - p)); 0 if n <= p."""
    r = np.asarray(log_residuals, dtype=float)
    dof = r.size - n_params
    return float(np.sqrt(np.sum(r * r) / dof)) if dof > 0 else 0.0


def _intervals(draws: np.ndarray, level: float) -> np.ndarray:
    return np.array([percentile_ci(col, level) for col in draws.T]).reshape(-1, 2)


def _score(law: str, by: str, threshold: float, test: np.ndarray, actual: np.ndarray,
           predicted: np.ndarray, boot_pred: np.ndarray, level: float, params: dict[str, float],
           noise_sd: float, noise_source: str, seed: int) -> Forecast:
    rel = (predicted - actual) / actual
    # each refit's prediction observed many times, so the interval's tails are not 1-in-n_boot draws
    copies = max(1, -(-NOISE_DRAWS // max(1, len(boot_pred))))
    boot_many = np.repeat(boot_pred, copies, axis=0)
    z = np.random.default_rng(seed + 1).standard_normal(boot_many.shape)
    observed = boot_many * np.exp(noise_sd * z)  # (n_boot * copies, n_test)
    pi = _intervals(observed, level)
    boot_rel = (observed - actual) / actual
    mare_boot = np.mean(np.abs((boot_pred - actual) / actual), axis=1)
    return Forecast(law=law, by=by, threshold=threshold, n_train=int((~test).sum()),
                    n_test=int(test.sum()), test_index=np.flatnonzero(test), actual=actual,
                    predicted=predicted, rel_error=rel, rel_error_ci=_intervals(boot_rel, level),
                    mean_abs_rel_error=float(np.mean(np.abs(rel))),
                    mean_abs_rel_error_ci=percentile_ci(mare_boot, level), params=params,
                    prediction_interval=pi, covered=(pi[:, 0] <= actual) & (actual <= pi[:, 1]),
                    param_rel_error_ci=_intervals((boot_pred - actual) / actual, level),
                    noise_sd=float(noise_sd), noise_source=noise_source, level=level)


def forecast_chinchilla(
    N: np.ndarray, D: np.ndarray, loss: np.ndarray, *, by: Literal["N", "C"] = "N",
    holdout: float | int = 0.2, n_boot: int = 200, seed: int = 0, level: float = 0.95,
    delta: float = HUBER_DELTA, noise_sd: float | None = None,
) -> Forecast:
    """Fit Approach 3 on all but the largest runs (by N, or by C = 6ND) and predict those.

    Args:
        holdout: fraction (0 < holdout < 1) or count (>= 1) of the largest runs to hold out.
        n_boot: bootstrap refits of the training runs for the error intervals.
        noise_sd: sigma of one observation in log loss (e.g. from replicate seeds); default: from
            the training fit's residuals (see the module docstring).
    """
    n, d, y = check_chinchilla_data(N, D, loss)
    if by not in ("N", "C"):
        raise UserError(f"by={by!r} is not known; hold out the largest runs by 'N' or by 'C'")
    key = n if by == "N" else FLOPS_PER_PARAM_TOKEN * n * d
    test, threshold = holdout_mask(key, holdout)
    fit = fit_chinchilla(n[~test], d[~test], y[~test], delta=delta)
    log_x_train = np.stack([np.log(n[~test]), np.log(d[~test])])
    log_x_test = np.stack([np.log(n[test]), np.log(d[test])])
    weights = resample_weights(int((~test).sum()), n_boot, seed)
    theta, _ = refit_resamples(log_x_train, np.log(y[~test]), weights, fit.candidates,
                               always=fit.best_starts[:8], delta=delta)
    boot_pred = np.exp(log_sum_exp_prediction(theta, log_x_test))
    params = {k: float(v) for k, v in fit.to_dict().items()}
    source = "given" if noise_sd is not None else "residuals"
    if noise_sd is None:
        noise_sd = residual_noise_sd(np.log(fit.predict(n[~test], d[~test]) / y[~test]), 5)
    return _score("chinchilla", by, threshold, test, y[test], fit.predict(n[test], d[test]),
                  boot_pred, level, params, noise_sd, source, seed)


def forecast_power_law(
    x: np.ndarray, y: np.ndarray, *, holdout: float | int = 0.2, n_boot: int = 200, seed: int = 0,
    level: float = 0.95, delta: float = HUBER_DELTA, noise_sd: float | None = None,
    holdout_by: np.ndarray | None = None,
) -> Forecast:
    """Fit L(x) = E + A x^(-alpha) on all but the largest x and predict the held-out runs.

    `noise_sd` as in `forecast_chinchilla`. `holdout_by` (one value per run, e.g. training FLOPs)
    chooses the largest runs by another key than x; `holdout` counts them as before.
    """
    xa, ya = check_power_data(x, y)
    key = xa if holdout_by is None else np.asarray(holdout_by, dtype=float)
    test, threshold = holdout_mask(key, holdout)
    fit = fit_power_law(xa[~test], ya[~test], delta=delta)
    x_ref = fit.x_ref
    weights = resample_weights(int((~test).sum()), n_boot, seed)
    theta, _ = refit_resamples(np.log(xa[~test] / x_ref)[None], np.log(ya[~test]), weights, fit.candidates,
                               always=fit.best_starts[:8], delta=delta)
    boot_pred = np.exp(log_sum_exp_prediction(theta, np.log(xa[test] / x_ref)[None]))
    params = {k: float(v) for k, v in fit.to_dict().items()}
    source = "given" if noise_sd is not None else "residuals"
    if noise_sd is None:
        noise_sd = residual_noise_sd(np.log(fit.predict(xa[~test]) / ya[~test]), 3)
    return _score("power", "x" if holdout_by is None else "key", threshold, test, ya[test],
                  fit.predict(xa[test]), boot_pred, level, params, noise_sd, source, seed)
