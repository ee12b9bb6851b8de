"""Synthetic runs drawn from known laws, for tests, benchmarks and sanity checks of a fitting setup.

The default parameters are Besiroglu et al. 2024's replication fit of Chinchilla Approach 3
(E 1.817, A 482.0, B 2085, alpha 0.348, beta 0.366), and the default design imitates Hoffmann et
al. 2022's IsoFLOP grid (Figure 3): model sizes spread around the optimum at each of several
budgets between 6e18 and 3e21 FLOPs.
"""

from __future__ import annotations

import numpy as np

from scalelab.laws.allocation import FLOPS_PER_PARAM_TOKEN, optimal_params
from scalelab.laws.chinchilla import chinchilla_loss

REPLICATION_PARAMS = {"E": 1.817, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
"""Besiroglu et al. 2024, Table 1 (their Approach 3 replication on 240 points)."""


def isoflop_design(
    params: dict[str, float] | None = None,
    *,
    n_budgets: int = 10,
    sizes_per_budget: int = 24,
    flops_range: tuple[float, float] = (6e18, 3e21),
    spread: float = 10.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, C): at each budget, model sizes log-spaced from N_opt/spread to N_opt*spread, D = C/(6N)."""
    p = REPLICATION_PARAMS if params is None else params
    budgets = np.geomspace(*flops_range, n_budgets)
    n_opt = optimal_params(budgets, p["A"], p["B"], p["alpha"], p["beta"])
    factors = np.geomspace(1.0 / spread, spread, sizes_per_budget)
    n = (n_opt[:, None] * factors[None]).ravel()
    c = np.repeat(budgets, sizes_per_budget)
    return n, c / (FLOPS_PER_PARAM_TOKEN * n), c


def synthetic_chinchilla_runs(
    params: dict[str, float] | None = None,
    *,
    noise: float = 0.01,
    seed: int = 0,
    n_budgets: int = 10,
    sizes_per_budget: int = 24,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, loss) on `isoflop_design`, loss = L(N, D) * exp(noise * standard normal)."""
    p = REPLICATION_PARAMS if params is None else params
    n, d, _ = isoflop_design(p, n_budgets=n_budgets, sizes_per_budget=sizes_per_budget)
    rng = np.random.default_rng(seed)
    clean = chinchilla_loss(n, d, p["E"], p["A"], p["B"], p["alpha"], p["beta"])
    return n, d, clean * np.exp(noise * rng.standard_normal(len(n)))
