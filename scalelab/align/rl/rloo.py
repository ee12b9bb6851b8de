"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024, arXiv 2402.14740).

Sample k responses per prompt; each response's sequence reward R_i (score - lambda_KL KL_i, as in
rewards.py) is compared with the mean of the other k - 1 responses to the same prompt:

    A_i = R_i - (1 / (k - 1)) sum_{j != i} R_j = k / (k - 1) (R_i - mean_j R_j)

and every token of response i gets the advantage A_i. No value function. With one epoch the
clipped objective below is exactly REINFORCE (ratio = 1 at the first step); more epochs reuse the
samples with PPO's clip, as TRL's RLOO trainer does.
"""

from __future__ import annotations

import torch

from scalelab.align.rl.ppo import clipped_epochs, whiten
from scalelab.align.rl.rollout import Rollout
from scalelab.model.gpt import GPT


def leave_one_out_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """rewards (P * k,) grouped as k consecutive samples per prompt -> (P * k,) advantages R_i - mean of others."""
    if k < 2:
        raise ValueError("the leave-one-out baseline needs k >= 2 samples per prompt")
    if rewards.numel() % k:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of k = {k}")
    grouped = rewards.view(-1, k)  # (P, k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


def repeat_prompts(prompt_ids: list[list[int]], k: int) -> list[list[int]]:
    """Each prompt k times in a row: the layout `leave_one_out_advantages` expects."""
    return [p for p in prompt_ids for _ in range(k)]


def rloo_update(policy: GPT, optimizer: torch.optim.Optimizer, rollout: Rollout, old_logp: torch.Tensor,
                sequence_rewards: torch.Tensor, spec, generator: torch.Generator) -> dict:  # fmt: skip
    """One RLOO iteration: leave-one-out advantages broadcast to every response token, clipped updates."""
    mask = rollout.response_mask.float()
    adv = leave_one_out_advantages(sequence_rewards, spec.rloo_k)[:, None] * mask  # (B, R)
    if spec.whiten_advantages:
        adv = whiten(adv, mask)
    return clipped_epochs(policy, None, optimizer, rollout, old_logp, old_logp, adv, adv, spec, generator)
