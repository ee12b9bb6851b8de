"""Smooth or abrupt: does a thresholded metric jump more than its continuous metric's trend allows?

Ganguli et al. 2022 (arXiv 2202.07785, section 2.2): loss falls smoothly with compute while some
capabilities, scored by a thresholded metric such as exact match, jump between adjacent sizes.
A thresholded metric can jump merely because a smooth continuous metric crosses a threshold, so a
jump counts as abrupt only when the continuous metric of the same task does not predict it.

The rule (`abrupt_jumps`), for one task over a ladder of K >= 3 sizes sorted by compute C:

1. Fit the continuous metric c (the mean log-probability of the whole answer, nats) against
   x = log10 C by least squares: c_hat(x) = u + v x. Its residual SD s (K - 2 degrees of freedom)
   is the size-to-size jitter around the smooth trend.
2. The smooth trend's accuracy: a_hat = exp(c_hat / k), clipped to [0.5/n, 1 - 0.5/n]. With k = 1 it
   is the probability of producing the whole answer, the exact-match rate of a *sampling* model;
   greedy decoding does better (each answer token need only be the argmax), so k in [1, 4] is fitted
   per task as the value whose link best matches the observed exact match at the median size
   (least median of squares: robust to one step in the ladder, which a least-squares link would
   absorb). The continuous metric then enters as c / k (its residual SD as s / k).
3. Between adjacent sizes i, i + 1 the observed jump is d = a_{i+1} - a_i and the predicted jump
   d_hat = a_hat_{i+1} - a_hat_i. Under the smooth null each a_j is a binomial share of n examples
   around a_hat_j, which itself jitters by about a_hat_j s (d exp(c) = exp(c) dc), so
   sd(d - d_hat)^2 = sum over j in {i, i+1} of a_hat_j (1 - a_hat_j) / n + (a_hat_j s)^2.
4. A jump is abrupt when d - d_hat > z sd (z = 3 by default) and d >= min_jump (0.2 by default:
   a statistically significant rise of a few percent is not what anyone calls emergence). A task
   is abrupt when any of its jumps is.

Only upward jumps count (capabilities appear). The false-positive rate on smooth ladders and the
power against planted steps are measured by `simulate_rule` (numbers in docs/predictability.md)
and tested in tests/test_laws_abrupt.py. With the link fixed at k = 1 (`fit_link=False`), smooth
ladders whose exact match follows exp(c / 2) are flagged 8% of the time; the fitted link brings
that to about 1%, at some cost in power against small steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError

Z_DEFAULT, MIN_JUMP_DEFAULT = 3.0, 0.2


@dataclass(frozen=True)
class AbruptResult:
    """The verdict of the rule on one task's ladder and the numbers behind it."""

    abrupt: bool
    z_scores: list[float]
    """(d - d_hat) / sd for each adjacent pair, in compute order."""
    jumps: list[float]
    """Observed jumps d of the thresholded metric."""
    predicted_jumps: list[float]
    """Jumps d_hat the smooth continuous trend predicts."""
    slope: float
    """v: change of the continuous metric per decade of compute."""
    residual_sd: float
    """s: jitter of the continuous metric around its trend."""
    largest: int | None
    """Index i of the most abrupt jump (between sizes i and i + 1), None when no jump is abrupt."""
    link_power: float = 1.0
    """k of the link a_hat = exp(c_hat / k) (1: the sampling rate; fitted in [1, 4] unless fit_link=False)."""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _check(compute, thresholded, continuous, n: int):
    x = np.log10(np.asarray(compute, dtype=float))
    a = np.asarray(thresholded, dtype=float)
    c = np.asarray(continuous, dtype=float)
    if not (x.shape == a.shape == c.shape) or x.ndim != 1:
        raise UserError("compute, thresholded and continuous metrics must be equal-length lists (one per size)")
    if x.size < 3:
        raise UserError(f"the abrupt-jump rule needs at least 3 sizes, got {x.size}; add sizes to the ladder")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(a)) and np.all(np.isfinite(c))):
        raise UserError("non-finite compute or metric values; check the runs (a failed evaluation?)")
    if np.any((a < 0) | (a > 1)) or n < 1:
        raise UserError("the thresholded metric must be a share in [0, 1] of n >= 1 examples")
    order = np.argsort(x, kind="stable")
    return x[order], a[order], c[order]


LINK_POWERS = np.linspace(1.0, 4.0, 31)
"""The link powers k tried (step 0.1)."""


def fit_link_power(thresholded: np.ndarray, c_hat: np.ndarray) -> float:
    """k in [1, 4] minimising the median over sizes of (a - exp(c_hat / k))^2 (least median of squares)."""
    errs = [float(np.median((thresholded - np.exp(np.minimum(c_hat, 0.0) / k)) ** 2)) for k in LINK_POWERS]
    return float(LINK_POWERS[int(np.argmin(errs))])


def abrupt_jumps(compute, thresholded, continuous, n: int, *, z: float = Z_DEFAULT,
                 min_jump: float = MIN_JUMP_DEFAULT, fit_link: bool = True) -> AbruptResult:  # fmt: skip
    """Apply the rule of the module docstring to one task (one value per size; n examples per size)."""
    x, a, c = _check(compute, thresholded, continuous, n)
    v, u = np.polyfit(x, c, 1)
    c_hat = u + v * x
    s = float(np.sqrt(np.sum((c - c_hat) ** 2) / (x.size - 2))) if x.size > 2 else 0.0
    k = fit_link_power(a, c_hat) if fit_link else 1.0
    c_hat, s = c_hat / k, s / k
    a_hat = np.clip(np.exp(np.minimum(c_hat, 0.0)), 0.5 / n, 1 - 0.5 / n)
    var = a_hat * (1 - a_hat) / n + (a_hat * s) ** 2
    d, d_hat = np.diff(a), np.diff(a_hat)
    sd = np.sqrt(var[:-1] + var[1:])
    zs = (d - d_hat) / sd
    flagged = (zs > z) & (d >= min_jump)
    largest = int(np.argmax(np.where(flagged, zs, -np.inf))) if flagged.any() else None
    return AbruptResult(bool(flagged.any()), zs.tolist(), d.tolist(), d_hat.tolist(), float(v), s, largest, k)


def _smooth_ladder(rng, x, n: int, jitter: float, link_power: float = 1.0):
    """A smooth ladder: answer log-prob linear in log10 C from about log(1/n) to log(0.9), with jitter; exact
    match is a binomial share at exp(log-prob / link_power) (1: the rule's own link; > 1: greedy decoding
    beating sampling, as when each answer token is the argmax at moderate probability)."""
    lo, hi = rng.uniform(np.log(1.0 / n), np.log(0.3)), rng.uniform(np.log(0.5), np.log(0.95))
    c_true = lo + (hi - lo) * (x - x[0]) / (x[-1] - x[0]) + rng.normal(0, jitter, x.size)
    c_true = np.minimum(c_true, -1e-3)
    a = rng.binomial(n, np.exp(c_true / link_power)) / n
    return a, c_true + rng.normal(0, 0.02, x.size)  # the measured c: a mean over n examples, itself a bit noisy


def simulate_rule(n_ladders: int = 2000, *, sizes: int = 5, n: int = 64, jitter: float = 0.1,
                  step_from: float = 0.02, step_to: float = 0.7, link_power: float = 1.0, seed: int = 0,
                  z: float = Z_DEFAULT, min_jump: float = MIN_JUMP_DEFAULT, fit_link: bool = True) -> dict:  # fmt: skip
    """False-positive rate on smooth ladders and power against planted steps.

    Smooth: the answer log-prob is linear in log compute (plus `jitter` nats of size-to-size noise)
    and exact match is a binomial share of n at exp(log-prob). Step: the same smooth log-prob, but
    exact match is `step_from` below a random size and `step_to` from it on (a jump the continuous
    metric does not show). `link_power` > 1 makes the smooth ladders' exact match exp(c / link_power):
    the false-positive rate when greedy decoding beats the rule's link.
    Returns {"false_positive_rate", "power", "n_ladders", ...}.
    """
    rng = np.random.default_rng(seed)
    x = np.arange(sizes) * 0.5 + 12.0  # half a decade of compute between sizes
    fp = hits = 0
    for _ in range(n_ladders):
        a, c = _smooth_ladder(rng, x, n, jitter, link_power)
        fp += abrupt_jumps(10**x, a, c, n, z=z, min_jump=min_jump, fit_link=fit_link).abrupt
        at = int(rng.integers(1, sizes))
        p = np.where(np.arange(sizes) >= at, step_to, step_from)
        c_flat = np.log(max(step_from, 0.5 / n)) + 0.3 * (x - x[0]) + rng.normal(0, jitter, sizes)  # smooth and low
        hits += abrupt_jumps(10**x, rng.binomial(n, p) / n, c_flat, n, z=z, min_jump=min_jump, fit_link=fit_link).abrupt
    return {"false_positive_rate": fp / n_ladders, "power": hits / n_ladders, "n_ladders": n_ladders,
            "sizes": sizes, "n": n, "jitter": jitter, "step": [step_from, step_to], "link_power": link_power,
            "z": z, "min_jump": min_jump, "fit_link": fit_link}  # fmt: skip
