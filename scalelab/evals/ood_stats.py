"""The statistics of activation-based OOD detection, in NumPy: Gaussian fits, distances, AUROC.

Bai et al. 2022 (arXiv 2204.05862, section 5.4) detect out-of-distribution prompts from a
model's activations: fit class means and one shared covariance on in-distribution activations
(Lee et al. 2018, arXiv 1807.03888), score a new vector by its Mahalanobis distance to the
nearest class mean, or by the "simplified relative Mahalanobis distance" (after Ren et al. 2021,
arXiv 2106.09022): the full-covariance distance minus the diagonal-covariance distance, which
discounts what plain per-feature scale already explains. Distances here are squared.

With fewer examples than dimensions the empirical covariance is singular; the fit then uses the
Ledoit-Wolf (2004) shrinkage toward a scaled identity, and says so (`shrunk`, `shrinkage`).
Outlier exposure (Hendrycks et al. 2019; Bai et al. 2022 figure 23) is a logistic regression
on the activations of in-distribution examples against a handful of labelled outliers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError

RIDGE = 1e-6
"""Relative ridge (times the mean variance) added to a covariance that is not shrunk, for a stable inverse."""


@contextmanager
def blas_one_thread() -> Iterator[None]:
    """Run NumPy's BLAS on one thread (when threadpoolctl is installed): these are small (C <= ~1000)
    problems, and on a busy machine a multi-threaded BLAS solve of 289 x 289 measured 100x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1):
        yield


def ledoit_wolf(centered: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance (C, C), shrinkage in [0, 1]) of centered rows (N, C).

    Ledoit & Wolf 2004, "A well-conditioned estimator for large-dimensional covariance matrices",
    lemma 3.2-3.4: target mu I with mu = tr(S)/C; shrinkage = min(b2, d2) / d2 where
    d2 = ||S - mu I||_F^2 and b2 = (1/N^2) sum_k ||x_k x_k^T - S||_F^2.
    """
    n, dim = centered.shape
    s = centered.T @ centered / n  # (C, C)
    mu = float(np.trace(s)) / dim
    d2 = float(((s - mu * np.eye(dim)) ** 2).sum())
    # sum_k ||x_k x_k^T - S||_F^2 = sum_k ||x_k||^4 - N ||S||_F^2
    b2_bar = (float((np.einsum("ij,ij->i", centered, centered) ** 2).sum()) - n * float((s**2).sum())) / n**2
    shrinkage = 1.0 if d2 <= 0 else min(max(b2_bar, 0.0), d2) / d2
    return shrinkage * mu * np.eye(dim) + (1 - shrinkage) * s, shrinkage


@dataclass
class GaussianFit:
    """Class means and a shared covariance of one layer's activations, ready to score."""

    means: np.ndarray
    """(K, C) one mean per class (K = 1 without labels)."""
    precision: np.ndarray
    """(C, C) inverse of the shared covariance."""
    precision_diag: np.ndarray
    """(C,) inverse of the covariance's diagonal (the diagonal-covariance distance)."""
    shrunk: bool
    """True when the covariance was shrunk (fewer examples than dimensions)."""
    shrinkage: float
    """Ledoit-Wolf shrinkage weight on the identity target (0 when not shrunk)."""


def fit_gaussian(x: np.ndarray, labels: np.ndarray | None = None) -> GaussianFit:
    """Fit means per class and a shared covariance to rows x (N, C); labels (N,) ints or None."""
    x = np.asarray(x, dtype=np.float64)
    n, dim = x.shape
    if n < 2:
        raise UserError(f"an OOD fit needs at least 2 in-distribution examples, got {n}; give more texts")
    labels = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([x[labels == k].mean(axis=0) for k in classes])  # (K, C)
    centered = x - means[np.searchsorted(classes, labels)]
    shrunk = n < dim
    if shrunk:
        cov, shrinkage = ledoit_wolf(centered)
    else:
        cov, shrinkage = centered.T @ centered / n, 0.0
        cov += RIDGE * max(float(np.trace(cov)) / dim, 1e-12) * np.eye(dim)
    precision = np.linalg.pinv(cov, hermitian=True)
    diag = np.maximum(np.diag(cov), 1e-12)
    return GaussianFit(means, precision, 1.0 / diag, shrunk, float(shrinkage))


def mahalanobis(fit: GaussianFit, x: np.ndarray) -> np.ndarray:
    """(N,) squared Mahalanobis distance of rows x (N, C) to the nearest class mean."""
    d = np.asarray(x, dtype=np.float64)[:, None, :] - fit.means[None]  # (N, K, C)
    return ((d @ fit.precision) * d).sum(axis=-1).min(axis=1)


def diagonal_mahalanobis(fit: GaussianFit, x: np.ndarray) -> np.ndarray:
    """(N,) squared distance to the nearest class mean under the covariance's diagonal only."""
    d = np.asarray(x, dtype=np.float64)[:, None, :] - fit.means[None]  # (N, K, C)
    return np.einsum("nkc,c->nk", d * d, fit.precision_diag).min(axis=1)


def relative_mahalanobis(fit: GaussianFit, x: np.ndarray) -> np.ndarray:
    """(N,) simplified relative Mahalanobis distance: full-covariance minus diagonal-covariance distance."""
    return mahalanobis(fit, x) - diagonal_mahalanobis(fit, x)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """P(score of an OOD example > score of an in-distribution one), ties counted half (Mann-Whitney U)."""
    if len(in_scores) == 0 or len(out_scores) == 0:
        raise UserError("AUROC needs in-distribution and out-of-distribution test examples; give both")
    ref = np.sort(in_scores)
    below = np.searchsorted(ref, out_scores, side="left")  # in-scores strictly below each OOD score
    tied = np.searchsorted(ref, out_scores, side="right") - below
    return float((below + 0.5 * tied).mean() / len(ref))


def bootstrap_auroc(in_scores: np.ndarray, out_scores: np.ndarray, n_boot: int = 200, seed: int = 0,
                    level: float = 0.95) -> tuple[float, tuple[float, float]]:  # fmt: skip
    """(AUROC, percentile interval) resampling both test sets with replacement, `n_boot` times."""
    point = auroc(in_scores, out_scores)
    if n_boot <= 0:
        return point, (point, point)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        i = rng.integers(0, len(in_scores), len(in_scores))
        o = rng.integers(0, len(out_scores), len(out_scores))
        stats[b] = auroc(in_scores[i], out_scores[o])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return point, (float(lo), float(hi))


def logistic_regression(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 25) -> np.ndarray:
    """Weights (C + 1,) of an L2-penalised, class-balanced logistic regression by Newton's method.

    Rows are standardised by the caller; the two classes weigh the same in total, so that one
    labelled outlier against hundreds of in-distribution examples still moves the boundary.
    """
    n, dim = x.shape
    xb = np.hstack([x, np.ones((n, 1))])  # (N, C + 1)
    weight = np.where(y == 1, 0.5 / max((y == 1).sum(), 1), 0.5 / max((y == 0).sum(), 1))  # (N,)
    penalty = l2 / n * np.eye(dim + 1)
    penalty[-1, -1] = 0.0  # the bias is not penalised
    w = np.zeros(dim + 1)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (weight * (p - y)) + penalty @ w
        hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb + penalty
        step = np.linalg.solve(hess + 1e-9 * np.eye(dim + 1), grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def exposure_curve(fit_in: np.ndarray, test_in: np.ndarray, out: np.ndarray, ms: list[int], draws: int = 5,
                   seed: int = 0, l2: float = 1.0) -> list[dict]:  # fmt: skip
    """Outlier exposure: AUROC vs the number m of labelled OOD examples.

    For each m and draw, m rows of `out` are the labelled outliers; the classifier (in-distribution
    fit rows vs those m) scores `test_in` against the remaining rows of `out`. Returns
    [{"m", "auroc" (mean over draws), "lo", "hi" (min and max over draws), "draws"}].
    """
    mean, std = fit_in.mean(axis=0), fit_in.std(axis=0) + 1e-6
    z_fit, z_in, z_out = ((a - mean) / std for a in (fit_in, test_in, out))
    rng = np.random.default_rng(seed)
    curve = []
    for m in ms:
        if m >= len(out):
            break
        values = []
        for _ in range(draws):
            pick = rng.permutation(len(out))
            seen, rest = z_out[pick[:m]], z_out[pick[m:]]
            x = np.vstack([z_fit, seen])
            y = np.concatenate([np.zeros(len(z_fit)), np.ones(m)])
            w = logistic_regression(x, y, l2)
            values.append(auroc(z_in @ w[:-1], rest @ w[:-1]))
        curve.append({"m": m, "auroc": float(np.mean(values)), "lo": float(np.min(values)),
                      "hi": float(np.max(values)), "draws": draws})  # fmt: skip
    return curve
