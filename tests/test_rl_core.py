"""The RL library's pieces against hand-computed values: KL estimators, controller, best-of-N, fits, rollouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scalelab.align.rl.best_of_n import best_of_n_kl, best_of_n_select, best_of_n_subsets
from scalelab.align.rl.config import RLRunSpec
from scalelab.align.rl.fits import gold_curve_fit, sqrt_kl_fit
from scalelab.align.rl.kl import AdaptiveKLController, kl_k1, kl_k3
from scalelab.align.rl.rollout import PAD_ID, policy_logprobs, sample_responses
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_gpt(vocab: int = 7, block: int = 32, seed: int = 0, recipe: str = "gpt2") -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(recipe=recipe, n_layer=1, n_head=2, n_embd=16, block_size=block, vocab_size=vocab,
                    bias=recipe == "gpt2", tie_embeddings=recipe == "gpt2")  # fmt: skip
    model = GPT(cfg)
    if recipe == "modern":  # zero-initialised projections would make every position alike
        for p in model.parameters():
            torch.nn.init.normal_(p, 0.0, 0.3)
    return model.eval()


# ----------------------------------------------------------------------------- KL


def test_k1_k3_by_hand():
    logp = torch.tensor([math.log(0.5), math.log(0.2)])
    ref = torch.tensor([math.log(0.25), math.log(0.4)])
    assert kl_k1(logp, ref).tolist() == pytest.approx([math.log(2), math.log(0.5)])
    # k3 = (r - 1) - log r, r = p_ref / p: r = 0.5 -> 0.5 - 1 + log 2; r = 2 -> 1 - log 2
    assert kl_k3(logp, ref).tolist() == pytest.approx([-0.5 + math.log(2), 1 - math.log(2)])
    assert (kl_k3(torch.randn(100), torch.randn(100)) >= 0).all()


def test_k1_k3_unbiased_for_true_kl():
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.4, 0.4, 0.2])
    true_kl = float((p * (p / q).log()).sum())
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[x], q.log()[x]
    assert float(kl_k1(logp, logq).mean()) == pytest.approx(true_kl, abs=0.01)
    assert float(kl_k3(logp, logq).mean()) == pytest.approx(true_kl, abs=0.01)


def test_adaptive_kl_controller():
    c = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert c.update(12.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    c2 = AdaptiveKLController(0.1, target=6.0, horizon=100)
    assert c2.update(5.4, 50) == pytest.approx(0.1 * (1 - 0.1 * 0.5))
    c3 = AdaptiveKLController(1.0, 1.0)
    c3.load_state_dict(c.state_dict())
    assert c3.state_dict() == c.state_dict()


# ----------------------------------------------------------------------------- best-of-N


def test_best_of_n_kl_formula():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    with pytest.raises(ValueError):
        best_of_n_kl(0)


def test_best_of_n_kl_matches_exact_discrete_kl():
    """For a continuous reward (no ties) the formula is exact: check on 1000 equiprobable outcomes."""
    m, n = 1000, 4
    ranks = np.arange(1, m + 1) / m  # P(best-of-n = k-th lowest) = (k/m)^n - ((k-1)/m)^n
    q = ranks**n - (ranks - 1 / m) ** n
    kl = float((q * np.log(q * m)).sum())
    assert kl == pytest.approx(best_of_n_kl(n), abs=0.01)


def test_best_of_n_select():
    r = torch.tensor([[0.1, 0.9, 0.5], [2.0, 1.0, 3.0]])
    assert best_of_n_select(r).tolist() == [1, 2]
    assert best_of_n_subsets(r, 2).tolist() == [1, 0]


# ----------------------------------------------------------------------------- fits


def test_sqrt_kl_fit_recovers_line():
    kl = np.array([0.0, 1.0, 4.0, 9.0, 16.0, 25.0])
    reward = 0.5 + 2.0 * np.sqrt(kl)
    fit = sqrt_kl_fit(kl, reward, n_boot=200)
    assert fit["a"] == pytest.approx(0.5) and fit["b"] == pytest.approx(2.0) and fit["r2"] == pytest.approx(1.0)
    assert fit["n"] == 6 and fit["ci"]["b"][0] == pytest.approx(2.0) and fit["ci"]["b"][1] == pytest.approx(2.0)
    noisy = reward + np.random.default_rng(0).normal(0, 0.3, kl.size)
    f2 = sqrt_kl_fit(kl, noisy, n_boot=300, seed=1)
    assert f2["ci"]["b"][0] < f2["b"] < f2["ci"]["b"][1] and f2["r2"] < 1
    assert sqrt_kl_fit([1.0, 2.0], [0.0, 1.0])["b"] is None  # too few points: None, not an error


def test_gold_curve_fit_peak_and_no_peak():
    d = np.linspace(0.5, 4, 8)
    gold = d * (1.0 - 0.25 * d)  # peak at d* = 2, KL* = 4, R* = 1
    fit = gold_curve_fit(d**2, gold, n_boot=100)
    assert fit["alpha"] == pytest.approx(1.0) and fit["beta"] == pytest.approx(0.25)
    assert fit["peak_kl"] == pytest.approx(4.0) and fit["peak_reward"] == pytest.approx(1.0)
    assert fit["peak_in_range"] is True and fit["ci"]["peak_kl"][0] == pytest.approx(4.0)
    rising = gold_curve_fit(d**2, d * (1.0 + 0.1 * d), n_boot=50)
    assert rising["beta"] < 0 and rising["peak_kl"] is None and "no peak" in rising["note"]


# ----------------------------------------------------------------------------- rollouts


def test_rollout_mixed_lengths_stop_at_end_token():
    model = tiny_gpt(vocab=5)  # eot = 4: with 5 tokens an end comes quickly
    prompts = [[1], [2, 3, 1, 0], [0, 1]]
    ro = sample_responses(model, prompts, max_new_tokens=12, temperature=1.0, eot_id=4,
                          generator=torch.Generator().manual_seed(3))  # fmt: skip
    assert ro.prompt_ids == prompts and len(ro) == 3
    for b, resp in enumerate(ro.response_ids):
        assert 1 <= len(resp) <= 12
        assert (4 in resp) == ro.ended[b]
        if ro.ended[b]:
            assert resp.index(4) == len(resp) - 1  # stops at its FIRST end token, which is kept
        L = len(prompts[b])
        row = ro.tokens[b].tolist()
        assert row[:L] == prompts[b] and row[L : L + len(resp)] == resp
        assert all(t == PAD_ID for t in row[L + len(resp) :])
        assert ro.response_mask[b].sum() == len(resp)
        assert ro.response_tokens[b, : len(resp)].tolist() == resp
        assert (ro.logprobs[b, len(resp) :] == 0).all() and (ro.logprobs[b, : len(resp)] < 0).all()
    assert any(ro.ended) and ro.response_lengths.tolist() == [len(r) for r in ro.response_ids]


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_rollout_logprobs_equal_full_forward_and_no_cache(recipe):
    """Left-padded sampling through the cache equals one full forward, and sampling without the cache."""
    model = tiny_gpt(recipe=recipe)
    prompts = [[1, 2, 3, 4, 5], [2], [3, 3, 1]]
    kw = dict(max_new_tokens=10, temperature=0.8, eot_id=6)
    a = sample_responses(model, prompts, generator=torch.Generator().manual_seed(1), **kw)
    b = sample_responses(model, prompts, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    assert a.response_ids == b.response_ids
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)
    with torch.no_grad():
        logp, entropy, _ = policy_logprobs(model, a)
    torch.testing.assert_close(logp * a.response_mask, a.logprobs, atol=1e-5, rtol=0)
    assert (entropy[a.response_mask] > 0).all()


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_batched_greedy_equals_one_prompt_at_a_time(recipe):
    model = tiny_gpt(seed=2, recipe=recipe)
    prompts = [[1, 2, 3, 4, 5, 1], [2], [3, 3, 1]]
    batch = sample_responses(model, prompts, max_new_tokens=8, temperature=0, eot_id=6)
    for p, resp in zip(prompts, batch.response_ids):
        alone = sample_responses(model, [p], max_new_tokens=8, temperature=0, eot_id=6)
        assert alone.response_ids[0] == resp


def test_rollout_bad_inputs():
    model = tiny_gpt(block=16)
    with pytest.raises(UserError, match="context"):
        sample_responses(model, [[1] * 10], max_new_tokens=8, eot_id=6)
    with pytest.raises(UserError, match="empty prompt"):
        sample_responses(model, [[1], []], max_new_tokens=4, eot_id=6)


# ----------------------------------------------------------------------------- config


def test_spec_validation_and_hash():
    s = RLRunSpec(policy="p", pm="q")
    assert s.lambda_kl == 0.001 and s.gamma == 1.0 and s.lam == 0.95 and s.clip == 0.2 and s.algo == "ppo"
    assert s.config_hash() == RLRunSpec(policy="p", pm="q", name="other", threads=1).config_hash()
    assert s.config_hash() != RLRunSpec(policy="p", pm="q", lambda_kl=0.01).config_hash()
    with pytest.raises(UserError, match="preference model"):
        RLRunSpec.from_dict({"policy": "p"})
    with pytest.raises(UserError, match="rloo_k"):
        RLRunSpec.from_dict({"policy": "p", "pm": "q", "algo": "rloo", "rloo_k": 3, "batch_size": 8})
    with pytest.raises(UserError, match="lamda"):
        RLRunSpec.from_dict({"policy": "p", "pm": "q", "lamda": 0.9})
    assert RLRunSpec(policy="p", reward="gold", gold="parses").pm is None


def test_prompts_builtin_files_and_split(tmp_path):
    from scalelab.align.rl.prompts import builtin_prompts, read_prompt_file, split_prompts

    b = builtin_prompts(8)
    assert len(b) == 8 and b == builtin_prompts(8) and all(p.startswith("def ") and p.endswith(":\n    ") for p in b)
    (tmp_path / "p.jsonl").write_text('{"q": "a"}\n{"q": "b"}\n')
    assert read_prompt_file(tmp_path / "p.jsonl", field="q") == ["a", "b"]
    with pytest.raises(UserError, match="no string field 'prompt'"):
        read_prompt_file(tmp_path / "p.jsonl")
    (tmp_path / "p.txt").write_text("x\n\ny\nz\nw\n")
    train, held = split_prompts(read_prompt_file(tmp_path / "p.txt"), 2)
    assert len(held) == 2 and sorted(train + held) == ["w", "x", "y", "z"]
    assert split_prompts(["only"], 4) == (["only"], ["only"])
