"""Rows that share a prompt (RLOO's k samples): one prefill per distinct prompt, one shared prefix in training.

Both must equal the rows' separate computations: sampling each prompt alone, and a full forward per row
(log-probs, entropies, hidden states and gradients).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scalelab.align.rl.rollout import _response_forward, policy_logprobs, rollout_from_ids, sample_responses
from scalelab.model.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [2], [3, 3, 1], [2], [3, 3, 1]]


def tiny_gpt(recipe: str, block: int = 32) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(recipe=recipe, n_layer=2, n_head=2, n_embd=16, block_size=block, vocab_size=7,
                    bias=recipe == "gpt2", tie_embeddings=recipe == "gpt2")  # fmt: skip
    model = GPT(cfg)
    with torch.no_grad():  # the modern recipe's zero-initialised projections would make every position alike
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def _unshared(ro):
    """The same rollout with every row its own group: policy_logprobs takes the one-full-forward path."""
    return dataclasses.replace(ro, group=torch.arange(len(ro)))


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_shared_prefill_equals_each_prompt_alone(recipe):
    model = tiny_gpt(recipe)
    batch = sample_responses(model, PROMPTS, max_new_tokens=6, temperature=0, eot_id=6)
    assert batch.group.tolist() == [0, 0, 1, 2, 1, 2]
    for p, resp in zip(PROMPTS, batch.response_ids):
        assert sample_responses(model, [p], max_new_tokens=6, temperature=0, eot_id=6).response_ids[0] == resp
    kw = dict(max_new_tokens=8, temperature=0.9, eot_id=6)
    a = sample_responses(model, PROMPTS, generator=torch.Generator().manual_seed(4), **kw)
    b = sample_responses(model, PROMPTS, generator=torch.Generator().manual_seed(4), use_cache=False, **kw)
    assert a.response_ids == b.response_ids
    torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_shared_prefix_logprobs_and_gradients_equal_full_forward(recipe):
    model = tiny_gpt(recipe)
    ro = sample_responses(model, PROMPTS, max_new_tokens=8, temperature=1.0, eot_id=6,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    with torch.no_grad():
        assert _response_forward(model, ro) is not None and _response_forward(model, _unshared(ro)) is None
    model.train()
    results = []
    for r in (ro, _unshared(ro)):
        model.zero_grad()
        logp, entropy, h = policy_logprobs(model, r, hidden=True)
        ((logp * r.response_mask).sum() + (h * r.response_mask[..., None]).sum()).backward()
        results.append((logp, entropy, h, [p.grad.clone() for p in model.parameters()]))
    (lp_s, ent_s, h_s, g_s), (lp_f, ent_f, h_f, g_f) = results
    m = ro.response_mask
    torch.testing.assert_close(lp_s * m, lp_f * m, atol=1e-5, rtol=0)
    torch.testing.assert_close(lp_s * m, ro.logprobs, atol=1e-5, rtol=0)  # the sampled log-probs, too
    torch.testing.assert_close(ent_s * m, ent_f * m, atol=1e-5, rtol=0)
    torch.testing.assert_close(h_s * m[..., None], h_f * m[..., None], atol=1e-5, rtol=0)
    for a, b in zip(g_s, g_f):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_select_regroups_and_long_rows_fall_back():
    model = tiny_gpt("gpt2", block=12)
    ro = sample_responses(model, PROMPTS, max_new_tokens=6, temperature=1.0, eot_id=6,
                          generator=torch.Generator().manual_seed(2))  # fmt: skip
    sub = ro.select([5, 0, 3, 1])
    assert sub.group.tolist() == [1, 0, 1, 0] and sub.prompt_lens.tolist() == [3, 5, 3, 5]
    with torch.no_grad():
        full = policy_logprobs(model, ro)[0]
        torch.testing.assert_close(policy_logprobs(model, sub)[0], full[[5, 0, 3, 1]], atol=1e-5, rtol=0)
        # shared prefix + longest response would not fit the context: one full forward instead, same numbers
        long = rollout_from_ids([[1] * 9, [1] * 9, [2]], [[3], [4], [5] * 10], eot_id=6)
        assert _response_forward(model, long) is None
        alone = [policy_logprobs(model, rollout_from_ids([p], [r], eot_id=6))[0][0]
                 for p, r in zip(long.prompt_ids, long.response_ids)]  # fmt: skip
        got = policy_logprobs(model, long)[0]
        for b, row in enumerate(alone):
            torch.testing.assert_close(got[b, : len(row)], row, atol=1e-5, rtol=0)
