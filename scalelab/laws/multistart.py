"""Vectorised multi-start minimisation: a batched BFGS in NumPy, pruning, and a Newton polish.

Hoffmann et al. 2022 (Approach 3) and Besiroglu et al. 2024 run L-BFGS from every point of a
grid of initialisations and keep the best optimum. Doing that one start at a time with numeric
gradients is slow; here every start takes its quasi-Newton steps at the same time, so one
iteration is one broadcast evaluation of the objective over starts x points. Starts that are
clearly worse after a few iterations are dropped, the survivors run to tight convergence, and the
best few are polished by Newton's method with the exact Hessian where the objective gives one
(`newton_polish`), else (or where Newton stalls away from a minimum) with SciPy's L-BFGS-B using the
analytic gradient (Byrd et al. 1995), whose import alone costs ~0.4 s.

Everything here is generic: `fun(theta (S, P), rows (S,) | None) -> (f (S,), grad (S, P))`, where
`rows` tells the objective which problem (e.g. which bootstrap resample) each row belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scalelab.laws.objective import row_sum

BatchObjective = Callable[[np.ndarray, "np.ndarray | None"], "tuple[np.ndarray, np.ndarray]"]

ARMIJO_C1 = 1e-4
MAX_BACKTRACKS = 40


@dataclass
class MultiStartResult:
    """Best parameters found, with the objective at every start's end point.

    Attributes:
        x: (P,) parameters with the lowest objective.
        fun: the objective there.
        all_x: (S, P) end point of every start that survived to the end (NaN rows were pruned).
        all_fun: (S,) objective at those end points (inf where pruned).
        n_evals: parameter rows evaluated in total (one row = one pass over the data points).
    """

    x: np.ndarray
    fun: float
    all_x: np.ndarray
    all_fun: np.ndarray
    n_evals: int


class BatchBFGS:
    """BFGS with a backtracking Armijo line search, run on S independent starts at once.

    Each row keeps its own inverse-Hessian estimate (Nocedal & Wright 2006, Algorithm 6.1 with the
    initial scaling of Eq. 6.20). A row stops when its gradient is below `gtol` (max norm) or when
    its objective fell by less than `ftol` (relative) on two iterations in a row, or when no step
    along the steepest descent direction decreases it any more.
    """

    def __init__(
        self,
        fun: BatchObjective,
        x0: np.ndarray,
        rows: np.ndarray | None = None,
        *,
        gtol: float = 1e-11,
        ftol: float = 1e-13,
        max_step: float = 2.0,
    ) -> None:
        self.fun = fun
        self.x = np.array(x0, dtype=float, copy=True)
        s, p = self.x.shape
        self.rows = rows
        self.gtol, self.ftol, self.max_step = gtol, ftol, max_step
        self.f, self.g = fun(self.x, rows)
        self.h = np.broadcast_to(np.eye(p), (s, p, p)).copy()
        self.fresh = np.ones(s, dtype=bool)  # inverse Hessian still the identity
        self.small_steps = np.zeros(s, dtype=int)
        self.done = ~np.isfinite(self.f) | (_row_max_abs(self.g) <= gtol)
        self.n_iter = np.zeros(s, dtype=int)

    def _rows(self, idx: np.ndarray) -> np.ndarray | None:
        return None if self.rows is None else self.rows[idx]

    def keep(self, idx: np.ndarray) -> None:
        """Drop every start not in `idx` (pruning)."""
        for name in ("x", "f", "g", "h", "fresh", "small_steps", "done", "n_iter"):
            setattr(self, name, getattr(self, name)[idx])
        if self.rows is not None:
            self.rows = self.rows[idx]

    def run(self, max_iter: int) -> None:
        """Take up to `max_iter` iterations on every start that has not converged."""
        for _ in range(max_iter):
            idx = np.flatnonzero(~self.done)
            if idx.size == 0:
                return
            self._iterate(idx)

    def _iterate(self, idx: np.ndarray) -> None:
        # every start active (the first iterations): work on the state itself, not on gathered copies; each
        # of x, f, g is read before it is written below, and h is written back whole anyway
        every = idx.size == self.x.shape[0]
        x, f, g, h = (self.x, self.f, self.g, self.h) if every else (self.x[idx], self.f[idx], self.g[idx], self.h[idx])
        p = -np.einsum("sij,sj->si", h, g)
        slope = np.einsum("si,si->s", g, p)
        uphill = ~(slope < 0)
        if uphill.any():  # lost positive definiteness: restart from steepest descent
            h[uphill] = np.eye(x.shape[1])
            self.fresh[idx[uphill]] = True
            p[uphill] = -g[uphill]
            slope[uphill] = -np.einsum("si,si->s", g[uphill], g[uphill])
        # Cap the step so that one wild early step cannot throw a start out of range.
        scale = np.minimum(1.0, self.max_step / np.maximum(_row_max_abs(p), 1e-300))
        p *= scale[:, None]
        slope *= scale
        t, f_new, g_new, ok = self._line_search(idx, x, f, p, slope)

        failed = ~ok
        if failed.any():  # no decrease: retry from the identity, or stop if already there
            stuck = failed & self.fresh[idx]
            self.done[idx[stuck]] = True
            h[failed] = np.eye(x.shape[1])
            self.fresh[idx[failed]] = True
        acc = np.flatnonzero(ok)
        if acc.size:
            step = t[acc, None] * p[acc]
            y = g_new[acc] - g[acc]
            h[acc] = self._update(h[acc], step, y, self.fresh[idx[acc]])
            sy_ok = np.einsum("si,si->s", step, y) > 0
            self.fresh[idx[acc[sy_ok]]] = False
            gi = idx[acc]
            decrease = f[acc] - f_new[acc]
            small = decrease <= self.ftol * np.maximum(np.abs(f_new[acc]), 1e-300)
            self.small_steps[gi] = np.where(small, self.small_steps[gi] + 1, 0)
            self.x[gi] = x[acc] + step
            self.f[gi], self.g[gi] = f_new[acc], g_new[acc]
            converged = (_row_max_abs(g_new[acc]) <= self.gtol) | (self.small_steps[gi] >= 2)
            self.done[gi[converged]] = True
        if not every:
            self.h[idx] = h
        self.n_iter[idx] += 1

    def _line_search(
        self, idx: np.ndarray, x: np.ndarray, f: np.ndarray, p: np.ndarray, slope: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Backtracking with safeguarded quadratic interpolation until the Armijo condition holds."""
        s = x.shape[0]
        t = np.ones(s)
        # the first trial takes every row (t = 1): no gathers; where every row accepts it, nothing else to do
        ft, gt = self.fun(x + p, self._rows(idx))
        good = np.isfinite(ft) & (ft <= f + ARMIJO_C1 * t * slope)
        if good.all():
            return t, ft, gt, good
        f_new = np.full(s, np.inf)
        g_new = np.zeros_like(x)
        ok = np.zeros(s, dtype=bool)
        todo = np.arange(s)
        for _ in range(MAX_BACKTRACKS):
            if ft is None:
                ft, gt = self.fun(x[todo] + t[todo, None] * p[todo], self._rows(idx[todo]))
                good = np.isfinite(ft) & (ft <= f[todo] + ARMIJO_C1 * t[todo] * slope[todo])
            hit = todo[good]
            f_new[hit], g_new[hit], ok[hit] = ft[good], gt[good], True
            todo, ft = todo[~good], ft[~good]
            if todo.size == 0:
                break
            # Minimiser of the quadratic through f(0), f'(0) and f(t), kept within [0.1 t, 0.5 t].
            tt, sl, df = t[todo], slope[todo], ft - f[todo]
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                t_q = -sl * tt * tt / (2.0 * (df - sl * tt))
            t_q = np.where(np.isfinite(t_q), t_q, 0.5 * tt)
            t[todo] = np.clip(t_q, 0.1 * tt, 0.5 * tt)
            ft = None
        return t, f_new, g_new, ok

    @staticmethod
    def _update(h: np.ndarray, s: np.ndarray, y: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """BFGS update of the inverse Hessian (Nocedal & Wright 2006, Eq. 6.17), batched.

        Computed on (P, P, S) transposes, so that every NumPy operation runs along the S starts instead of
        along P <= 5 parameters; the dot products add their terms in the order `np.einsum` does
        (`_einsum_order_sum`), so that the fits keep the bits they had when this was einsum over (S, P).
        """
        sy = np.einsum("si,si->s", s, y)
        good = sy > 1e-12 * np.sqrt(row_sum(s * s)) * np.sqrt(row_sum(y * y))  # the norms of s and y
        if not good.any():
            return h
        every = bool(good.all())
        h = h.copy()
        if not every:
            s, y, sy = s[good], y[good], sy[good]
        hg = h if every else h[good]
        first = fresh[good]
        if first.any():  # scale the identity to the curvature seen along the step (Eq. 6.20)
            gamma = sy[first] / np.einsum("si,si->s", y[first], y[first])
            hg[first] = gamma[:, None, None] * np.eye(s.shape[1])
        rho = 1.0 / sy
        h_t = np.ascontiguousarray(hg.transpose(1, 2, 0))  # (P, P, S)
        s_t, y_t = np.ascontiguousarray(s.T), np.ascontiguousarray(y.T)  # (P, S)
        hy = _einsum_order_sum([h_t[:, j] * y_t[j] for j in range(len(y_t))])  # (P, S): H y
        yhy = _einsum_order_sum([y_t[i] * hy[i] for i in range(len(y_t))])  # (S,)
        outer = s_t[:, None] * s_t[None]  # (P, P, S)
        new = h_t - rho * (hy[:, None] * s_t[None] + s_t[:, None] * hy[None]) + (rho * rho * yhy + rho) * outer
        new = new.transpose(2, 0, 1)
        if every:
            return np.ascontiguousarray(new)
        h[good] = new
        return h


def _row_max_abs(a: np.ndarray) -> np.ndarray:
    """(S,) max_i |a[s, i]| of an (S, P) array, column by column: NumPy's reductions along a short last
    axis pay a call per row (~20x slower for P = 3, the same numbers)."""
    out = np.abs(a[:, 0])
    for j in range(1, a.shape[1]):
        out = np.maximum(out, np.abs(a[:, j]))
    return out


def _einsum_order_sum(terms: list[np.ndarray]) -> np.ndarray:
    """terms[0] + terms[1] + ... added as `np.einsum` adds a short product sum: the even-indexed terms in
    order, the odd-indexed in order, then the two partial sums (two SIMD lanes)."""
    even = terms[0]
    for t in terms[2::2]:
        even = even + t
    if len(terms) == 1:
        return even
    odd = terms[1]
    for t in terms[3::2]:
        odd = odd + t
    return even + odd


def lbfgsb_polish(
    fun_single: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    *,
    ftol: float = 1e-15,
    gtol: float = 1e-12,
    max_iter: int = 5000,
) -> tuple[np.ndarray, float]:
    """Run SciPy L-BFGS-B with the analytic gradient and tight tolerances from `x0`.

    The tolerances matter: SciPy's default ftol is relative to max(|f|, 1), and the summed Huber
    loss is of order 1e-3, so the default stops far too early (Besiroglu et al. 2024).
    """
    from scipy.optimize import minimize  # imported here: SciPy's import costs ~0.4 s of CLI start-up

    res = minimize(
        fun_single,
        np.asarray(x0, dtype=float),
        jac=True,
        method="L-BFGS-B",
        options={"ftol": ftol, "gtol": gtol, "maxiter": max_iter, "maxfun": 4 * max_iter, "maxls": 50},
    )
    return np.asarray(res.x), float(res.fun)


NEWTON_GTOL = 1e-12
"""Newton's polish stops once its gradient's max norm is at most this (SciPy's polish used the same gtol)."""
NEWTON_ACCEPT_GTOL = 1e-9
"""Where Newton stops earlier (no descent step left) with a larger gradient, the L-BFGS-B polish takes over."""


def newton_polish(
    fun_single: Callable[[np.ndarray], tuple[float, np.ndarray]],
    hessian: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    *,
    max_iter: int = 50,
) -> tuple[np.ndarray, float, bool]:
    """Newton's method with the exact Hessian and a backtracking Armijo search from `x0`: (x, f, converged).

    The batched BFGS ends close to a minimum already; from there Newton's steps converge quadratically
    (Nocedal & Wright 2006, Theorem 3.5), so a few (P, P) solves replace SciPy's L-BFGS-B and SciPy's
    import (~0.4 s of a first `scalelab report`). A step that is not a descent direction (Hessian not
    positive definite) or that no backtracking makes decrease the objective ends the polish, which then
    reports whether the gradient is small enough to call x a minimum.
    """
    x = np.asarray(x0, dtype=float).copy()
    f, g = fun_single(x)
    for _ in range(max_iter):
        if not np.isfinite(f) or np.abs(g).max() <= NEWTON_GTOL:
            break
        try:
            step = -np.linalg.solve(hessian(x), g)
        except np.linalg.LinAlgError:
            break
        slope = float(g @ step)
        if not (np.isfinite(slope) and slope < 0):
            break
        # Next to a minimum the decrease a step promises, -slope / 2, can be below the rounding of f itself:
        # there a full step is taken if it shrinks the gradient without raising f beyond that rounding.
        noise = 64 * np.finfo(float).eps * abs(f)
        t, moved = 1.0, False
        for _ in range(MAX_BACKTRACKS):
            f_new, g_new = fun_single(x + t * step)
            if np.isfinite(f_new) and f_new <= f + ARMIJO_C1 * t * slope:
                moved = f_new < f or (-slope <= noise and np.abs(g_new).max() < np.abs(g).max())
                break
            if t == 1.0 and -slope <= noise and f_new <= f + noise and np.abs(g_new).max() < np.abs(g).max():
                moved = True
                break
            t *= 0.5
        if not moved:
            break
        x, f, g = x + t * step, f_new, g_new
    gmax = float(np.abs(g).max())
    return x, float(f), bool(np.isfinite(f) and gmax <= NEWTON_ACCEPT_GTOL)


def multistart_minimize(
    fun: BatchObjective,
    starts: np.ndarray,
    *,
    fun_single: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    hessian: Callable[[np.ndarray], np.ndarray] | None = None,
    screen_iter: int = 30,
    n_survivors: int = 64,
    max_iter: int = 3000,
    n_polish: int = 3,
) -> MultiStartResult:
    """Minimise from every row of `starts` and return the best optimum.

    All starts take `screen_iter` batched BFGS iterations; the `n_survivors` lowest then run to
    convergence; the `n_polish` best end points are polished (if `fun_single` is given): by Newton's
    method when `hessian` is given too (`newton_polish`), with L-BFGS-B where Newton does not reach a
    minimum or without `hessian`. `screen_iter=0` or `n_survivors >= len(starts)` runs every start to
    convergence.
    """
    starts = np.atleast_2d(np.asarray(starts, dtype=float))
    n_before = getattr(fun, "n_evals", 0)
    opt = BatchBFGS(fun, starts)
    order = np.arange(len(starts))
    if screen_iter > 0 and n_survivors < len(starts):
        opt.run(screen_iter)
        keep = np.argsort(np.where(np.isfinite(opt.f), opt.f, np.inf), kind="stable")[:n_survivors]
        opt.keep(keep)
        order = order[keep]
    opt.run(max_iter)
    all_x = np.full(starts.shape, np.nan)
    all_fun = np.full(len(starts), np.inf)
    all_x[order], all_fun[order] = opt.x, np.where(np.isfinite(opt.f), opt.f, np.inf)
    best = int(np.argmin(all_fun))
    x_best, f_best = all_x[best].copy(), float(all_fun[best])
    if fun_single is not None and n_polish > 0:
        for i in np.argsort(all_fun, kind="stable")[:n_polish]:
            if not np.isfinite(all_fun[i]):
                continue
            converged = False
            if hessian is not None:
                x, fx, converged = newton_polish(fun_single, hessian, all_x[i])
            if not converged:
                x, fx = lbfgsb_polish(fun_single, all_x[i])
            if fx < f_best:
                x_best, f_best = x, fx
    n_evals = getattr(fun, "n_evals", 0) - n_before
    return MultiStartResult(x=x_best, fun=f_best, all_x=all_x, all_fun=all_fun, n_evals=n_evals)


def refit_candidates(starts: np.ndarray, res: MultiStartResult) -> np.ndarray:
    """(S', P) finite points where refits of resampled data may begin: the grid starts, the
    survivors' end points and the best optimum."""
    out = np.concatenate([starts, res.all_x, res.x[None]])
    return out[np.all(np.isfinite(out), axis=1)]
