"""Tests for scalelab.evals.calibration on synthetic scores with known calibration."""

from __future__ import annotations

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.evals.calibration import (
    calibration,
    expected_calibration_error,
    preference_probability,
    reliability_figure,
)


def _calibrated_pairs(n: int = 20_000, seed: int = 0, spread: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose winner is drawn from the PM's own P(A > B): perfectly calibrated scores."""
    rng = np.random.default_rng(seed)
    r_a, r_b = rng.normal(0, spread, n), rng.normal(0, spread, n)
    a_wins = rng.random(n) < preference_probability(r_a, r_b)
    return np.where(a_wins, r_a, r_b), np.where(a_wins, r_b, r_a)  # (chosen, rejected)


def test_preference_probability_is_the_logistic_of_the_score_gap():
    assert preference_probability(1.0, 1.0) == 0.5
    assert preference_probability(2.0, 0.5) == pytest.approx(1 / (1 + np.exp(0.5 - 2.0)))
    assert preference_probability(0.3, -1.2) + preference_probability(-1.2, 0.3) == pytest.approx(1.0)
    extreme = preference_probability(np.array([1000.0, -1000.0]), 0.0)
    assert np.all(np.isfinite(extreme)) and extreme[0] == 1.0 and extreme[1] == 0.0


def test_calibrated_scores_have_small_ece():
    chosen, rejected = _calibrated_pairs()
    result = calibration(chosen, rejected, n_bins=10)
    assert result.ece < 0.02
    assert result.counts.sum() == result.n_pairs == chosen.size
    assert result.bin_edges[0] == 0.5 and result.bin_edges[-1] == 1.0
    filled = result.counts > 200
    assert np.all(np.abs(result.observed[filled] - result.mean_predicted[filled]) < 0.04)


def test_overconfident_scores_have_large_ece_and_lie_below_the_diagonal():
    chosen, rejected = _calibrated_pairs()
    calibrated = calibration(chosen, rejected).ece
    over = calibration(3 * chosen, 3 * rejected)
    assert over.ece > 0.08 and over.ece > 4 * calibrated
    high = (over.bin_edges[:-1] >= 0.8) & (over.counts > 100)
    assert high.any() and np.all(over.observed[high] < over.mean_predicted[high] - 0.03)
    under = calibration(chosen / 3, rejected / 3)  # under-confident: above the diagonal
    filled = under.counts > 100
    assert np.mean(under.observed[filled] > under.mean_predicted[filled]) > 0.5


def test_symmetric_convention_mirrors_the_folded_one():
    chosen, rejected = _calibrated_pairs(n=5000, seed=3)
    chosen = 2 * chosen  # miscalibrated, so the ECE is not trivially ~0
    folded = calibration(chosen, rejected, n_bins=5)
    symmetric = calibration(chosen, rejected, n_bins=10, convention="symmetric")
    assert symmetric.counts.sum() == 2 * chosen.size
    assert symmetric.ece == pytest.approx(folded.ece, abs=1e-12)
    np.testing.assert_allclose(symmetric.observed[5:], folded.observed)
    np.testing.assert_allclose(symmetric.observed[:5][::-1], 1 - folded.observed)
    assert expected_calibration_error(chosen, rejected, n_bins=5) == folded.ece


def test_ties_count_half_and_ece_is_weighted_by_bin_counts():
    result = calibration([1.0, 1.0, 2.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0, 2.0], n_bins=2)
    # two ties at confidence 0.5 (outcome 0.5); three pairs at confidence 0.881, two right, one wrong
    p = 1 / (1 + np.exp(-2.0))
    assert result.counts.tolist() == [2, 3]
    np.testing.assert_allclose(result.observed, [0.5, 2 / 3])
    np.testing.assert_allclose(result.mean_predicted, [0.5, p])
    assert result.ece == pytest.approx(2 / 5 * 0 + 3 / 5 * abs(2 / 3 - p))


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserError, match="valid: folded, symmetric"):
        calibration([1.0], [0.0], convention="both")
    with pytest.raises(UserError, match="finite"):
        calibration([np.nan], [0.0])
    with pytest.raises(UserError, match="equal-length"):
        calibration([1.0, 2.0], [0.0])
    with pytest.raises(UserError, match="n_bins"):
        calibration([1.0], [0.0], n_bins=0)


def test_reliability_figure_draws_the_diagonal(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    chosen, rejected = _calibrated_pairs(n=2000)
    result = calibration(3 * chosen, 3 * rejected)
    fig = reliability_figure(result)
    ax = fig.axes[0]
    diagonal = ax.lines[0]
    assert list(diagonal.get_xdata()) == [0.5, 1.0] and list(diagonal.get_ydata()) == [0.5, 1.0]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), result.observed[result.counts > 0])
    assert f"{result.ece:.3f}" in ax.get_title()
    fig.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 1000
