"""PPO for language models (Schulman et al. 2017; Ziegler et al. 2019; Bai et al. 2022, section 4).

One rollout of B responses gives, per response token (all tensors (B, R), response-aligned):
old log-probs, values, token rewards (rewards.py). Then

1. GAE (Schulman et al. 2016, eq. 16): delta_t = r_t + gamma V_{t+1} - V_t,
   A_t = delta_t + gamma lambda A_{t+1}; returns = A + V. Beyond the end V = 0, A = 0.
2. Whiten the advantages over the real tokens of the batch (mean 0, variance 1).
3. For `epochs` passes over `minibatches` shuffled minibatches: the clipped surrogate
   L = max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)), ratio = exp(logp - logp_old), plus
   `vf_coef` times the clipped value loss 0.5 max((V - G)^2, (V_old + clip(V - V_old, +-c) - G)^2);
   the global gradient norm clipped; no entropy bonus (Bai et al. 2022).

The value function is a scalar head on the policy trunk's final hidden state, or a separate critic
(a copy of the initial policy with its own head), by config.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from scalelab.align.rl.rollout import Rollout, policy_logprobs
from scalelab.model.gpt import GPT


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (population variance); 0 on padding."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Generalised advantage estimation over (B, R) response-aligned tensors -> (advantages, returns)."""
    mask = mask.to(values.dtype)
    B, R = rewards.shape
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(next_adv)
    for t in reversed(range(R)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = a * mask[:, t]
        next_adv = adv[:, t]
        next_value = values[:, t] * mask[:, t]
    return adv, (adv + values) * mask


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                        clip: float = 0.2) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """PPO's clipped surrogate (to minimise), with clip fraction and approx-KL (k3 of old vs new)."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(ratio - 1 - log_ratio, mask)
    return loss, {"clip_frac": float(clip_frac), "approx_kl": float(approx_kl)}


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.2) -> torch.Tensor:  # fmt: skip
    """0.5 * max((V - G)^2, (V_clipped - G)^2), V_clipped = V_old + clip(V - V_old, -c, c)."""
    v_clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(G - V) / Var(G) over the real tokens (1: perfect value function; <= 0: useless)."""
    var_g = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    diff = returns - values
    var_d = masked_mean((diff - masked_mean(diff, mask)) ** 2, mask)
    return float("nan") if float(var_g) == 0 else float(1 - var_d / var_g)


class ValueFunction(nn.Module):
    """V(state before response token j): a head on the policy's hidden state, or a separate critic."""

    def __init__(self, policy: GPT, kind: str = "head"):
        super().__init__()
        self.kind = kind
        self.critic = copy.deepcopy(policy) if kind == "critic" else None
        self.head = nn.Linear(policy.cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, rollout: Rollout, policy_hidden: torch.Tensor | None) -> torch.Tensor:
        """(B, R) values; `policy_hidden` (B, R, C) is used by the head kind."""
        if self.critic is not None:
            _, _, policy_hidden = policy_logprobs(self.critic, rollout, hidden=True)
        return self.head(policy_hidden).squeeze(-1)


def evaluate(policy: GPT, value_fn: ValueFunction, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logp, entropy, values), each (B, R), of the current policy and value function on a rollout."""
    logp, entropy, hidden = policy_logprobs(policy, rollout, hidden=value_fn.kind == "head")
    return logp, entropy, value_fn(rollout, hidden)


def ppo_update(policy: GPT, value_fn: ValueFunction, optimizer: torch.optim.Optimizer, rollout: Rollout,
               old_logp: torch.Tensor, old_values: torch.Tensor, token_rewards: torch.Tensor, spec,
               generator: torch.Generator) -> dict:  # fmt: skip
    """One PPO iteration on a rollout (GAE, whitening, epochs x minibatches); returns mean statistics."""
    mask = rollout.response_mask.float()
    adv, returns = gae(token_rewards, old_values, mask, spec.gamma, spec.lam)
    if spec.whiten_advantages:
        adv = whiten(adv, mask)
    return clipped_epochs(policy, value_fn, optimizer, rollout, old_logp, old_values, adv, returns, spec, generator)


def clipped_epochs(policy, value_fn, optimizer, rollout, old_logp, old_values, adv, returns, spec, generator) -> dict:
    """`epochs` x `minibatches` clipped updates; `value_fn` None trains the policy alone (RLOO)."""
    B = len(rollout)
    stats: dict[str, list[float]] = {"loss": [], "clip_frac": [], "approx_kl": [], "value_loss": [], "entropy": []}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    policy.train()
    for _ in range(spec.epochs):
        order = torch.randperm(B, generator=generator).tolist()
        for k in range(spec.minibatches):
            rows = order[k * B // spec.minibatches : (k + 1) * B // spec.minibatches]
            mb = rollout.select(rows)
            idx = torch.as_tensor(rows, device=adv.device)
            m = mb.response_mask.float()
            if value_fn is not None:
                logp, entropy, values = evaluate(policy, value_fn, mb)
            else:
                logp, entropy, _ = policy_logprobs(policy, mb)
            pg_loss, info = clipped_policy_loss(logp, old_logp[idx], adv[idx], m, spec.clip)
            loss = pg_loss
            if value_fn is not None:
                v_loss = clipped_value_loss(values, old_values[idx], returns[idx], m, spec.vf_clip)
                loss = loss + spec.vf_coef * v_loss
                stats["value_loss"].append(float(v_loss.detach()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
            optimizer.step()
            stats["loss"].append(float(loss.detach()))
            stats["entropy"].append(float(masked_mean(entropy.detach(), m)))
            for key, v in info.items():
                stats[key].append(v)
    out = {k: sum(v) / len(v) for k, v in stats.items() if v}
    if value_fn is not None:
        out["explained_var"] = explained_variance(old_values, returns, rollout.response_mask.float())
    return out
