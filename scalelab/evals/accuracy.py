"""Preference-model accuracy: how often the chosen response scores higher, with a bootstrap interval.

Askell et al. 2021 (arXiv 2112.00861) and Bai et al. 2022 (arXiv 2204.05862) report
PM accuracy on held-out comparisons: the fraction of pairs with r_chosen > r_rejected. A tie is
counted as half right, which is what a coin flip between equal scores would earn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.bootstrap import percentile_ci


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy ``value`` in [0, 1], its bootstrap interval ``ci`` = (lo, hi) and the number of pairs."""

    value: float
    ci: tuple[float, float]
    n: int


def _scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise UserError(f"{name} must be a flat list of scores, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise UserError(f"{name}[{bad}] is {array[bad]}; PM scores must be finite (check the model for NaNs)")
    return array


def pair_outcomes(scores_chosen: Sequence[float] | np.ndarray,
                  scores_rejected: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per pair: 1.0 if the chosen scored higher, 0.5 for a tie, 0.0 otherwise."""
    chosen, rejected = _scores(scores_chosen, "scores_chosen"), _scores(scores_rejected, "scores_rejected")
    if chosen.shape != rejected.shape:
        raise UserError(f"got {chosen.size} chosen but {rejected.size} rejected scores; one each per pair")
    return np.where(chosen > rejected, 1.0, np.where(chosen == rejected, 0.5, 0.0))


def bootstrap_mean_ci(outcomes: np.ndarray, *, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of outcomes in {0, 0.5, 1}.

    Resampling n pairs with replacement only changes how many wins, ties and losses there are, so the
    resampled counts are drawn from Multinomial(n, observed frequencies): the same distribution as
    resampling the pairs themselves, in O(n_boot) memory however large n is.
    """
    if not 0 < level < 1:
        raise UserError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise UserError(f"n_boot must be >= 1, got {n_boot}")
    outcomes = np.asarray(outcomes, dtype=float)
    if outcomes.size == 0 or not np.all(np.isin(outcomes, (0.0, 0.5, 1.0))):
        raise UserError("outcomes must be a non-empty array of 0, 0.5 and 1 (see pair_outcomes)")
    n = outcomes.size
    freq = np.array([(outcomes == 1.0).sum(), (outcomes == 0.5).sum(), (outcomes == 0.0).sum()]) / n
    counts = np.random.default_rng(seed).multinomial(n, freq, size=n_boot)
    means = (counts[:, 0] + 0.5 * counts[:, 1]) / n
    return percentile_ci(means, level)


def pairwise_accuracy(
    scores_chosen: Sequence[float] | np.ndarray,
    scores_rejected: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> AccuracyResult:
    """Fraction of pairs with r_chosen > r_rejected (ties count 0.5) and its bootstrap interval.

    The interval is the percentile bootstrap over pairs at ``level`` (95% by default), seeded.
    """
    outcomes = pair_outcomes(scores_chosen, scores_rejected)
    if outcomes.size == 0:
        raise UserError("no pairs to score; the accuracy of an empty set is undefined")
    return AccuracyResult(float(outcomes.mean()), bootstrap_mean_ci(outcomes, n_boot=n_boot, seed=seed,
                                                                    level=level), int(outcomes.size))
