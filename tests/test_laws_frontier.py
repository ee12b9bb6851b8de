"""The compute-efficient frontier: Kaplan's L(C) is the envelope of the loss-vs-compute curves."""

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws import compute_frontier, fit_compute_frontier, fit_power_law


def _curves():
    """Runs of 4 sizes trained to a fixed 2 tokens per parameter, Chinchilla law along each run."""
    sizes = np.array([1e4, 4e4, 1.6e5, 6.4e5])
    curves = []
    for n in sizes:
        d = np.geomspace(0.05, 2.0, 12) * n
        curves.append((6 * n * d, 1.7 + 30 / n**0.35 + 30 / d**0.3))
    return sizes, curves


def test_envelope_is_the_lowest_curve_at_each_budget() -> None:
    _, curves = _curves()
    flops, loss, run = compute_frontier(curves)
    for c, l_min, r in zip(flops, loss, run):
        at = [np.interp(np.log(c), np.log(f), v) if f.min() <= c * (1 + 1e-9) and c <= f.max() * (1 + 1e-9)
              else np.inf for f, v in curves]
        assert l_min == pytest.approx(min(at)) and r == int(np.argmin(at))
    assert len(set(run.tolist())) > 1  # several sizes take turns on the frontier


def test_frontier_ignores_runs_that_are_not_compute_efficient() -> None:
    # Issue 15: fitting every run's final loss against its FLOPs is not Kaplan's L(C). Add small
    # models trained far past their efficient budget: their final losses sit above the frontier.
    _, curves = _curves()
    for n in (1e4, 2e4, 4e4):
        d = np.geomspace(0.05, 400.0, 30) * n
        curves.append((6 * n * d, 1.7 + 30 / n**0.35 + 30 / d**0.3))
    frontier = fit_compute_frontier(curves)
    finals = fit_power_law(np.array([c[-1] for c, _ in curves]), np.array([v[-1] for _, v in curves]))
    assert frontier.law.n_points == frontier.flops.size >= 8
    assert frontier.run[-1] == 3  # the largest budget belongs to the largest model
    c_big, l_big = curves[3][0][-1], curves[3][1][-1]  # the largest efficient run's end
    assert frontier.law.predict(c_big) == pytest.approx(l_big, rel=0.03)
    assert abs(finals.predict(c_big) / l_big - 1) > 0.06
    assert set(frontier.to_dict()) >= {"E", "A", "alpha", "frontier_flops", "frontier_loss"}


def test_frontier_needs_curves() -> None:
    with pytest.raises(UserError, match="at least 2 runs"):
        compute_frontier([([1e9, 2e9], [3.0, 2.9])])
