"""PPO, RLOO, DPO and the reward against hand-computed values; the PM score read at the real end."""

from __future__ import annotations

import math

import pytest
import torch

from scalelab.align.backbones import GPTBackbone
from scalelab.align.pm import PreferenceModel
from scalelab.align.rl.dpo import dpo_loss
from scalelab.align.rl.ppo import clipped_policy_loss, clipped_value_loss, explained_variance, gae, whiten
from scalelab.align.rl.rewards import check_same_tokenizer, pm_scores, shape_rewards
from scalelab.align.rl.rloo import leave_one_out_advantages, repeat_prompts
from scalelab.align.rl.rollout import rollout_from_ids
from scalelab.data.tokenizers import ByteTokenizer, CharTokenizer
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [1.0, 9.0, 9.0]])  # row 2: padding after one token
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 1: A2 = 1 - 0.4 = 0.6; A1 = (0.4 - 0.2) + 0.5 * 0.6 = 0.5; A0 = (0.2 - 0.5) + 0.5 * 0.5 = -0.05
    assert adv[0].tolist() == pytest.approx([-0.05, 0.5, 0.6])
    assert ret[0].tolist() == pytest.approx([0.45, 0.7, 1.0])
    # row 2: the values of padding never enter: A0 = 2 - 1
    assert adv[1].tolist() == pytest.approx([1.0, 0.0, 0.0]) and ret[1].tolist() == pytest.approx([2.0, 0.0, 0.0])
    adv2, _ = gae(rewards, values, mask, gamma=0.5, lam=1.0)  # A1 = 0 + 0.5 * 0.4 - 0.2 + 0.5 * (1 - 0.4)
    assert float(adv2[0, 1]) == pytest.approx(0.3)


def test_whitening_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)  # mean 2, population variance 2/3, padding ignored and zeroed
    s = math.sqrt(1.5)
    assert w[0].tolist() == pytest.approx([-s, 0.0, s, 0.0], abs=1e-6)


def test_clipped_policy_loss_by_hand():
    ratio = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, info = clipped_policy_loss(ratio.log(), torch.zeros(1, 4), adv, mask, clip=0.2)
    # max(-A r, -A clip(r)): -1.2 (clipped), 1.5, -0.5, 0.8 (clipped)
    assert float(loss) == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)
    assert info["clip_frac"] == pytest.approx(0.5)
    k3 = [(r - 1) - math.log(r) for r in (1.5, 1.5, 0.5, 0.5)]
    assert info["approx_kl"] == pytest.approx(sum(k3) / 4)
    # gradient pushes the probability of a positive-advantage token up while unclipped
    logp = torch.zeros(1, 1, requires_grad=True)
    clipped_policy_loss(logp, torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1))[0].backward()
    assert float(logp.grad) < 0


def test_value_loss_and_explained_variance():
    v, old, ret = torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]])
    # V_clipped = 0.5 + 0.2 = 0.7: 0.5 max(1.0, 1.69)
    assert float(clipped_value_loss(v, old, ret, torch.ones(1, 1), clip=0.2)) == pytest.approx(0.845)
    g = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    m = torch.ones(1, 4)
    assert explained_variance(g, g, m) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(1, 4), g, m) == pytest.approx(0.0)


def test_rloo_leave_one_out_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    assert leave_one_out_advantages(r, 3).tolist() == pytest.approx([-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])
    assert repeat_prompts([[1], [2]], 2) == [[1], [1], [2], [2]]
    with pytest.raises(ValueError):
        leave_one_out_advantages(r, 4)


def test_dpo_loss_sign_and_value():
    c, r, rc, rr = (torch.tensor([v]) for v in (-1.0, -2.0, -1.5, -1.5))
    loss, stats = dpo_loss(c, r, rc, rr, beta=0.5)  # margin (0.5) - (-0.5) = 1: -log sigmoid(0.5)
    assert float(loss) == pytest.approx(math.log1p(math.exp(-0.5)))
    assert stats["dpo_accuracy"] == 1.0
    logp_c = torch.tensor([-1.0], requires_grad=True)
    logp_r = torch.tensor([-2.0], requires_grad=True)
    dpo_loss(logp_c, logp_r, rc, rr, beta=0.5)[0].backward()
    assert float(logp_c.grad) < 0 < float(logp_r.grad)  # raise the chosen, lower the rejected
    at_ref = dpo_loss(rc, rr, rc, rr, beta=0.1)[0]
    assert float(at_ref) == pytest.approx(math.log(2))


def tiny_pm(seed: int = 0, tokenizer=None) -> PreferenceModel:
    torch.manual_seed(seed)
    pm = PreferenceModel(GPTBackbone(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=257))),
                         tokenizer or ByteTokenizer(), "ranked")  # fmt: skip
    torch.nn.init.normal_(pm.head.weight)
    return pm.eval()


def test_reward_read_at_real_end_with_mixed_lengths():
    pm, eot = tiny_pm(), 256
    prompts = [[100, 101], [102], [103, 104, 105]]
    responses = [[65, eot], [66, 67, 68, 69, 70], [71, 72, eot]]  # ended, cut (no end), ended
    ro = rollout_from_ids(prompts, responses, eot_id=eot)
    assert ro.ended == [True, False, True] and ro.response_lengths.tolist() == [2, 5, 3]
    batch = pm_scores(pm, ro, eot)
    alone = [float(pm.reward([p], [[t for t in r if t != eot]])[0]) for p, r in zip(prompts, responses)]
    assert batch.tolist() == pytest.approx(alone, abs=1e-5)  # padding of the batch never reaches the score
    # the score is read at the end token appended right after the response, not at a padded position
    padded = float(pm.reward([prompts[0]], [[65, 0, 0, 0]])[0])
    assert padded != pytest.approx(alone[0], abs=1e-4)
    kl = torch.full((3, 5), 0.1) * ro.response_mask
    rew = shape_rewards(batch, kl, ro.response_mask.float(), ro.ended, lambda_kl=0.5, no_end_penalty=-1.0)
    for b, n in enumerate([2, 5, 3]):
        expect = [-0.05] * n + [0.0] * (5 - n)
        expect[n - 1] += float(batch[b]) + (0.0 if ro.ended[b] else -1.0)
        assert rew.tokens[b].tolist() == pytest.approx(expect, abs=1e-5)
    assert rew.kl.tolist() == pytest.approx([0.2, 0.5, 0.3])
    assert rew.sequence.tolist() == pytest.approx([float(batch[0]) - 0.1, float(batch[1]) - 1 - 0.25,
                                                   float(batch[2]) - 0.15], abs=1e-5)  # fmt: skip


def test_pm_with_another_tokenizer_is_refused():
    char = CharTokenizer("abc")
    with pytest.raises(UserError, match="tokenizer"):
        check_same_tokenizer(ByteTokenizer(), char, "pm 'x'")
    check_same_tokenizer(ByteTokenizer(), ByteTokenizer(), "pm 'x'")
