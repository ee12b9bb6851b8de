"""laws.efficiency: compute-to-target (first crossing), multipliers with seed bootstrap, doubling time."""

import math

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws.efficiency import (
    PAPER_IMAGENET,
    best_size,
    compute_to_target,
    decimal_year,
    efficiency_multipliers,
    fit_doubling_time,
    paper_table_fit,
)


def test_compute_to_target_takes_the_first_crossing_not_the_best_or_last() -> None:
    flops = [1, 2, 3, 4, 5, 6]
    loss = [5.0, 4.0, 2.9, 3.2, 2.5, 2.4]  # crosses 3.0 at 3, goes back above, then below again
    assert compute_to_target(flops, loss, 3.0) == 3
    assert compute_to_target(flops, loss, 2.9) == 3  # "at or below"
    assert compute_to_target(flops[::-1], loss[::-1], 3.0) == 3  # order of the evaluations does not matter
    assert compute_to_target(flops, loss, 2.0) == math.inf


def test_compute_to_target_interpolates_in_log_flops_only_when_asked() -> None:
    flops, loss = [100.0, 10_000.0], [4.0, 2.0]
    assert compute_to_target(flops, loss, 3.0) == 10_000.0
    assert compute_to_target(flops, loss, 3.0, interpolate=True) == pytest.approx(1000.0)
    assert compute_to_target([100.0], [2.0], 3.0, interpolate=True) == 100.0  # first evaluation: nothing before


def test_best_size_is_the_least_geometric_mean_and_inf_if_a_seed_never_reached() -> None:
    size, value = best_size({"s": [4.0, 9.0], "m": [5.0, 5.0], "l": [1.0, math.inf]})
    assert size == "m" and value == pytest.approx(5.0)  # s: sqrt(36) = 6; l: a seed never reached the target


def test_multiplier_and_interval_on_planted_runs() -> None:
    rng = np.random.default_rng(0)
    base = {"s": 1e12 * np.exp(0.1 * rng.standard_normal(5)), "m": 3e12 * np.ones(5)}
    fast = {"s": 2.5e11 * np.exp(0.1 * rng.standard_normal(5)), "m": 9e11 * np.ones(5)}
    res = efficiency_multipliers({"old": base, "new": fast}, "old", n_boot=2000, seed=1)
    value, lo, hi = res.multipliers["new"]
    assert res.best_size == {"old": "s", "new": "s"}
    assert lo < value < hi and lo < 4.0 < hi and 3.0 < value < 5.5
    assert hi / lo < 1.6  # 10% seed noise, 5 seeds per side: a narrow interval
    assert res.multipliers["old"][0] == 1.0
    assert res.reached == {"old": True, "new": True}


def test_multiplier_of_a_recipe_that_never_reached_is_nan_and_baseline_must_exist() -> None:
    res = efficiency_multipliers({"old": {"s": [1.0, 1.0]}, "bad": {"s": [math.inf, math.inf]}}, "old", n_boot=50)
    assert math.isnan(res.multipliers["bad"][0]) and res.best_size["bad"] is None and not res.reached["bad"]
    with pytest.raises(UserError, match="baseline recipe 'gpt2' has no runs"):
        efficiency_multipliers({"old": {"s": [1.0]}}, "gpt2")


def test_doubling_time_on_the_papers_table_is_16_months_and_44x() -> None:
    res = paper_table_fit()
    months, lo, hi = res["doubling_time_months"]
    assert 15.0 <= months <= 17.0 and lo < months < hi
    assert round(res["factor"]) in (44, 45)  # 3.1 / 0.069 pfs-days: the paper's "44x"
    assert len(res["table"]) == len(PAPER_IMAGENET) == 6


def test_doubling_time_recovers_a_planted_trend() -> None:
    years = np.array([2010.0, 2012.0, 2013.5, 2016.0, 2019.0])
    compute = 1e18 * 2.0 ** (-(years - 2010.0) * 12 / 9.0)  # halves every 9 months
    fit = fit_doubling_time(years, compute * np.exp([0.01, -0.02, 0.0, 0.015, -0.01]))
    assert fit.months == pytest.approx(9.0, rel=0.02)
    assert fit.months_ci[0] < 9.0 < fit.months_ci[1]


def test_doubling_time_bad_input() -> None:
    with pytest.raises(UserError, match="at least 3"):
        fit_doubling_time(["2019-01", "2020-01"], [2.0, 1.0])
    with pytest.raises(UserError, match="positive finite"):
        fit_doubling_time(["2019-01", "2020-01", "2021-01"], [2.0, math.inf, 1.0])
    with pytest.raises(UserError, match="YYYY-MM"):
        decimal_year("May 2019")
    assert decimal_year("2019-07") == pytest.approx(2019.5)
