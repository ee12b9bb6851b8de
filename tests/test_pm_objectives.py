"""The three PM objectives of Askell et al. 2021 against hand-computed values, and their gradient signs."""

from __future__ import annotations

import math

import pytest
import torch

from scalelab.align.objectives import binary_loss, imitation_loss, ranked_loss, response_logprobs


def test_ranked_loss_matches_log_one_plus_exp_by_hand():
    good, bad = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.0, -0.5, 0.5])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(0.5)) + math.log(2.0)) / 3
    assert ranked_loss(good, bad).item() == pytest.approx(expected, rel=1e-6)
    # swapping the roles is a different loss: the sign convention matters
    assert ranked_loss(bad, good).item() != pytest.approx(expected, rel=1e-3)


def test_ranked_gradient_raises_the_good_score_and_lowers_the_bad():
    good = torch.tensor([0.3], requires_grad=True)
    bad = torch.tensor([0.7], requires_grad=True)
    ranked_loss(good, bad).backward()
    p_bad_wins = 1 / (1 + math.exp(-(0.7 - 0.3)))  # d/d r_good of softplus(r_bad - r_good) = -sigmoid(...)
    assert good.grad.item() == pytest.approx(-p_bad_wins, rel=1e-6)
    assert bad.grad.item() == pytest.approx(p_bad_wins, rel=1e-6)


def test_binary_loss_is_bce_on_each_sample_by_hand():
    scores, labels = torch.tensor([1.5, -0.5, 2.0]), torch.tensor([1.0, 1.0, 0.0])

    def sig(x):
        return 1 / (1 + math.exp(-x))

    expected = -(math.log(sig(1.5)) + math.log(sig(-0.5)) + math.log(1 - sig(2.0))) / 3
    assert binary_loss(scores, labels).item() == pytest.approx(expected, rel=1e-6)


def test_binary_gradient_pushes_good_up_and_bad_down():
    scores = torch.tensor([0.0, 0.0], requires_grad=True)
    binary_loss(scores, torch.tensor([1.0, 0.0])).backward()
    assert scores.grad[0].item() == pytest.approx(-0.25)  # (sigmoid(0) - 1) / 2
    assert scores.grad[1].item() == pytest.approx(0.25)


def test_imitation_loss_counts_response_tokens_only():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 5)
    targets = torch.tensor([[-1, 2, 4, -1]])  # positions 1 and 2 predict response tokens
    logp = torch.log_softmax(logits, dim=-1)
    expected = -(logp[0, 1, 2] + logp[0, 2, 4]).item() / 2
    assert imitation_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert response_logprobs(logits, targets).item() == pytest.approx(-2 * expected, rel=1e-6)


def test_imitation_gradient_raises_the_good_responses_probability():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    imitation_loss(logits, torch.tensor([[1, -1]])).backward()
    assert logits.grad[0, 0, 1] < 0 < logits.grad[0, 0, 0]  # descending raises the target's logit
    assert torch.all(logits.grad[0, 1] == 0)  # an ignored position gets no gradient
