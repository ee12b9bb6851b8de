"""The plain reference fit that the fast multi-start fit is checked against (tests, benchmark).

One `scipy.optimize.minimize(method="L-BFGS-B")` per start, numeric gradients, default options,
on the summed Huber loss of the log-sum-exp form (Hoffmann et al. 2022; Besiroglu et al. 2024).
Slow by design: it is the baseline, not a tool.
"""

from __future__ import annotations

import numpy as np

from scalelab.laws.objective import huber


def plain_scipy_loop(n: np.ndarray, d: np.ndarray, y: np.ndarray, grid: np.ndarray) -> tuple[float, np.ndarray]:
    """(best summed Huber loss, best (a, b, e, alpha, beta)) over the starts in `grid`."""
    from scipy.optimize import minimize

    log_n, log_d, log_y = np.log(n), np.log(d), np.log(y)

    def objective(p: np.ndarray) -> float:
        a, b, e, alpha, beta = p
        pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
        return float(np.sum(huber(pred - log_y, 1e-3)))

    best_f, best_x = np.inf, np.full(5, np.nan)
    for start in grid:
        res = minimize(objective, start, method="L-BFGS-B")
        if res.success and res.fun < best_f:
            best_f, best_x = float(res.fun), res.x
    return best_f, best_x
