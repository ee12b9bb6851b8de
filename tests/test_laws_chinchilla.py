"""Chinchilla Approach 3: the grid, agreement with the plain SciPy loop, recovery, bad input."""

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws import bootstrap_chinchilla, chinchilla_grid, chinchilla_loss, fit_chinchilla
from scalelab.laws.chinchilla import ChinchillaFit
from scalelab.laws.reference import plain_scipy_loop
from scalelab.laws.synthetic import REPLICATION_PARAMS, synthetic_chinchilla_runs

SMALL_GRID = {
    "alphas": (0.0, 1.0), "betas": (0.0, 1.0), "es": (-1.0, 1.0), "a_s": (5.0, 15.0), "bs": (5.0, 15.0),
}


def test_default_grid_is_the_4500_start_grid() -> None:
    grid = chinchilla_grid()
    assert grid.shape == (4500, 5)
    for col, values in zip(range(5), ([0, 5, 10, 15, 20, 25],) * 2 + ([-1, -0.5, 0, 0.5, 1],)
                           + ([0, 0.5, 1, 1.5, 2],) * 2, strict=True):
        np.testing.assert_array_equal(np.unique(grid[:, col]), values)
    assert len({tuple(r) for r in grid}) == 4500


def test_matches_plain_scipy_loop_on_small_grid() -> None:
    n, d, y = synthetic_chinchilla_runs(seed=3, n_budgets=5, sizes_per_budget=8)
    grid = chinchilla_grid(**SMALL_GRID)
    ref_f, ref_x = plain_scipy_loop(n, d, y, grid)
    for screen in (0, 5):  # every start to convergence, and the pruned default path
        fit = fit_chinchilla(n, d, y, grid=grid, screen_iter=screen, n_survivors=8)
        assert fit.objective <= ref_f * (1 + 1e-7)
        ours = np.array([fit.A, fit.B, fit.E, fit.alpha, fit.beta])
        theirs = np.array([np.exp(ref_x[0]), np.exp(ref_x[1]), np.exp(ref_x[2]), ref_x[3], ref_x[4]])
        np.testing.assert_allclose(ours, theirs, rtol=5e-3)  # 3 significant figures


def test_noiseless_data_gives_the_true_parameters() -> None:
    n, d, y = synthetic_chinchilla_runs(noise=0.0, n_budgets=5, sizes_per_budget=8)
    fit = fit_chinchilla(n, d, y)
    for key, value in REPLICATION_PARAMS.items():
        assert getattr(fit, key) == pytest.approx(value, rel=1e-4), key
    assert fit.objective < 1e-12


def test_recovers_parameters_within_its_bootstrap_intervals() -> None:
    n, d, y = synthetic_chinchilla_runs(noise=0.01, seed=0, n_budgets=6, sizes_per_budget=12)
    fit = fit_chinchilla(n, d, y)
    boot = bootstrap_chinchilla(n, d, y, n_boot=120, seed=1, fit=fit, flops=[1e22])
    for key, value in REPLICATION_PARAMS.items():
        lo, hi = boot.ci[key]
        assert lo <= value <= hi, (key, value, lo, hi)
        assert lo <= getattr(fit, key) <= hi
    true_a = REPLICATION_PARAMS["beta"] / (REPLICATION_PARAMS["alpha"] + REPLICATION_PARAMS["beta"])
    assert boot.ci["a"][0] <= true_a <= boot.ci["a"][1]
    assert {"G", "b", "N_opt@1e+22", "D_opt@1e+22", "tokens_per_param@1e+22"} <= set(boot.ci)


def test_fit_object_derived_quantities() -> None:
    fit = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, n_points=10, objective=0.0)
    assert fit.a == pytest.approx(0.28 / 0.62)
    assert fit.b == pytest.approx(0.34 / 0.62)
    assert fit.G == pytest.approx((0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62))
    np.testing.assert_allclose(fit.theta, [np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28])
    assert fit.predict(1e9, 2e10) == pytest.approx(chinchilla_loss(1e9, 2e10, 1.69, 406.4, 410.7, 0.34, 0.28))
    assert {"E", "A", "B", "alpha", "beta", "a", "b", "G", "n_points"} <= set(fit.to_dict())


@pytest.mark.parametrize(
    ("n", "d", "y", "needle"),
    [
        ([1e8, -1e9] + [1e9] * 5, [1e10] * 7, [3.0] * 7, "non-positive"),
        ([1e8] * 7, [1e10, np.nan] + [1e10] * 5, [3.0] * 7, "NaN"),
        ([1e8] * 7, [1e10] * 7, [3.0, np.inf] + [3.0] * 5, "infinite"),
        ([1e8] * 5, [1e10] * 5, [3.0] * 5, "only 5 data points"),
        ([1e8] * 7, [1e10] * 6, [3.0] * 7, "different lengths"),
    ],
)
def test_bad_inputs_raise_user_error(n: list, d: list, y: list, needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        fit_chinchilla(np.array(n), np.array(d), np.array(y))


def test_grid_order_does_not_change_the_answer() -> None:
    n, d, y = synthetic_chinchilla_runs(seed=5, n_budgets=4, sizes_per_budget=8)
    grid = chinchilla_grid(**SMALL_GRID)
    perm = np.random.default_rng(0).permutation(len(grid))
    f1 = fit_chinchilla(n, d, y, grid=grid)
    f2 = fit_chinchilla(n, d, y, grid=grid[perm])
    assert f1.objective == pytest.approx(f2.objective, rel=1e-9)
    assert f1.best_starts.shape[1] == 5 and len(f1.best_starts) > 3
