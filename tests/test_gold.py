"""Gold rewards and the noisy Bradley-Terry labeller on hand-written cases."""

import math

import pytest

from scalelab.align.gold import (
    GOLD_REWARDS,
    SPACING_BEST,
    SPACING_WIDTH,
    balanced_score,
    bump,
    gold_reward,
    keywords_score,
    label_pairs,
    parses_score,
    preference_probability,
    spacing_score,
    whitespace_share,
)
from scalelab.errors import UserError

HEAD = "def f(x):\n    "


def test_balanced_counts_brackets_left_open_and_mismatches():
    assert balanced_score(HEAD, "return g(x)\n") == 1.0
    assert balanced_score(HEAD, "return g(x, [1") == pytest.approx(1 / 3)
    assert balanced_score(HEAD, "return g(x]") == 0.0
    assert balanced_score(HEAD, "return x)") == 0.0  # a closer with nothing open
    assert balanced_score(HEAD, "s = '(' # [\n") == 1.0  # brackets in strings and comments do not count
    # the prompt's open bracket may be closed by the response, and is not the response's fault
    assert balanced_score("y = f(a,\n", " b)") == 1.0
    assert balanced_score("y = f(a,\n", " b") == 1.0


def test_parses_checks_complete_lines_as_a_valid_prefix():
    assert parses_score(HEAD, "y = x + 1\n    return y\n") == 1.0
    assert parses_score(HEAD, "y = foo(a,\n        b)\n") == 1.0  # an open bracket across lines is fine
    assert parses_score(HEAD, "if x:\n        ret") == 1.0  # the unfinished last line does not count
    assert parses_score(HEAD, "x = = 3\n    return x\n") == 0.0  # later lines cannot repair an error
    assert parses_score(HEAD, "y = 1\n    y = = 2\n") == 0.5
    assert parses_score(HEAD, "return x") == 0.0  # no complete line: silence is not rewarded


def test_keywords_fraction_outside_strings():
    assert keywords_score(HEAD, "return x if y else z") == pytest.approx(3 / 6)
    assert keywords_score(HEAD, "'return if else' + s") == 0.0
    assert keywords_score(HEAD, "") == 0.0


def test_whitespace_share_counts_spaces_tabs_and_newlines():
    assert whitespace_share("a b\n") == 0.5
    assert whitespace_share("\t  x") == 0.75
    assert whitespace_share("") == 0.0 and whitespace_share("abc") == 0.0


def test_spacing_has_an_interior_optimum_at_hand_computed_values():
    assert (SPACING_BEST, SPACING_WIDTH) == (0.45, 0.12)
    assert spacing_score(HEAD, " " * 9 + "x" * 11) == pytest.approx(1.0)  # share 9/20 = 0.45: the optimum
    one_width = math.exp(-0.5)  # share 0.45 +- 0.12
    assert spacing_score(HEAD, " " * 33 + "x" * 67) == pytest.approx(one_width)  # 0.33: too dense
    assert spacing_score(HEAD, " " * 57 + "x" * 43) == pytest.approx(one_width)  # 0.57: too sparse
    assert spacing_score(HEAD, " " * 32) == pytest.approx(math.exp(-0.5 * (0.55 / 0.12) ** 2))  # blanks: ~2.7e-5
    assert spacing_score(HEAD, "xyz") == pytest.approx(math.exp(-0.5 * (0.45 / 0.12) ** 2))  # no space: ~8.8e-4
    # over 40-character responses the best share is 18/40 = 0.45, and the score falls on both sides
    scores = [spacing_score(HEAD, " " * k + "x" * (40 - k)) for k in range(41)]
    assert scores.index(max(scores)) == 18
    assert all(a < b for a, b in zip(scores[:18], scores[1:19]))
    assert all(a > b for a, b in zip(scores[18:], scores[19:]))
    assert bump(0.2, 0.2, 1.0) == 1.0 and bump(1.0, 0.0, 1.0) == pytest.approx(math.exp(-0.5))


def test_gold_reward_batched_and_unknown_name():
    fn = gold_reward("balanced")
    assert fn([HEAD, HEAD], ["f(x)", "f(x"]) == [1.0, 0.5]
    assert set(GOLD_REWARDS) >= {"balanced", "parses", "keywords", "spacing"}
    with pytest.raises(UserError, match="balanced"):
        gold_reward("nope")
    with pytest.raises(ValueError):
        fn([HEAD], ["a", "b"])


def test_bradley_terry_probability():
    assert preference_probability(1.0, 0.0, 1.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert preference_probability(0.0, 1.0, 0.5) == pytest.approx(1 / (1 + math.exp(2)))
    assert preference_probability(0.3, 0.3, 0.1) == 0.5
    assert preference_probability(0.2, 0.1, 0.0) == 1.0 and preference_probability(0.1, 0.2, 0.0) == 0.0
    assert preference_probability(1000.0, 0.0, 1e-3) == 1.0  # no overflow


def test_noiseless_labeller_prefers_the_higher_gold_score_and_drops_ties_and_duplicates():
    prompts = [HEAD] * 4
    a = ["f(x)", "f(x", "g(x)", "same"]
    b = ["f(x", "f(x)", "h(y)", "same"]
    pairs, stats = label_pairs(prompts, a, b, "balanced", temperature=0.0)
    assert [(c.chosen, c.rejected) for c in pairs] == [("f(x)", "f(x"), ("f(x)", "f(x")]
    assert stats.ties == 1 and stats.identical == 1 and stats.kept == 2 and stats.agree == 2
    assert pairs[0].meta["gold_chosen"] == 1.0 and pairs[0].meta["gold_rejected"] == 0.5
    assert pairs[0].source == "gold:balanced"
    kept, stats = label_pairs(prompts, a, b, "balanced", temperature=0.0, drop_ties=False)
    assert stats.kept == 3  # the tie is labelled by a coin flip
    _, stats = label_pairs([HEAD] * 2, ["f(x)", "f(x)"], ["", "\n   "], "balanced", temperature=0.0)
    assert stats.empty == 1 and stats.ties == 1  # an empty response gives no comparison, a blank one is scored
    kept, stats = label_pairs([HEAD] * 2, ["f(x)", "f(x)"], ["", "\n   "], "spacing", temperature=0.0)
    assert stats.empty == 1 and [(c.chosen, c.rejected) for c in kept] == [("f(x)", "\n   ")]


def test_noisy_labeller_agrees_with_gold_at_the_bradley_terry_rate_and_is_seeded():
    n = 4000
    prompts, a, b = [HEAD] * n, ["f(x)"] * n, ["f(x"] * n  # gold 1.0 vs 0.5
    pairs, stats = label_pairs(prompts, a, b, "balanced", temperature=0.5, seed=3)
    expected = 1 / (1 + math.exp(-1.0))  # sigmoid(0.5 / 0.5)
    assert abs(stats.agree / stats.kept - expected) < 0.03
    again, _ = label_pairs(prompts, a, b, "balanced", temperature=0.5, seed=3)
    assert [c.chosen for c in again] == [c.chosen for c in pairs]
    with pytest.raises(UserError, match="temperature"):
        label_pairs(prompts[:1], a[:1], b[:1], "balanced", temperature=-1.0)
