"""The RLHF reward: the PM score at the real end of each response, a no-end penalty, minus lambda_KL * KL.

Bai et al. 2022 (arXiv 2204.05862, eq. 4.1): r = r_PM - lambda_KL D_KL(policy || policy_0).
Following Ziegler et al. 2019 the KL is paid per token and the sequence score arrives at the last
real token of the response, so that GAE credits it to the whole response:

    token_rewards[b, t] = -lambda_KL * kl[b, t]                                   (t < len_b)
    token_rewards[b, len_b - 1] += score_b + no_end_penalty * (response b has no end token)

The score is read at the real end: the PM scores each (prompt, response) with the response cut at
its own end token (the padding of the batch never reaches the PM), as ``PreferenceModel.reward``
appends its end-of-context token right after the response. A text-level `RewardFn` (prompts,
responses) -> floats scores the decoded texts: the gold rewards of the over-optimisation study.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from scalelab.align.rl.kl import KL_ESTIMATORS
from scalelab.align.rl.rollout import Rollout
from scalelab.errors import UserError

RewardFn = Callable[[list[str], list[str]], list[float]]


def check_same_tokenizer(policy_tokenizer, pm_tokenizer, pm_name: str) -> None:
    """A PM must read the policy's token ids as the same text: same tokenizer kind and vocabulary."""
    a, b = policy_tokenizer.spec(), pm_tokenizer.spec()
    if a != b or policy_tokenizer.eot_id != pm_tokenizer.eot_id:
        raise UserError(
            f"the PM {pm_name} uses a {pm_tokenizer.kind} tokenizer of {pm_tokenizer.vocab_size} tokens, the policy a "
            f"{policy_tokenizer.kind} tokenizer of {policy_tokenizer.vocab_size}: the PM would read other text than "
            "the policy wrote; train the PM on the policy's tokenizer (pm train --base POLICY_RUN)"
        )


def strip_end(response_ids: list[int], eot_id: int) -> list[int]:
    """The response without its end token (the PM appends its own end-of-context token)."""
    return response_ids[:-1] if response_ids and response_ids[-1] == eot_id else response_ids


def pm_scores(pm, rollout: Rollout, eot_id: int, batch_size: int = 64) -> torch.Tensor:
    """(B,) PM score of each response read at its real end (never at padding)."""
    responses = [strip_end(r, eot_id) for r in rollout.response_ids]
    return pm.reward(rollout.prompt_ids, responses, batch_size=batch_size).float()


def text_scores(fn: RewardFn, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """(B,) scores of a text-level reward function, checked for one finite-or-NaN float per response."""
    out = fn(list(prompts), list(responses))
    if len(out) != len(responses):
        raise UserError(f"the reward function returned {len(out)} scores for {len(responses)} responses; "
                        "it must return one float per response")  # fmt: skip
    return torch.tensor([float(v) for v in out], dtype=torch.float32)


def kl_per_token(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """(B, R) per-token KL estimate, 0 on padding."""
    return KL_ESTIMATORS[estimator](logp, logp_ref) * mask


@dataclass
class Rewards:
    """Per-sequence and per-token rewards of one rollout."""

    scores: torch.Tensor
    """(B,) the optimised score (PM or gold), before penalties."""
    kl: torch.Tensor
    """(B,) summed per-token KL of each response (nats)."""
    sequence: torch.Tensor
    """(B,) score + no-end penalty - lambda_KL * kl: the RLOO / logged reward."""
    tokens: torch.Tensor
    """(B, R) per-token rewards for PPO (the sequence reward arrives at the last real token)."""


def shape_rewards(scores: torch.Tensor, kl_tokens: torch.Tensor, mask: torch.Tensor, ended: list[bool], *,
                  lambda_kl: float, no_end_penalty: float = 0.0) -> Rewards:  # fmt: skip
    """Combine scores (B,), per-token KL (B, R) and the no-end penalty into sequence and token rewards."""
    penalty = torch.tensor([0.0 if e else no_end_penalty for e in ended], device=scores.device)
    kl_tokens = kl_tokens * mask
    kl = kl_tokens.sum(dim=1)  # (B,)
    final = scores + penalty  # (B,)
    tokens = -lambda_kl * kl_tokens  # (B, R)
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)  # (B,) index of the last real response token
    tokens = tokens.scatter_add(1, last[:, None], final[:, None].to(tokens.dtype))
    return Rewards(scores, kl, final - lambda_kl * kl, tokens * mask)
