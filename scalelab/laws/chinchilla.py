"""Chinchilla Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta to final losses.

Hoffmann et al. 2022, Eq. 2 (the law) and Eq. 3 (the Huber objective), in the log-sum-exp form of
their Appendix D.2; fitting procedure as replicated by Besiroglu et al. 2024 ("Chinchilla scaling:
a replication attempt"):

    minimise  sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i ),
    A = e^a, B = e^b, E = e^e, delta = 1e-3,

by L-BFGS from every point of the grid alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
a, b in {0, 5, ..., 25} (4,500 starts), keeping the best optimum. The loss is the *sum*, not the
mean, and the tolerances are tight; Besiroglu et al. trace Hoffmann's implausibly narrow intervals
partly to an optimiser that stopped early.

Our multi-start is vectorised (see `multistart.py`): all 4,500 starts take batched BFGS steps
with the analytic gradient, the 64 best after 30 iterations run to convergence, and the best few
are polished by Newton's method with the exact Hessian (SciPy's L-BFGS-B where Newton stalls).
Tests and `benchmarks/bench_fit.py` check that this reaches the optimum of the plain
one-start-at-a-time SciPy loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.allocation import allocation_coefficient, allocation_exponents
from scalelab.laws.multistart import multistart_minimize, refit_candidates
from scalelab.laws.objective import HUBER_DELTA, LogSumExpHuber
from scalelab.laws.validate import distinct_values, enough_points, positive_finite, same_length, varying_loss

PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
N_PARAMS = 5
N_BEST_STARTS = 16  # grid starts remembered for bootstrap refits


def chinchilla_grid(
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0),
    betas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0),
    es: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0),
    a_s: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
    bs: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
) -> np.ndarray:
    """The grid of initialisations of Hoffmann et al. 2022 (Appendix D.2), rows (a, b, e, alpha, beta).

    The default is the full 5 x 5 x 5 x 6 x 6 = 4,500-start grid of Besiroglu et al. 2024.
    """
    rows = [(a, b, e, al, be) for al, be, e, a, b in itertools.product(alphas, betas, es, a_s, bs)]
    return np.array(rows, dtype=float)


def chinchilla_loss(
    N: np.ndarray | float, D: np.ndarray | float, E: float, A: float, B: float, alpha: float, beta: float
) -> np.ndarray:
    """L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 2)."""
    n, d = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return E + A / n**alpha + B / d**beta


@dataclass(frozen=True)
class ChinchillaFit:
    """Fitted parameters of L(N, D) = E + A/N^alpha + B/D^beta.

    Attributes:
        E, A, B, alpha, beta: the law (Hoffmann et al. 2022, Eq. 2).
        n_points: number of (N, D, loss) points fitted.
        objective: summed Huber loss at the optimum.
        best_starts: (k, 5) grid initialisations whose runs ended lowest, best first.
        candidates: (S, 5) points bootstrap refits screen for their starts: the grid and the
            survivors' end points (see `bootstrap.py`).
    """

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    n_points: int
    objective: float
    best_starts: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 5)))
    candidates: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty((0, 5)))

    @classmethod
    def from_theta(cls, theta: np.ndarray, n_points: int, objective: float, **kw: object) -> ChinchillaFit:
        """Build from log-space parameters (a, b, e, alpha, beta)."""
        a, b, e, alpha, beta = (float(v) for v in theta)
        return cls(E=np.exp(e), A=np.exp(a), B=np.exp(b), alpha=alpha, beta=beta,
                   n_points=n_points, objective=objective, **kw)  # type: ignore[arg-type]

    @property
    def theta(self) -> np.ndarray:
        """Log-space parameters (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta)."""
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    @property
    def a(self) -> float:
        """N_opt ∝ C^a with a = beta/(alpha+beta) (Hoffmann et al. 2022, Eq. 4)."""
        return allocation_exponents(self.alpha, self.beta)[0]

    @property
    def b(self) -> float:
        """D_opt ∝ C^b with b = alpha/(alpha+beta) (Hoffmann et al. 2022, Eq. 4)."""
        return allocation_exponents(self.alpha, self.beta)[1]

    @property
    def G(self) -> float:
        """G = (alpha A / (beta B))^(1/(alpha+beta)) (Hoffmann et al. 2022, Eq. 4)."""
        return allocation_coefficient(self.A, self.B, self.alpha, self.beta)

    def predict(self, N: np.ndarray | float, D: np.ndarray | float) -> np.ndarray:
        """Predicted loss at (N, D)."""
        return chinchilla_loss(N, D, self.E, self.A, self.B, self.alpha, self.beta)

    def to_dict(self) -> dict[str, float | int]:
        """Parameters, allocation exponents and fit size, as plain numbers (the CLI's JSON keys)."""
        return {
            "E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
            "a": self.a, "b": self.b, "G": self.G, "n_points": self.n_points, "objective": self.objective,
        }


def check_chinchilla_data(
    N: object, D: object, loss: object, *, names: tuple[str, str, str] = ("N", "D", "loss"),
    first_line: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated float arrays (N, D, loss), or a UserError that says what to fix."""
    n = positive_finite(names[0], N, first_line=first_line)
    d = positive_finite(names[1], D, first_line=first_line)
    y = positive_finite(names[2], loss, first_line=first_line)
    count = same_length(**{names[0]: n, names[1]: d, names[2]: y})
    enough_points(count, N_PARAMS, "Chinchilla")
    for name, values in ((names[0], n), (names[1], d)):  # E + A/N^alpha (or B/D^beta) needs 3 distinct values
        distinct_values(name, values, 3, "Chinchilla",
                        "its power-law term in it has a scale, an exponent and the shared constant E")
    varying_loss(names[2], y, "Chinchilla")
    slope, intercept = np.polyfit(np.log(n), np.log(d), 1)
    if np.max(np.abs(np.log(d) - slope * np.log(n) - intercept)) < 1e-6:
        raise UserError(
            f"{names[1]} is a fixed power of {names[0]} in every run (e.g. a fixed tokens-per-parameter "
            f"sweep), so A/{names[0]}^alpha and B/{names[1]}^beta cannot be told apart: add runs that vary "
            f"{names[1]} at a fixed {names[0]} (or fit a power law in {names[0]} instead)"
        )
    return n, d, y


def chinchilla_objective(
    N: np.ndarray, D: np.ndarray, loss: np.ndarray, *, delta: float = HUBER_DELTA,
    weights: np.ndarray | None = None,
) -> LogSumExpHuber:
    """The batched Huber/LSE objective of Hoffmann et al. 2022, Eq. 3, over parameter rows (a, b, e, alpha, beta)."""
    log_x = np.stack([np.log(N), np.log(D)])
    return LogSumExpHuber(log_x, np.log(loss), delta=delta, weights=weights)


def fit_chinchilla(
    N: np.ndarray,
    D: np.ndarray,
    loss: np.ndarray,
    *,
    delta: float = HUBER_DELTA,
    grid: np.ndarray | None = None,
    screen_iter: int = 30,
    n_survivors: int = 64,
    n_polish: int = 3,
) -> ChinchillaFit:
    """Fit Chinchilla Approach 3 (Hoffmann et al. 2022, Eq. 3) by vectorised multi-start L-BFGS.

    Args:
        N: parameters per run; D: training tokens per run; loss: final loss per run (all > 0).
        delta: Huber threshold on log-loss residuals.
        grid: (S, 5) initialisations (a, b, e, alpha, beta); default `chinchilla_grid()`.
        screen_iter, n_survivors: every start takes `screen_iter` batched BFGS iterations, then the
            `n_survivors` lowest continue to convergence (`screen_iter=0`: all run to convergence).
        n_polish: end points polished by Newton's method (exact Hessian; L-BFGS-B where it stalls).

    Returns:
        The fit with the lowest summed Huber loss.
    """
    n, d, y = check_chinchilla_data(N, D, loss)
    order = np.lexsort((y, d, n))  # the optimum of a flat objective must not depend on the row order
    n, d, y = n[order], d[order], y[order]
    starts = chinchilla_grid() if grid is None else np.atleast_2d(np.asarray(grid, dtype=float))
    obj = chinchilla_objective(n, d, y, delta=delta)
    res = multistart_minimize(obj, starts, fun_single=obj.single, hessian=obj.hessian, screen_iter=screen_iter,
                              n_survivors=n_survivors, n_polish=n_polish)
    ranked = np.argsort(res.all_fun, kind="stable")
    ranked = ranked[np.isfinite(res.all_fun[ranked])][:N_BEST_STARTS]
    return ChinchillaFit.from_theta(res.x, n_points=len(y), objective=res.fun, best_starts=starts[ranked],
                                    candidates=refit_candidates(starts, res))

