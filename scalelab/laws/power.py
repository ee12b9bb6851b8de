"""Saturating power law L(x) = E + A x^(-alpha) in one variable x (N, D or C).

The single-variable laws of Kaplan et al. 2020 (Eq. 1.1-1.3) with the irreducible term E of
Hoffmann et al. 2022 (Eq. 2). Fitted as Approach 3 is: Huber loss (delta = 1e-3) on
log L_hat = LSE(a - alpha log x, e), summed over points, from a grid of starts, best optimum kept.

x is divided by its geometric mean x_ref before fitting (a' = a - alpha log x_ref), so the grid of
starts means the same thing whether x counts parameters (~1e6) or FLOPs (~1e20): it spans the
reducible loss at x_ref and E as fractions of the observed losses, and alpha from 0.05 to 2.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from scalelab.laws.multistart import multistart_minimize, refit_candidates
from scalelab.laws.objective import HUBER_DELTA, LogSumExpHuber
from scalelab.laws.validate import distinct_values, enough_points, positive_finite, same_length, varying_loss

N_PARAMS = 3
ALPHA_STARTS = (0.05, 0.25, 0.5, 1.0, 2.0)
E_FRACTIONS = (0.02, 0.2, 0.5, 0.8, 0.95)  # E as a fraction of the smallest observed loss
REDUCIBLE_FRACTIONS = (0.01, 0.1, 0.3, 1.0, 3.0)  # A x_ref^-alpha as a fraction of the median loss


def power_law(x: np.ndarray | float, E: float, A: float, alpha: float) -> np.ndarray:
    """L(x) = E + A x^(-alpha) (Kaplan et al. 2020, Eq. 1.1, with Hoffmann et al.'s E)."""
    return E + A * np.asarray(x, dtype=float) ** (-alpha)


@dataclass(frozen=True)
class PowerLawFit:
    """Fitted L(x) = E + A x^(-alpha).

    Attributes:
        E, A, alpha: the law, in the units of the x given.
        n_points: number of points fitted.
        objective: summed Huber loss at the optimum.
        x_ref: geometric mean of x; the fit ran on x / x_ref.
        best_starts: (k, 3) normalised starts (a', e, alpha) whose runs ended lowest.
        candidates: (S, 3) normalised points bootstrap refits may start from (grid and end points).
    """

    E: float
    A: float
    alpha: float
    n_points: int
    objective: float
    x_ref: float = 1.0
    best_starts: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 3)))
    candidates: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 3)))

    @classmethod
    def from_theta(cls, theta: np.ndarray, x_ref: float, n_points: int, objective: float,
                   **kw: object) -> PowerLawFit:
        """Build from normalised log-space parameters (a', e, alpha), a' = log A - alpha log x_ref."""
        a_norm, e, alpha = (float(v) for v in theta)
        return cls(E=float(np.exp(e)), A=float(np.exp(a_norm + alpha * np.log(x_ref))), alpha=alpha,
                   n_points=n_points, objective=objective, x_ref=x_ref, **kw)  # type: ignore[arg-type]

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        """Predicted loss at x."""
        return power_law(x, self.E, self.A, self.alpha)

    def to_dict(self) -> dict[str, float | int]:
        """Parameters and fit size as plain numbers (the CLI's JSON keys)."""
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "n_points": self.n_points,
                "objective": self.objective}


def check_power_data(x: object, y: object, *, names: tuple[str, str] = ("x", "y"),
                     first_line: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated float arrays (x, y), or a UserError that says what to fix."""
    xa = positive_finite(names[0], x, first_line=first_line)
    ya = positive_finite(names[1], y, first_line=first_line)
    enough_points(same_length(**{names[0]: xa, names[1]: ya}), N_PARAMS, "saturating power")
    distinct_values(names[0], xa, N_PARAMS, "saturating power", "E, A and alpha need three distinct x")
    varying_loss(names[1], ya, "saturating power")
    return xa, ya


def power_grid(y: np.ndarray) -> np.ndarray:
    """Starts (a', e, alpha) scaled to the observed losses y (see module docstring)."""
    e0, r0 = np.log(np.min(y)), np.log(np.median(y))
    rows = [(r0 + np.log(fr), e0 + np.log(fe), al)
            for fr, fe, al in itertools.product(REDUCIBLE_FRACTIONS, E_FRACTIONS, ALPHA_STARTS)]
    return np.array(rows, dtype=float)


def power_objective(x: np.ndarray, y: np.ndarray, x_ref: float, *, delta: float = HUBER_DELTA,
                    weights: np.ndarray | None = None) -> LogSumExpHuber:
    """Batched Huber/LSE objective over normalised rows (a', e, alpha)."""
    return LogSumExpHuber(np.log(x / x_ref)[None], np.log(y), delta=delta, weights=weights)


def fit_power_law(x: np.ndarray, y: np.ndarray, *, delta: float = HUBER_DELTA,
                  grid: np.ndarray | None = None) -> PowerLawFit:
    """Fit L(x) = E + A x^(-alpha) robustly: Huber on log L, multi-start, best optimum kept.

    Every start takes 30 batched BFGS iterations, the 16 lowest run to convergence, the best two
    are polished by Newton's method (see `multistart.multistart_minimize`).

    Args:
        x: the scale variable (N, D or C), > 0. y: the loss, > 0.
        delta: Huber threshold on log-loss residuals (Hoffmann et al. 2022 use 1e-3).
        grid: (S, 3) normalised starts (a', e, alpha); default `power_grid(y)` (125 starts).
    """
    xa, ya = check_power_data(x, y)
    order = np.lexsort((ya, xa))  # the optimum of a flat objective must not depend on the row order
    xa, ya = xa[order], ya[order]
    x_ref = float(np.exp(np.mean(np.log(xa))))
    starts = power_grid(ya) if grid is None else np.atleast_2d(np.asarray(grid, dtype=float))
    obj = power_objective(xa, ya, x_ref, delta=delta)
    res = multistart_minimize(obj, starts, fun_single=obj.single, hessian=obj.hessian, screen_iter=30,
                              n_survivors=16, n_polish=2)
    ranked = np.argsort(res.all_fun, kind="stable")
    ranked = ranked[np.isfinite(res.all_fun[ranked])][:16]
    return PowerLawFit.from_theta(res.x, x_ref, n_points=len(ya), objective=res.fun,
                                  best_starts=starts[ranked], candidates=refit_candidates(starts, res))
