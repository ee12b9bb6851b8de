"""Chinchilla Approach 2 (IsoFLOP parabola minima) on synthetic profiles with known answers."""

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws import fit_isoflop
from scalelab.laws.isoflop import group_budgets, parabola_minimum


def _profiles(a: float = 0.5, k: float = 0.1, noise: float = 0.0, seed: int = 0):
    """Exact parabolas in log N with minima at N_opt = k C^a, plus optional noise."""
    rng = np.random.default_rng(seed)
    budgets = np.geomspace(1e18, 1e21, 5)
    n, loss, flops = [], [], []
    for c in budgets:
        n_opt = k * c**a
        sizes = n_opt * np.geomspace(0.2, 5.0, 9)
        curve = 2.0 + 0.05 * (np.log(sizes) - np.log(n_opt)) ** 2 - 0.1 * np.log10(c / 1e18)
        n += list(sizes)
        loss += list(curve + noise * rng.standard_normal(sizes.size))
        flops += [c * (1 + 0.01 * rng.uniform(-1, 1)) for _ in sizes]  # budgets not exactly equal
    return np.array(n), np.array(loss), np.array(flops)


def test_parabola_minimum_exact() -> None:
    sizes = np.geomspace(1e7, 1e9, 7)
    loss = 3.0 + 0.2 * (np.log(sizes) - np.log(1e8)) ** 2
    m = parabola_minimum(sizes, loss, 6e18)
    assert m.params == pytest.approx(1e8, rel=1e-9)
    assert m.tokens == pytest.approx(6e18 / (6 * 1e8), rel=1e-9)
    assert m.loss == pytest.approx(3.0, rel=1e-12)
    assert m.curvature == pytest.approx(0.2)


def test_recovers_minima_and_exponents() -> None:
    n, loss, flops = _profiles(a=0.5, k=0.1)
    fit = fit_isoflop(n, loss, flops)
    assert len(fit.minima) == 5
    assert fit.a == pytest.approx(0.5, abs=2e-3)
    assert fit.b == pytest.approx(0.5, abs=2e-3)
    for m in fit.minima:
        assert m.params == pytest.approx(0.1 * m.flops**0.5, rel=1e-2)


def test_bootstrap_interval_covers_truth() -> None:
    n, loss, flops = _profiles(a=0.45, k=1.0, noise=0.003, seed=1)
    fit = fit_isoflop(n, loss, flops, n_boot=200, seed=0)
    lo, hi = fit.ci["a"]
    assert lo <= 0.45 <= hi
    assert fit.ci["b"][0] <= 0.55 <= fit.ci["b"][1]
    assert fit.to_dict()["ci"]["a"] == [lo, hi]


def test_group_budgets_tolerates_small_differences() -> None:
    labels = group_budgets(np.array([1e18, 1.02e18, 1e19, 0.99e19, 1e20]))
    assert labels.tolist() == [0, 0, 1, 1, 2]


def test_errors_say_what_to_add() -> None:
    sizes = np.geomspace(1e7, 1e9, 5)
    with pytest.raises(UserError, match="not convex"):
        parabola_minimum(sizes, 3.0 - 0.1 * np.log(sizes) ** 2, 1e19)
    with pytest.raises(UserError, match="fewer than 3"):
        parabola_minimum(np.array([1e7, 1e8, 1e8]), np.array([3.0, 2.9, 2.9]), 1e19)
    with pytest.raises(UserError, match="at least 2 compute budgets"):
        fit_isoflop(sizes, 3.0 + np.log(sizes) ** 2 * 0.01, np.full(5, 1e19))


def _palm_isoflop_sweep():
    """A sweep as `sweep.spec.plan` makes it: N non-embedding, D = C / (6 N_total + attention)."""
    def fpt(n):  # FLOPs per token of a small model: embeddings and attention are not negligible
        return 6.0 * (n + 3e4) + 4e5

    n_all, d_all, c_all, loss = [], [], [], []
    for c in np.geomspace(1e12, 1e14, 4):
        sizes = np.geomspace(1e4, 3e6, 11)
        d = c / fpt(sizes)
        n_all += list(sizes)
        d_all += list(d)
        c_all += [c] * sizes.size
        loss += list(1.8 + 40 / sizes**0.35 + 60 / d**0.3)
    return np.array(n_all), np.array(d_all), np.array(c_all), np.array(loss), fpt


def test_isoflop_uses_the_tokens_the_runs_had() -> None:
    # One C from budget to fit (issue 15, section 1): D_opt is what the runs at N_opt were given,
    # not C / (6 N_opt), which overstates it here by 1.1x or more.
    n, d, c, loss, fpt = _palm_isoflop_sweep()
    fit = fit_isoflop(n, loss, c, tokens=d)
    for m in fit.minima:
        assert m.tokens == pytest.approx(m.flops / fpt(m.params), rel=0.03)
        assert m.flops / (6 * m.params) > 1.1 * m.tokens  # what the old fit reported
    assert abs(fit.a + fit.b - 1.0) > 0.02  # b is measured, not forced to 1 - a
