"""Data-constrained law of Muennighoff et al. 2023: formula values and fitting R*."""

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws import (
    R_D_STAR,
    R_N_STAR,
    ChinchillaFit,
    data_constrained_loss,
    effective_data,
    effective_params,
    fit_data_constrained,
    params_for_tokens,
)
from scalelab.laws.synthetic import REPLICATION_PARAMS

LAW = ChinchillaFit(n_points=0, objective=0.0, **REPLICATION_PARAMS)


def test_published_values() -> None:
    assert (R_D_STAR, R_N_STAR) == (15.4, 5.3)
    u = 1e9
    four_epochs = effective_data(4 * u, u)
    assert four_epochs / u == pytest.approx(1 + 15.4 * (1 - np.exp(-3 / 15.4)))
    assert four_epochs / u == pytest.approx(3.7, abs=0.03)
    assert effective_data(1e6 * u, u) / u == pytest.approx(16.4, rel=1e-6)
    epochs = np.geomspace(1, 1e5, 50)
    d_eff = effective_data(epochs * u, u)
    assert np.all(d_eff <= 16.4 * u * (1 + 1e-12))
    assert np.all(np.diff(d_eff) >= 0) and np.all(np.diff(d_eff[epochs < 100]) > 0)


def test_single_epoch_and_no_decay_are_identity() -> None:
    d = np.array([1e9, 5e9])
    np.testing.assert_allclose(effective_data(d, np.array([2e9, 5e9])), d)
    np.testing.assert_allclose(effective_data(d, 1e8, np.inf), d)
    np.testing.assert_allclose(effective_params(3e8, 1e8, 5.3), 1e8 * (1 + 5.3 * (1 - np.exp(-2 / 5.3))))


def test_loss_reduces_to_chinchilla_without_repetition_or_excess_parameters() -> None:
    d = np.array([2e9, 2e10])
    n = 0.5 * params_for_tokens(d, LAW.A, LAW.B, LAW.alpha, LAW.beta)  # below U_N: no excess
    np.testing.assert_allclose(data_constrained_loss(LAW, n, d, d * 10), LAW.predict(n, d))
    repeated = data_constrained_loss(LAW, n, d, d / 20)
    assert np.all(repeated > LAW.predict(n, d))


def test_parameters_beyond_the_optimum_for_the_unique_data_decay() -> None:
    # U_N = min(N_opt(U_D), N) and R_N = N/U_N - 1 (Muennighoff et al. 2023, Section 3.1).
    u = 1e10
    u_n = params_for_tokens(u, LAW.A, LAW.B, LAW.alpha, LAW.beta)
    n = 3 * u_n
    n_eff = u_n * (1 + 5.3 * (1 - np.exp(-2 / 5.3)))
    expected = LAW.E + LAW.A / n_eff**LAW.alpha + LAW.B / u**LAW.beta
    assert data_constrained_loss(LAW, n, u, u) == pytest.approx(expected, rel=1e-12)


def _repeated_runs(seed: int = 0, noise: float = 0.002):
    rng = np.random.default_rng(seed)
    n, d, u = [], [], []
    for size in np.geomspace(5e7, 2e9, 5):
        unique = 20 * size  # about compute-optimal data for this size
        for epochs in (0.5, 1, 2, 4, 8, 16, 32, 64):
            n.append(size)
            u.append(unique / 4)
            d.append(epochs * unique / 4)
    n, d, u = map(np.array, (n, d, u))
    y = data_constrained_loss(LAW, n, d, u) * np.exp(noise * rng.standard_normal(n.size))
    return n, d, u, y


def test_fit_recovers_decay_constants_with_base_held() -> None:
    n, d, u, y = _repeated_runs()
    fit = fit_data_constrained(n, d, u, y, base=LAW, n_boot=20, seed=0)
    assert fit.r_d_star == pytest.approx(15.4, rel=0.15)
    assert fit.r_n_star == pytest.approx(5.3, rel=0.3)
    lo, hi = fit.ci["R_D_star"]
    assert lo <= fit.r_d_star <= hi
    assert fit.predict(n, d, u) == pytest.approx(y, rel=0.01)


def test_fit_without_base_uses_single_epoch_runs() -> None:
    n, d, u, y = _repeated_runs(noise=0.0)
    fit = fit_data_constrained(n, d, u, y, fit_rn=False)
    assert fit.base.n_points == int((d <= u).sum())
    assert np.isinf(fit.r_n_star)
    assert fit.r_d_star > 1


def test_errors() -> None:
    n, d, u, y = _repeated_runs()
    with pytest.raises(UserError, match="single-epoch"):
        fit_data_constrained(n[:8], d[:8], u[:8], y[:8])
    single = d <= u
    with pytest.raises(UserError, match="no run repeats data"):
        fit_data_constrained(n[single], d[single], u[single], y[single], base=LAW)


def test_decay_interval_carries_the_base_laws_uncertainty() -> None:
    # Issue 15 (b): holding the fitted base law fixed in the bootstrap made R_D*'s interval too narrow.
    n, d, u, y = _repeated_runs(noise=0.02)
    fit = fit_data_constrained(n, d, u, y, fit_rn=False, n_boot=30, seed=0)
    held = fit_data_constrained(n, d, u, y, base=fit.base, fit_rn=False, n_boot=30, seed=0)
    assert {"E", "alpha", "beta"} <= set(fit.ci) and "refits the base" in fit.ci_note
    assert "held fixed" in held.ci_note
    width, held_width = np.diff(fit.ci["R_D_star"])[0], np.diff(held.ci["R_D_star"])[0]
    assert width > 1.2 * held_width
