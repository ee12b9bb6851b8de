"""The abrupt-jump rule (Ganguli et al. 2022): silent on smooth ladders, firing on planted steps."""

from __future__ import annotations

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws.abrupt import abrupt_jumps, simulate_rule

C = [1e12, 3e12, 1e13, 3e13, 1e14]


def test_smooth_ladder_is_not_abrupt():
    # the answer's log-prob climbs steadily and exact match follows exp(log-prob): a smooth "emergence"
    logprob = np.linspace(np.log(0.02), np.log(0.9), 5)
    exact = np.round(np.exp(logprob) * 64) / 64
    res = abrupt_jumps(C, exact, logprob, 64)
    assert not res.abrupt and res.largest is None and res.slope > 0


def test_planted_step_is_abrupt_at_the_step():
    logprob = np.log(0.02) + np.array([0.0, 0.05, 0.1, 0.15, 0.2])  # hardly moves
    exact = [0.0, 0.02, 0.03, 0.75, 0.8]
    res = abrupt_jumps(C, exact, logprob, 64)
    assert res.abrupt and res.largest == 2 and res.z_scores[2] > 3


def test_small_jumps_and_drops_are_not_abrupt():
    logprob = np.full(5, np.log(0.01))
    assert not abrupt_jumps(C, [0.0, 0.0, 0.1, 0.12, 0.12], logprob, 2000).abrupt  # significant, but < min_jump
    assert not abrupt_jumps(C, [0.9, 0.9, 0.0, 0.0, 0.0], logprob, 64).abrupt  # a capability lost is no emergence


def test_false_positive_rate_and_power():
    sim = simulate_rule(400, seed=1)
    assert sim["false_positive_rate"] <= 0.02  # measured 0.0025 over 2000 ladders (docs/predictability.md)
    assert sim["power"] >= 0.95
    weak = simulate_rule(400, seed=1, step_from=0.2, step_to=0.5)
    assert 0.2 < weak["power"] < sim["power"]  # a smaller step is found less often


def test_bad_input_is_a_clear_error():
    with pytest.raises(UserError, match="at least 3 sizes"):
        abrupt_jumps(C[:2], [0, 1], [-3, -1], 64)
    with pytest.raises(UserError, match="equal-length"):
        abrupt_jumps(C, [0, 1], [-3, -1], 64)
    with pytest.raises(UserError, match="share"):
        abrupt_jumps(C, [0, 1, 2, 3, 4], [-3, -2, -1, -1, -1], 64)


def test_fitted_link_keeps_greedy_smooth_ladders_smooth():
    # exact match = exp(log-prob / 2): greedy decoding beating sampling, smoothly; a fixed link k = 1 cries wolf
    fixed = simulate_rule(400, seed=2, link_power=2.0, fit_link=False)["false_positive_rate"]
    fitted = simulate_rule(400, seed=2, link_power=2.0)["false_positive_rate"]
    assert fitted <= 0.02 < fixed  # measured 0.008 vs 0.078 over 2000 ladders
    logprob = np.linspace(-4.0, -0.4, 5)
    res = abrupt_jumps(C, np.exp(logprob / 2), logprob, 64)
    assert not res.abrupt and abs(res.link_power - 2.0) < 0.15
