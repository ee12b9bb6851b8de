"""Tests for PM accuracy with bootstrap intervals, the HHH-style choice format and the PM scaling fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.evals.accuracy import AccuracyResult, bootstrap_mean_ci, pair_outcomes, pairwise_accuracy
from scalelab.evals.choice_format import ChoiceItem, load_choice_items, score_choice
from scalelab.evals.pm_scaling import fit_pm_accuracy

# --- accuracy --------------------------------------------------------------------------------------------


def test_accuracy_counts_ties_as_half():
    result = pairwise_accuracy([3.0, 2.0, 1.0, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert isinstance(result, AccuracyResult)
    assert result.value == pytest.approx((1 + 0.5 + 0 + 1) / 4) and result.n == 4
    assert pair_outcomes([1, 1, 0], [0, 1, 1]).tolist() == [1.0, 0.5, 0.0]


def test_bootstrap_interval_has_the_binomial_width_and_is_seeded():
    rng = np.random.default_rng(1)
    correct = rng.random(400) < 0.7
    chosen, rejected = np.where(correct, 1.0, 0.0), np.where(correct, 0.0, 1.0)
    result = pairwise_accuracy(chosen, rejected, seed=5)
    lo, hi = result.ci
    assert lo < result.value < hi
    expected_half_width = 1.96 * math.sqrt(result.value * (1 - result.value) / 400)
    assert (hi - lo) / 2 == pytest.approx(expected_half_width, rel=0.15)
    assert pairwise_accuracy(chosen, rejected, seed=5).ci == result.ci
    narrower = pairwise_accuracy(np.tile(chosen, 16), np.tile(rejected, 16), seed=5)
    assert narrower.ci[1] - narrower.ci[0] < (hi - lo) / 3


def test_multinomial_bootstrap_matches_resampling_pairs():
    rng = np.random.default_rng(2)
    outcomes = rng.choice([0.0, 0.5, 1.0], size=300, p=[0.3, 0.1, 0.6])
    naive = [outcomes[rng.integers(0, 300, 300)].mean() for _ in range(4000)]
    lo, hi = bootstrap_mean_ci(outcomes, n_boot=4000, seed=3)
    assert lo == pytest.approx(np.quantile(naive, 0.025), abs=0.008)
    assert hi == pytest.approx(np.quantile(naive, 0.975), abs=0.008)


def test_accuracy_input_errors():
    with pytest.raises(UserError, match="one each per pair"):
        pairwise_accuracy([1.0, 2.0], [1.0])
    with pytest.raises(UserError, match=r"scores_rejected\[1\] is nan"):
        pairwise_accuracy([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(UserError, match="no pairs"):
        pairwise_accuracy([], [])
    with pytest.raises(UserError, match="0, 0.5 and 1"):
        bootstrap_mean_ci(np.array([0.2, 1.0]))


# --- choice format ---------------------------------------------------------------------------------------


def _item(query="q", responses=("good", "bad"), correct=0, category="helpful"):
    obj = {"query": query, "responses": list(responses), "correct": correct}
    if category is not None:
        obj["category"] = category
    return json.dumps(obj)


def test_load_choice_items(tmp_path):
    path = tmp_path / "hhh.jsonl"
    path.write_text("\n".join([_item(), _item(correct=1, category=None), ""]) + "\n", encoding="utf-8")
    items = load_choice_items(path)
    assert items[0] == ChoiceItem("q", ("good", "bad"), 0, "helpful", 1)
    assert (items[1].chosen, items[1].rejected, items[1].category) == ("bad", "good", None)


def test_load_choice_items_lists_every_bad_line(tmp_path):
    lines = [
        _item(),
        "{not json",
        _item(correct=2),
        _item(responses=("a", "a")),
        _item(category="funny"),
        _item(correct=True),
        json.dumps({"query": "q", "correct": 0}),
        _item(responses=("only one",)),
    ]
    path = tmp_path / "hhh.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_choice_items(path)
    message = str(info.value)
    assert "7 bad lines" in message and "line 1:" not in message
    for fragment in ("line 2: bad JSON", "line 3: 'correct' must be 0 or 1",
                     "line 4: the two 'responses' are",
                     "line 5: 'category' must be one of helpful, honest, harmless, other",
                     "line 6: 'correct'", "line 7: missing key 'responses'", "line 8: 'responses' must be"):
        assert fragment in message
    with pytest.raises(UserError, match="no such file"):
        load_choice_items(tmp_path / "missing.jsonl")


def test_score_choice_overall_and_per_category():
    items = [ChoiceItem("q", ("a", "b"), 0, "helpful"), ChoiceItem("q", ("a", "b"), 1, "helpful"),
             ChoiceItem("q", ("a", "b"), 1, "harmless"), ChoiceItem("q", ("a", "b"), 0, None)]
    # item 0 right, item 1 wrong (picked a), item 2 tie, item 3 right
    result = score_choice(items, [2.0, 3.0, 1.0, 0.5], [1.0, 1.0, 1.0, -0.5])
    assert result.accuracy == pytest.approx((1 + 0 + 0.5 + 1) / 4) and result.n == 4
    assert result.per_category == {"helpful": (0.5, 2), "harmless": (0.5, 1)}
    with pytest.raises(UserError, match="one score per item"):
        score_choice(items, [1.0], [0.0])
    with pytest.raises(UserError, match="finite"):
        score_choice(items, [1.0, 1.0, 1.0, float("inf")], [0.0] * 4)


# --- PM accuracy scaling ---------------------------------------------------------------------------------


def _grid(a=0.72, b=0.007, c=0.015, noise=0.0, seed=0):
    n, d = np.meshgrid(np.logspace(7, 10, 5), np.logspace(3, 5, 4))
    n, d = n.ravel(), d.ravel()
    acc = a + b * np.log(n / 1e11) + c * np.log(d / 8e4)
    return n, d, acc + np.random.default_rng(seed).normal(0, noise, n.size)


def test_pm_scaling_recovers_known_coefficients_exactly():
    n, d, acc = _grid()
    fit = fit_pm_accuracy(n, d, acc, n_boot=50)
    assert (fit.a, fit.b, fit.c) == pytest.approx((0.72, 0.007, 0.015), abs=1e-10)
    assert fit.rmse < 1e-10 and fit.n_points == 20
    assert fit.predict(1e11, 8e4) == pytest.approx(0.72)


def test_pm_scaling_bootstrap_intervals_cover_the_truth_under_noise():
    n, d, acc = _grid(noise=0.003, seed=4)
    fit = fit_pm_accuracy(n, d, acc, n_boot=500, seed=1)
    for name, truth in (("a", 0.72), ("b", 0.007), ("c", 0.015)):
        lo, hi = fit.ci[name]
        assert lo < truth < hi and lo < getattr(fit, name) < hi
    assert fit.ci["b"][1] - fit.ci["b"][0] < 0.004
    assert fit.n_boot_used > 450
    assert fit_pm_accuracy(n, d, acc, n_boot=500, seed=1) == fit


def test_pm_scaling_log_base_rescales_the_slopes():
    n, d, acc = _grid()
    fit10 = fit_pm_accuracy(n, d, acc, log_base=10, n_boot=20)
    assert fit10.b == pytest.approx(0.007 * math.log(10)) and fit10.a == pytest.approx(0.72)


def test_pm_scaling_refuses_points_that_do_not_identify_the_fit():
    n = np.logspace(7, 10, 6)
    with pytest.raises(UserError, match="vary both"):
        fit_pm_accuracy(n, np.full(6, 1e4), np.linspace(0.6, 0.7, 6))
    with pytest.raises(UserError, match="vary both"):
        fit_pm_accuracy(n, n / 100, np.linspace(0.6, 0.7, 6))  # D in lock-step with N
    with pytest.raises(UserError, match="at least 4"):
        fit_pm_accuracy([1e8, 1e9, 1e8], [1e3, 1e3, 1e4], [0.6, 0.65, 0.62])
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        fit_pm_accuracy(n, np.logspace(3, 5, 6)[::-1], np.linspace(0.6, 1.2, 6))
