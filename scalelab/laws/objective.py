"""The robust log-space objective shared by the power-law and Chinchilla fits.

Both laws are sums of power laws plus a constant, L = E + sum_k A_k x_k^(-s_k). Following
Hoffmann et al. 2022 (Approach 3: Eq. 3, Appendix D.2) and Besiroglu et al. 2024, we write them in
log space as a log-sum-exp,

    log L_hat = LSE(c_1 - s_1 log x_1, ..., c_K - s_K log x_K, e),   A_k = e^{c_k}, E = e^e,

and minimise the *sum* over points of Huber_delta(log L_hat_i - log L_i). Parameters are ordered
theta = (c_1..c_K, e, s_1..s_K), which for Chinchilla (K = 2) is (a, b, e, alpha, beta).

The objective is evaluated for a whole batch of parameter vectors at once (shape (S, P)) with an
analytic gradient, so that thousands of starts cost one NumPy broadcast over starts x points.
"""

from __future__ import annotations

import numpy as np

HUBER_DELTA = 1e-3
"""Huber threshold on log-loss residuals used by Hoffmann et al. 2022 and Besiroglu et al. 2024."""
CHUNK_ELEMENTS = 65_536
"""Values (parameter rows x points) per work array in one chunk of a batched evaluation."""
MATMUL_ROWS = 256
"""Rows per gradient matmul (a chunk is a multiple of it); see `LogSumExpHuber._evaluate`."""


def row_sum(a: np.ndarray) -> np.ndarray:
    """(S,) sum over the short last axis of (S, P), added in order as `np.add.reduce(a, axis=1)` adds it (the
    same bits), column by column: NumPy's reduction along a short last axis pays a call per row."""
    out = a[:, 0]
    for j in range(1, a.shape[1]):
        out = out + a[:, j]
    return out


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber loss: r^2/2 for |r| <= delta, delta (|r| - delta/2) beyond (Huber 1964)."""
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def log_sum_exp_prediction(theta: np.ndarray, log_x: np.ndarray) -> np.ndarray:
    """log L_hat for parameter rows theta (S, 2K+1) at points log_x (K, n); returns (S, n)."""
    theta = np.atleast_2d(np.asarray(theta, dtype=float))
    log_x = np.atleast_2d(np.asarray(log_x, dtype=float))
    k = log_x.shape[0]
    t = theta[:, :k, None] - theta[:, k + 1 :, None] * log_x[None]  # (S, K, n)
    e = np.broadcast_to(theta[:, k, None, None], (theta.shape[0], 1, log_x.shape[1]))
    return np.logaddexp.reduce(np.concatenate([t, e], axis=1), axis=1)


class LogSumExpHuber:
    """Batched objective sum_i w_i Huber(LSE(...)_i - log y_i) with its analytic gradient.

    Args:
        log_x: (K, n) logs of the K explanatory variables (e.g. log N, log D).
        log_y: (n,) logs of the observed losses.
        delta: Huber threshold (Hoffmann et al. 2022 use 1e-3).
        weights: None, (n,) point weights, or (R, n) one row per problem; bootstrap resamples are
            integer weights (how many times each point was drawn).
    """

    def __init__(
        self,
        log_x: np.ndarray,
        log_y: np.ndarray,
        delta: float = HUBER_DELTA,
        weights: np.ndarray | None = None,
    ) -> None:
        self.log_x = np.atleast_2d(np.asarray(log_x, dtype=float))
        self.log_y = np.asarray(log_y, dtype=float)
        self.k, self.n = self.log_x.shape
        self.n_params = 2 * self.k + 1
        self.delta = float(delta)
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.n_evals = 0  # rows evaluated, for benchmarks
        # rows per chunk: about CHUNK_ELEMENTS values per work array, so that the k + 4 of them stay in cache
        # while few chunks (one NumPy call per operation each) cover a whole batch of starts
        self.chunk = MATMUL_ROWS * max(1, CHUNK_ELEMENTS // (MATMUL_ROWS * max(self.n, 1)))
        self._work: list[np.ndarray] | None = None
        # d t_j / d(c_j, s_j) = (1, -log x_j)
        self._design = [np.stack([np.ones(self.n), -lx], axis=1) for lx in self.log_x]

    def _row_weights(self, rows: np.ndarray | None, s: int) -> np.ndarray | None:
        if self.weights is None:
            return None
        if self.weights.ndim == 1:
            return self.weights
        if rows is None:
            if self.weights.shape[0] != s:
                raise ValueError("rows are required when weights hold several problems")
            return self.weights
        return self.weights[rows]

    def _buffers(self, s: int) -> list[np.ndarray]:
        # Fresh large temporaries are slow to allocate (page faults), so the work arrays are kept
        # and reused; slices of the first s rows of a C-ordered buffer stay contiguous.
        if self._work is None or self._work[0].shape[0] < s:
            self._work = [np.empty((s, self.n)) for _ in range(self.k + 4)]
        return [b[:s] for b in self._work]

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Objective (S,) and gradient (S, P) for parameter rows theta (S, P).

        `rows` (S,) says which weight row (problem) each parameter row belongs to. Rows are
        processed in chunks that fit in cache.
        """
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        s = theta.shape[0]
        self.n_evals += s
        f = np.empty(s)
        grad = np.empty((s, self.n_params))
        for lo in range(0, s, self.chunk):
            hi = min(s, lo + self.chunk)
            sub_rows = None if rows is None else rows[lo:hi]
            f[lo:hi], grad[lo:hi] = self._evaluate(theta[lo:hi], sub_rows)
        return f, grad

    def _evaluate(self, theta: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        s, k, d = theta.shape[0], self.k, self.delta
        *terms, m, z, r, psi = self._buffers(s)
        for j in range(k):  # t_j = c_j - s_j log x_j, (S, n)
            np.multiply.outer(theta[:, k + 1 + j], self.log_x[j], out=terms[j])
            np.subtract(theta[:, j, None], terms[j], out=terms[j])
        e = theta[:, k, None]
        np.maximum(terms[0], e, out=m)  # shift for a stable exp
        for j in range(1, k):
            np.maximum(m, terms[j], out=m)
        np.subtract(e, m, out=z)
        np.exp(z, out=z)  # exp(e - m)
        for j in range(k):
            np.subtract(terms[j], m, out=terms[j])
            np.exp(terms[j], out=terms[j])  # u_j = exp(t_j - m)
            z += terms[j]
        np.log(z, out=r)
        r += m
        r -= self.log_y  # residual of log L_hat, (S, n)
        np.clip(r, -d, d, out=psi)  # Huber'(r)
        # Huber(r) = psi (r - psi/2) in both regimes; m is free again and holds r - psi/2.
        np.multiply(psi, 0.5, out=m)
        np.subtract(r, m, out=m)
        w = self._row_weights(rows, s)
        if w is not None:
            psi *= w
        f = np.einsum("sn,sn->s", psi, m)
        grad = np.empty((s, self.n_params))
        psi_sum = psi.sum(axis=1)
        psi /= z  # dLSE/dt_j = u_j / z
        for j in range(k):
            terms[j] *= psi
            # One small matmul per MATMUL_ROWS rows gives both gradient entries. BLAS sums a row differently
            # for different row counts, and bootstrap refits on a flat objective amplify last-bit differences
            # (up to 1e-4 in a forecast's prediction interval): the blocks keep the sums fits were made with.
            for lo in range(0, s, MATMUL_ROWS):
                grad[lo : lo + MATMUL_ROWS, [j, k + 1 + j]] = terms[j][lo : lo + MATMUL_ROWS] @ self._design[j]
        grad[:, k] = psi_sum - row_sum(grad[:, :k])  # u_e / z = 1 - sum_j u_j / z
        return f, grad

    def single(self, theta: np.ndarray, row: int | None = None) -> tuple[float, np.ndarray]:
        """Objective and gradient for one parameter vector, in the form scipy.optimize wants."""
        rows = None if row is None else np.array([row])
        f, g = self(np.asarray(theta, dtype=float)[None], rows)
        return float(f[0]), g[0]

    def hessian(self, theta: np.ndarray, row: int | None = None) -> np.ndarray:
        """(P, P) Hessian at one parameter vector, for the Newton polish (`multistart.newton_polish`).

        With t the K + 1 log-terms (linear in theta: dt/dtheta = J), p = softmax(t) and r = LSE(t) - log y,
        dr = p J and d2r = J^T (diag(p) - p p^T) J, so the Hessian is sum_i w_i [Huber''(r_i) dr_i dr_i^T +
        Huber'(r_i) d2r_i], Huber'' = 1 inside +-delta and 0 beyond (where the objective is not twice
        differentiable exactly at +-delta; Newton's steps are then guarded by the polish's line search).
        """
        theta = np.asarray(theta, dtype=float)
        k, n = self.k, self.n
        jac = np.zeros((n, k + 1, self.n_params))  # d t_ij / d theta, (n, K+1, P)
        for j in range(k):
            jac[:, j, j] = 1.0
            jac[:, j, k + 1 + j] = -self.log_x[j]
        jac[:, k, k] = 1.0
        t = np.concatenate([theta[:k, None] - theta[k + 1 :, None] * self.log_x, np.full((1, n), theta[k])])
        lse = np.logaddexp.reduce(t, axis=0)  # (n,)
        p = np.exp(t - lse).T  # (n, K+1)
        r = lse - self.log_y
        w = self._row_weights(None if row is None else np.array([row]), 1)
        w = np.ones(n) if w is None else np.asarray(w, dtype=float).reshape(n)
        dr = np.einsum("nk,nkp->np", p, jac)  # (n, P)
        curv = (np.abs(r) <= self.delta).astype(float)
        psi = np.clip(r, -self.delta, self.delta)
        pj = np.einsum("nk,nkp,nkq->npq", p, jac, jac)  # J^T diag(p) J per point
        d2r = pj - dr[:, :, None] * dr[:, None, :]
        return np.einsum("n,npq->pq", w * curv, dr[:, :, None] * dr[:, None, :]) + np.einsum("n,npq->pq", w * psi, d2r)
