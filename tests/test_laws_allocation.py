"""Compute-optimal allocation against values worked out by hand."""

import numpy as np
import pytest

from scalelab.laws import (
    ChinchillaFit,
    allocation_coefficient,
    allocation_exponents,
    compute_optimal,
    optimal_params,
    optimal_tokens,
    params_for_tokens,
    tokens_per_param,
)

# Hoffmann et al. 2022's Approach 3 fit.
HOFFMANN = {"A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def test_exponents_by_hand() -> None:
    a, b = allocation_exponents(0.34, 0.28)
    assert a == pytest.approx(0.28 / 0.62) and a == pytest.approx(0.4516129, abs=1e-7)
    assert b == pytest.approx(0.5483871, abs=1e-7)
    assert a + b == pytest.approx(1.0)


def test_equal_exponents_give_square_root_scaling() -> None:
    # alpha = beta = 0.5, A = B: G = 1, N_opt = D_opt = sqrt(C/6), 1 token per parameter.
    c = 6e20
    assert allocation_coefficient(2.0, 2.0, 0.5, 0.5) == pytest.approx(1.0)
    assert optimal_params(c, 2.0, 2.0, 0.5, 0.5) == pytest.approx(1e10)
    assert optimal_tokens(c, 2.0, 2.0, 0.5, 0.5) == pytest.approx(1e10)
    assert tokens_per_param(c, 2.0, 2.0, 0.5, 0.5) == pytest.approx(1.0)


def test_hoffmann_numbers_by_hand() -> None:
    # G = (0.34 * 406.4 / (0.28 * 410.7))^(1/0.62) = 1.20158^1.6129 = 1.3446 (worked by hand).
    g = allocation_coefficient(**HOFFMANN)
    assert g == pytest.approx((0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62))
    assert g == pytest.approx(1.3446, abs=5e-4)
    c = 5.76e23  # Gopher / Chinchilla budget
    n = optimal_params(c, **HOFFMANN)
    d = optimal_tokens(c, **HOFFMANN)
    assert n == pytest.approx(g * (c / 6) ** (0.28 / 0.62))
    assert d == pytest.approx((c / 6) ** (0.34 / 0.62) / g)
    assert 6 * n * d == pytest.approx(c)  # the budget is spent exactly
    assert tokens_per_param(c, **HOFFMANN) == pytest.approx(d / n)


def test_allocation_is_the_constrained_minimum() -> None:
    law = ChinchillaFit(E=1.69, n_points=0, objective=0.0, **HOFFMANN)
    c = 1e22
    alloc = compute_optimal(law, c)
    n_grid = np.geomspace(alloc.params[0] / 3, alloc.params[0] * 3, 2001)
    loss = law.predict(n_grid, c / (6 * n_grid))
    assert n_grid[np.argmin(loss)] == pytest.approx(alloc.params[0], rel=2e-3)
    assert alloc.loss[0] == pytest.approx(loss.min(), rel=1e-9)
    assert alloc.to_dict()["a"] == pytest.approx(law.a)


def test_params_for_tokens_inverts_the_allocation() -> None:
    c = np.array([1e20, 1e23])
    d = optimal_tokens(c, **HOFFMANN)
    np.testing.assert_allclose(params_for_tokens(d, **HOFFMANN), optimal_params(c, **HOFFMANN), rtol=1e-10)


def test_compute_optimal_rejects_bad_budgets() -> None:
    law = ChinchillaFit(E=1.69, n_points=0, objective=0.0, **HOFFMANN)
    with pytest.raises(ValueError):
        compute_optimal(law, [1e20, -1.0])
