"""DPO: direct preference optimisation on the PM's comparisons (Rafailov et al. 2023, arXiv 2305.18290, eq. 7).

    L = -log sigmoid( beta [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )

with y_w the chosen and y_l the rejected response, log-probabilities summed over the response
tokens (and its end token). No reward model and no sampling: the baseline that trains on the
same comparisons the PM was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scalelab.align.rl.rollout import Rollout, policy_logprobs
from scalelab.model.gpt import GPT


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """Mean DPO loss over pairs (each input (N,), summed response log-probs) and its statistics."""
    margin = (logp_chosen - ref_chosen) - (logp_rejected - ref_rejected)  # (N,)
    loss = -F.logsigmoid(beta * margin).mean()
    with torch.no_grad():
        stats = {"dpo_margin": float(beta * margin.mean()), "dpo_accuracy": float((margin > 0).float().mean())}
    return loss, stats


def sequence_logprobs(model: GPT, batch: Rollout) -> torch.Tensor:
    """(N,) log-probability of each given response (temperature 1), summed over its tokens."""
    logp, _, _ = policy_logprobs(model, batch, temperature=1.0)
    return (logp * batch.response_mask).sum(dim=1)


def dpo_step(policy: GPT, optimizer: torch.optim.Optimizer, chosen: Rollout, rejected: Rollout,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, spec) -> dict:  # fmt: skip
    """One DPO optimizer step on a batch of pairs; ref log-probs precomputed with the frozen reference."""
    policy.train()
    loss, stats = dpo_loss(sequence_logprobs(policy, chosen), sequence_logprobs(policy, rejected), ref_chosen,
                           ref_rejected, spec.dpo_beta)  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], spec.max_grad_norm)
    optimizer.step()
    return {"loss": float(loss.detach()), **stats}
