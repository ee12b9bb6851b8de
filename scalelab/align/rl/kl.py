"""KL(policy || reference) per token, and the adaptive KL coefficient.

Per sampled token with log-ratio log r = logp_ref - logp (Schulman 2020, "Approximating KL
divergence", http://joschu.net/blog/kl-approx.html):

- k1 = -log r = logp - logp_ref: unbiased, high variance, can be negative on a single sample;
- k3 = (r - 1) - log r: unbiased, always >= 0, lower variance.

Summed over a response, the k1 estimate is the sequence-level KL that Bai et al. 2022 penalise with
lambda_KL = 0.001 and that their reward-vs-sqrt(KL) plots use.
"""

from __future__ import annotations

import torch


def kl_k1(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token k1 estimate logp - logp_ref (same shape as the inputs)."""
    return logp - logp_ref


def kl_k3(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate (r - 1) - log r with r = p_ref / p: never negative."""
    log_r = logp_ref - logp
    return torch.expm1(log_r) - log_r


KL_ESTIMATORS = {"k1": kl_k1, "k3": kl_k3}


class AdaptiveKLController:
    """Ziegler et al. 2019 (arXiv 1909.08593, section 2.2): steer the KL coefficient towards a target.

    beta <- beta * (1 + K_beta * e), e = clip(KL / target - 1, -0.2, 0.2), K_beta = n_steps / horizon.
    """

    def __init__(self, init: float, target: float, horizon: int = 10000):
        self.value, self.target, self.horizon = float(init), float(target), int(horizon)

    def update(self, kl: float, n_steps: int) -> float:
        """Update after `n_steps` samples whose mean KL was `kl`; returns the new coefficient."""
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.target, self.horizon = float(state["value"]), float(state["target"]), int(state["horizon"])


class FixedKLController(AdaptiveKLController):
    """A constant coefficient with the same interface."""

    def __init__(self, value: float):
        super().__init__(value, 1.0)

    def update(self, kl: float, n_steps: int) -> float:
        return self.value
