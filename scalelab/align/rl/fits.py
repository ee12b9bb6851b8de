"""The two curves of reward against d = sqrt(KL), with bootstrap intervals (plain numpy).

- Bai et al. 2022 (arXiv 2204.05862, section 4.3, fig. 4): the PM reward grows about linearly in
  sqrt(KL): reward = a + b sqrt(KL).
- Gao et al. 2022 (arXiv 2210.10760, eq. 2 and 3): the *gold* reward over-optimises as
  R(d) = d (alpha - beta d), d = sqrt(KL); it peaks at d* = alpha / (2 beta), KL* = d*^2,
  R(d*) = alpha^2 / (4 beta). With beta <= 0 there is no peak: the gold reward still rises.

Intervals are 95% percentile bootstraps over the points (cases resampled with replacement).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _clean(kl: Sequence[float], reward: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(kl, dtype=float)
    y = np.asarray(reward, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"kl and reward differ in length ({x.size} vs {y.size})")
    ok = np.isfinite(x) & np.isfinite(y)
    return np.sqrt(np.clip(x[ok], 0.0, None)), y[ok]  # a small negative k1 estimate counts as 0


def _lstsq(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(design, y, rcond=None)[0]


def _r2(y: np.ndarray, pred: np.ndarray) -> float | None:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return None if ss_tot == 0 else 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


def _ci(samples: list[float]) -> list[float | None]:
    s = np.asarray([v for v in samples if v is not None and np.isfinite(v)])
    if s.size == 0:
        return [None, None]
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


def _boot_indices(n: int, n_boot: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n, n)


def sqrt_kl_fit(kl: Sequence[float], reward: Sequence[float], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """reward = a + b sqrt(KL) by least squares: {"a", "b", "r2", "n", "ci": {"a": [lo, hi], "b": [lo, hi]}}.

    Fewer than 3 finite points give None values (and a "note"), never an error.
    """
    d, y = _clean(kl, reward)
    out: dict = {"a": None, "b": None, "r2": None, "n": int(d.size), "ci": {"a": [None, None], "b": [None, None]}}
    if d.size < 3 or np.ptp(d) == 0:
        out["note"] = f"{d.size} points with distinct KL: too few for a fit (need 3)"
        return out
    design = np.column_stack([np.ones_like(d), d])
    a, b = _lstsq(design, y)
    boots: dict[str, list] = {"a": [], "b": []}
    for idx in _boot_indices(d.size, n_boot, seed):
        if np.ptp(d[idx]) == 0:
            continue
        ba, bb = _lstsq(design[idx], y[idx])
        boots["a"].append(ba)
        boots["b"].append(bb)
    out.update(a=float(a), b=float(b), r2=_r2(y, design @ np.array([a, b])),
               ci={"a": _ci(boots["a"]), "b": _ci(boots["b"])})  # fmt: skip
    return out


def _peak(alpha: float, beta: float) -> tuple[float | None, float | None]:
    if beta <= 0:
        return None, None
    d_star = alpha / (2 * beta)
    if d_star <= 0:
        return None, None
    return d_star**2, alpha**2 / (4 * beta)


def gold_curve_fit(kl: Sequence[float], reward: Sequence[float], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """R(d) = d (alpha - beta d), d = sqrt(KL), least squares through the origin (Gao et al. 2022).

    Rewards are measured relative to the initial policy (R(0) = 0): pass gold - gold_at_KL_0.
    Returns {"alpha", "beta", "r2", "n", "peak_kl", "peak_reward", "peak_in_range",
    "ci": {"alpha", "beta", "peak_kl"}, "note"?}. With beta <= 0 (or alpha <= 0) the curve has no
    peak at positive d: peak_kl and peak_reward are None and "note" says so.
    """
    d, y = _clean(kl, reward)
    out: dict = {
        "alpha": None,
        "beta": None,
        "r2": None,
        "n": int(d.size),
        "peak_kl": None,
        "peak_reward": None,
        "peak_in_range": None,
        "ci": {"alpha": [None, None], "beta": [None, None], "peak_kl": [None, None]},
    }
    if d.size < 3 or np.ptp(d) == 0:
        out["note"] = f"{d.size} points with distinct KL: too few for a fit (need 3)"
        return out
    design = np.column_stack([d, -(d**2)])
    alpha, beta = (float(v) for v in _lstsq(design, y))
    peak_kl, peak_reward = _peak(alpha, beta)
    boots: dict[str, list] = {"alpha": [], "beta": [], "peak_kl": []}
    for idx in _boot_indices(d.size, n_boot, seed):
        if np.ptp(d[idx]) == 0:
            continue
        ba, bb = _lstsq(design[idx], y[idx])
        boots["alpha"].append(ba)
        boots["beta"].append(bb)
        boots["peak_kl"].append(_peak(ba, bb)[0])
    r2 = _r2(y, design @ np.array([alpha, beta]))  # centred: can be negative, as the curve has no intercept
    out.update(alpha=alpha, beta=beta, r2=r2, peak_kl=peak_kl, peak_reward=peak_reward,
               ci={k: _ci(v) for k, v in boots.items()})  # fmt: skip
    if peak_kl is None:
        out["note"] = (
            f"beta = {beta:.3g} <= 0: the gold reward has no peak, it still rises at the largest KL"
            if beta <= 0
            else f"alpha = {alpha:.3g} <= 0: the gold reward falls from the start"
        )
    else:
        out["peak_in_range"] = bool(peak_kl <= float((d**2).max()))
        if not out["peak_in_range"]:
            out["note"] = f"the fitted peak (KL {peak_kl:.3g}) lies beyond the largest KL measured: an extrapolation"
        failed = sum(v is None for v in boots["peak_kl"])
        if failed:
            out["peak_kl_boot_no_peak"] = failed / max(1, len(boots["peak_kl"]))
    return out
