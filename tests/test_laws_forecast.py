"""Forecasting held-out large runs from a fit on the smaller ones."""

import json

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws import forecast_chinchilla, forecast_power_law, power_law
from scalelab.laws.forecast import holdout_mask
from scalelab.laws.synthetic import synthetic_chinchilla_runs


def test_holdout_mask_fraction_count_and_ties() -> None:
    key = np.array([1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
    mask, threshold = holdout_mask(key, 2)
    assert mask.tolist() == [False, False, False, False, True, True] and threshold == 4.0
    mask, _ = holdout_mask(key, 3)  # the 3rd largest is tied: both 3.0 runs are held out
    assert mask.sum() == 4
    mask, _ = holdout_mask(key, 0.34)
    assert mask.sum() == 2
    for bad in (0, 6, -0.5):
        with pytest.raises(UserError, match="holdout"):
            holdout_mask(key, bad)


@pytest.mark.parametrize("by", ["N", "C"])
def test_chinchilla_forecast_on_synthetic_data(by: str) -> None:
    n, d, y = synthetic_chinchilla_runs(noise=0.005, seed=1, n_budgets=6, sizes_per_budget=10)
    fc = forecast_chinchilla(n, d, y, by=by, holdout=0.2, n_boot=40, seed=0)
    key = n if by == "N" else 6 * n * d
    assert fc.n_test >= 12 and fc.n_train + fc.n_test == len(y)
    assert key[fc.test_index].min() >= key[np.setdiff1d(np.arange(len(y)), fc.test_index)].max()
    # Data from the law itself extrapolate well: errors are of the order of the noise.
    assert fc.mean_abs_rel_error < 0.02
    lo, hi = fc.mean_abs_rel_error_ci
    assert lo <= hi and hi < 0.05
    assert fc.rel_error_ci.shape == (fc.n_test, 2)
    json.dumps(fc.to_dict())  # plain data


def test_power_forecast_detects_a_wrong_law() -> None:
    x = np.geomspace(1e6, 1e10, 20)
    good = forecast_power_law(x, power_law(x, 2.0, 100.0, 0.3), holdout=4, n_boot=20)
    assert good.mean_abs_rel_error < 1e-4
    bent = power_law(x, 2.0, 100.0, 0.3) * np.where(x >= x[-4], 1.1, 1.0)  # held-out runs 10% worse
    bad = forecast_power_law(x, bent, holdout=4, n_boot=20)
    assert bad.mean_abs_rel_error == pytest.approx(0.1 / 1.1, rel=0.05)
    assert np.all(bad.rel_error < 0)


def test_forecast_rejects_unknown_axis() -> None:
    n, d, y = synthetic_chinchilla_runs(n_budgets=3, sizes_per_budget=4)
    with pytest.raises(UserError, match="by="):
        forecast_chinchilla(n, d, y, by="D")  # type: ignore[arg-type]


def test_forecast_interval_is_a_prediction_interval() -> None:
    # Issue 15 (c): the interval must include the noise of the held-out observation itself. With
    # exact training data the refits agree, so only the given noise can widen the interval.
    x = np.geomspace(1e4, 1e6, 7)
    y = 1.5 + 30 * x**-0.3
    fc = forecast_power_law(x, y, holdout=1, n_boot=100, noise_sd=0.02)
    lo, hi = fc.prediction_interval[0]
    assert hi - lo > 0.9 * 2 * 1.96 * 0.02 * fc.predicted[0]
    assert fc.covered[0] and fc.rel_error_ci[0][0] < 0 < fc.rel_error_ci[0][1]
    assert fc.param_rel_error_ci[0][1] - fc.param_rel_error_ci[0][0] < 0.01
    assert fc.noise_source == "given" and fc.to_dict()["prediction_interval"][0] == [lo, hi]


@pytest.mark.slow
def test_prediction_interval_covers_noisy_held_out_runs() -> None:
    rng = np.random.default_rng(0)
    x = np.geomspace(1e4, 1e6, 8)
    covered = 0
    for _ in range(20):
        y = (1.5 + 30 * x**-0.3) * np.exp(0.02 * rng.standard_normal(x.size))
        fc = forecast_power_law(x, y, holdout=1, n_boot=100)
        covered += int(fc.covered[0])
        assert fc.noise_source == "residuals" and fc.noise_sd > 0
    assert covered >= 16  # nominal 95%; the refits alone covered about half
