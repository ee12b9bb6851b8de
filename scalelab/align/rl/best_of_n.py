"""Best-of-N (rejection) sampling: draw N responses, keep the one the reward ranks highest.

Its KL from the sampling policy is analytic (Stiennon et al. 2020, appendix; Bai et al. 2022,
section 4.3; Gao et al. 2022, eq. 1): KL_bon = log N - (N - 1) / N, so best-of-N is a baseline
placed on the same reward-vs-sqrt(KL) axes as RL with no training at all.
"""

from __future__ import annotations

import math

import torch


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || policy) = log n - (n - 1) / n, in nats; 0 for n = 1."""
    if n < 1:
        raise ValueError(f"best-of-N needs N >= 1, got {n}")
    return math.log(n) - (n - 1) / n


def best_of_n_select(rewards: torch.Tensor) -> torch.Tensor:
    """rewards (P, N): N scored samples per prompt -> (P,) index of the best sample (first on ties)."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, N), got shape {tuple(rewards.shape)}")
    return rewards.argmax(dim=1)


def best_of_n_subsets(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """rewards (P, M) of M >= n samples per prompt -> (P,) index of the best among the first n.

    Drawing M samples once and taking prefixes gives every N in a list from one rollout.
    """
    if n > rewards.size(1):
        raise ValueError(f"best-of-{n} needs {n} samples per prompt, have {rewards.size(1)}")
    return best_of_n_select(rewards[:, :n])
