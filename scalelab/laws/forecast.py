"""Forecasting: fit a law on the smaller runs, predict the largest, and score the prediction.

The test of a scaling law is extrapolation (Hoffmann et al. 2022, Section 4; Ganguli et al. 2022,
Section 2: loss on the training distribution is predictable from smaller models). We hold out
the largest runs (by N or by C = 6 N D for the Chinchilla law, by x for a power law), fit on the
rest, and report the relative error of each held-out prediction, (predicted - actual) / actual,
and its mean absolute value. Intervals come from refitting bootstrap resamples of the training
runs (`bootstrap.py`) and predicting with every refit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.allocation import FLOPS_PER_PARAM_TOKEN
from scalelab.laws.bootstrap import percentile_ci, refit_weighted, resample_weights
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
        rel_error_ci: (n_test, 2) percentile interval of each relative error over bootstrap refits.
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

    def to_dict(self) -> dict[str, object]:
        """Plain numbers and lists, for JSON."""
        out = {k: v for k, v in vars(self).items()}
        for k in ("test_index", "actual", "predicted", "rel_error", "rel_error_ci"):
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


def _score(law: str, by: str, threshold: float, test: np.ndarray, actual: np.ndarray,
           predicted: np.ndarray, boot_pred: np.ndarray, level: float,
           params: dict[str, float]) -> Forecast:
    rel = (predicted - actual) / actual
    boot_rel = (boot_pred - actual) / actual  # (n_boot, n_test)
    rel_ci = np.array([percentile_ci(col, level) for col in boot_rel.T]).reshape(-1, 2)
    mare_boot = np.mean(np.abs(boot_rel), axis=1)
    return Forecast(law=law, by=by, threshold=threshold, n_train=int((~test).sum()),
                    n_test=int(test.sum()), test_index=np.flatnonzero(test), actual=actual,
                    predicted=predicted, rel_error=rel, rel_error_ci=rel_ci,
                    mean_abs_rel_error=float(np.mean(np.abs(rel))),
                    mean_abs_rel_error_ci=percentile_ci(mare_boot, level), params=params)


def forecast_chinchilla(
    N: np.ndarray, D: np.ndarray, loss: np.ndarray, *, by: Literal["N", "C"] = "N",
    holdout: float | int = 0.2, n_boot: int = 200, seed: int = 0, level: float = 0.95,
    delta: float = HUBER_DELTA,
) -> Forecast:
    """Fit Approach 3 on all but the largest runs (by N, or by C = 6ND) and predict those.

    Args:
        holdout: fraction (0 < holdout < 1) or count (>= 1) of the largest runs to hold out.
        n_boot: bootstrap refits of the training runs for the error intervals.
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
    theta, _ = refit_weighted(log_x_train, np.log(y[~test]), weights, fit.best_starts[:8], delta=delta)
    boot_pred = np.exp(log_sum_exp_prediction(theta, log_x_test))
    params = {k: float(v) for k, v in fit.to_dict().items()}
    return _score("chinchilla", by, threshold, test, y[test], fit.predict(n[test], d[test]),
                  boot_pred, level, params)


def forecast_power_law(
    x: np.ndarray, y: np.ndarray, *, holdout: float | int = 0.2, n_boot: int = 200, seed: int = 0,
    level: float = 0.95, delta: float = HUBER_DELTA,
) -> Forecast:
    """Fit L(x) = E + A x^(-alpha) on all but the largest x and predict the held-out runs."""
    xa, ya = check_power_data(x, y)
    test, threshold = holdout_mask(xa, holdout)
    fit = fit_power_law(xa[~test], ya[~test], delta=delta)
    x_ref = fit.x_ref
    weights = resample_weights(int((~test).sum()), n_boot, seed)
    theta, _ = refit_weighted(np.log(xa[~test] / x_ref)[None], np.log(ya[~test]), weights,
                              fit.best_starts[:8], delta=delta)
    boot_pred = np.exp(log_sum_exp_prediction(theta, np.log(xa[test] / x_ref)[None]))
    params = {k: float(v) for k, v in fit.to_dict().items()}
    return _score("power", "x", threshold, test, ya[test], fit.predict(xa[test]), boot_pred, level, params)
