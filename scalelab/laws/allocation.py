"""Compute-optimal allocation of a FLOP budget between parameters and tokens.

Hoffmann et al. 2022, Eq. 4 (Approach 3): minimising L(N, D) = E + A/N^alpha + B/D^beta subject to
C = 6 N D gives

    N_opt(C) = G (C/6)^a,   D_opt(C) = G^{-1} (C/6)^b,
    G = (alpha A / (beta B))^{1/(alpha+beta)},   a = beta/(alpha+beta),   b = alpha/(alpha+beta).

Tokens per parameter at the optimum are D_opt/N_opt = G^{-2} (C/6)^{b-a}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

FLOPS_PER_PARAM_TOKEN = 6.0
"""Training FLOPs per parameter per token, C = 6 N D (Kaplan et al. 2020, Section 2.1)."""


class ChinchillaParams(Protocol):
    """Anything carrying the five Chinchilla parameters, e.g. a `ChinchillaFit`."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float


def allocation_exponents(alpha: float, beta: float) -> tuple[float, float]:
    """(a, b) = (beta, alpha) / (alpha + beta): N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann et al. 2022, Eq. 4)."""
    total = alpha + beta
    return beta / total, alpha / total


def allocation_coefficient(A: float, B: float, alpha: float, beta: float) -> float:
    """G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022, Eq. 4)."""
    return float((alpha * A / (beta * B)) ** (1.0 / (alpha + beta)))


@dataclass(frozen=True)
class Allocation:
    """Compute-optimal model size and data for each budget (arrays shaped like `flops`)."""

    flops: np.ndarray
    params: np.ndarray
    tokens: np.ndarray
    tokens_per_param: np.ndarray
    loss: np.ndarray
    a: float
    b: float
    G: float

    def to_dict(self) -> dict[str, object]:
        """Plain lists and floats, for JSON."""
        return {
            "flops": self.flops.tolist(),
            "params": self.params.tolist(),
            "tokens": self.tokens.tolist(),
            "tokens_per_param": self.tokens_per_param.tolist(),
            "loss": self.loss.tolist(),
            "a": self.a,
            "b": self.b,
            "G": self.G,
        }


def optimal_params(flops: np.ndarray | float, A: float, B: float, alpha: float, beta: float) -> np.ndarray:
    """N_opt(C) = G (C/6)^a (Hoffmann et al. 2022, Eq. 4)."""
    a, _ = allocation_exponents(alpha, beta)
    g = allocation_coefficient(A, B, alpha, beta)
    return g * (np.asarray(flops, dtype=float) / FLOPS_PER_PARAM_TOKEN) ** a


def optimal_tokens(flops: np.ndarray | float, A: float, B: float, alpha: float, beta: float) -> np.ndarray:
    """D_opt(C) = (C/6)^b / G (Hoffmann et al. 2022, Eq. 4)."""
    _, b = allocation_exponents(alpha, beta)
    g = allocation_coefficient(A, B, alpha, beta)
    return (np.asarray(flops, dtype=float) / FLOPS_PER_PARAM_TOKEN) ** b / g


def tokens_per_param(flops: np.ndarray | float, A: float, B: float, alpha: float, beta: float) -> np.ndarray:
    """D_opt/N_opt = (C/6)^(b-a) / G^2 at budget C."""
    return optimal_tokens(flops, A, B, alpha, beta) / optimal_params(flops, A, B, alpha, beta)


def compute_optimal(law: ChinchillaParams, flops: np.ndarray | float) -> Allocation:
    """N_opt, D_opt, tokens per parameter and the predicted loss at each budget for a fitted law."""
    c = np.atleast_1d(np.asarray(flops, dtype=float))
    if np.any(~np.isfinite(c)) or np.any(c <= 0):
        raise ValueError("compute budgets must be positive and finite")
    n = optimal_params(c, law.A, law.B, law.alpha, law.beta)
    d = optimal_tokens(c, law.A, law.B, law.alpha, law.beta)
    a, b = allocation_exponents(law.alpha, law.beta)
    loss = law.E + law.A / n**law.alpha + law.B / d**law.beta
    g = allocation_coefficient(law.A, law.B, law.alpha, law.beta)
    return Allocation(flops=c, params=n, tokens=d, tokens_per_param=d / n, loss=loss, a=a, b=b, G=g)


def params_for_tokens(
    tokens: np.ndarray | float, A: float, B: float, alpha: float, beta: float
) -> np.ndarray:
    """The compute-optimal N for a given D: invert D_opt(C), N = G (D G)^(a/b).

    Used for the "unique parameters" U_N of Muennighoff et al. 2023 (Section 3).
    """
    a, b = allocation_exponents(alpha, beta)
    g = allocation_coefficient(A, B, alpha, beta)
    return g * (np.asarray(tokens, dtype=float) * g) ** (a / b)
