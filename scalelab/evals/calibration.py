"""Calibration of a preference model: do its predicted win probabilities match how often it wins?

A PM's scores define P(A > B) = 1 / (1 + exp(r_B - r_A)) (Askell et al. 2021, arXiv 2112.00861;
Bai et al. 2022, arXiv 2204.05862, whose helpfulness PMs are well calibrated). On
held-out comparisons we bin the predicted probability and compare each bin's mean prediction with the
fraction of pairs it got right: a reliability diagram, summarised by the expected calibration error
ECE = sum_b (n_b / n) |observed_b - predicted_b|.

Every pair's label says the chosen side won, so "P(chosen wins)" alone would always be compared with
1. Two equivalent conventions fix this:

- ``folded`` (default, as in Bai et al.'s calibration plot): per pair, the predicted winner is the
  side with the higher score, its confidence max(p, 1 - p) lies in [0.5, 1], and the outcome is
  whether the chosen side was the predicted winner (0.5 for an exact tie). Bins cover [0.5, 1].
- ``symmetric``: each pair counts twice, as (p, won) and (1 - p, lost) with p = P(chosen wins). Bins
  cover [0, 1] and the diagram is point-symmetric about (0.5, 0.5); its upper half is the folded one.

An over-confident PM (scores too large) lies below the diagonal at high confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scalelab.errors import UserError

CONVENTIONS = ("folded", "symmetric")


def preference_probability(r_a: float | np.ndarray, r_b: float | np.ndarray) -> np.ndarray:
    """P(A > B) = 1 / (1 + exp(r_B - r_A)), computed without overflow."""
    diff = np.asarray(r_a, dtype=float) - np.asarray(r_b, dtype=float)
    return 0.5 * (1.0 + np.tanh(0.5 * diff))  # the logistic function, stable for any diff


@dataclass(frozen=True)
class CalibrationResult:
    """Reliability-diagram data; arrays have one entry per bin (NaN where a bin is empty)."""

    convention: str
    bin_edges: np.ndarray  # (n_bins + 1,)
    mean_predicted: np.ndarray  # (n_bins,) mean predicted probability in the bin
    observed: np.ndarray  # (n_bins,) fraction of the bin's predictions that came true
    counts: np.ndarray  # (n_bins,) predictions in the bin (2 per pair when symmetric)
    ece: float
    n_pairs: int


def calibration(
    scores_chosen: Sequence[float] | np.ndarray,
    scores_rejected: Sequence[float] | np.ndarray,
    *,
    n_bins: int = 10,
    convention: str = "folded",
) -> CalibrationResult:
    """Reliability diagram and ECE of PM scores on comparisons (chosen known to win).

    Bins are ``n_bins`` equal-width intervals of the predicted probability (on [0.5, 1] when
    ``folded``, [0, 1] when ``symmetric``; see the module docstring); ECE is weighted by bin counts.
    """
    if convention not in CONVENTIONS:
        raise UserError(f"unknown calibration convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise UserError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    chosen = np.asarray(scores_chosen, dtype=float)
    rejected = np.asarray(scores_rejected, dtype=float)
    if chosen.ndim != 1 or chosen.shape != rejected.shape or chosen.size == 0:
        raise UserError(f"need two equal-length, non-empty flat score lists, got shapes {chosen.shape} "
                        f"and {rejected.shape}")
    if not (np.all(np.isfinite(chosen)) and np.all(np.isfinite(rejected))):
        raise UserError("PM scores must be finite; NaN or inf scores mean the model or its inputs are broken")
    p = preference_probability(chosen, rejected)
    if convention == "folded":
        predicted = np.maximum(p, 1.0 - p)
        outcome = np.where(p > 0.5, 1.0, np.where(p == 0.5, 0.5, 0.0))
        lo = 0.5
    else:
        predicted = np.concatenate([p, 1.0 - p])
        outcome = np.concatenate([np.ones_like(p), np.zeros_like(p)])
        lo = 0.0
    edges = np.linspace(lo, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(index, weights=predicted, minlength=n_bins) / counts
        observed = np.bincount(index, weights=outcome, minlength=n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / counts.sum() * np.abs(observed[filled] - mean_predicted[filled])))
    return CalibrationResult(convention, edges, mean_predicted, observed, counts, ece, int(chosen.size))


def expected_calibration_error(
    scores_chosen: Sequence[float] | np.ndarray,
    scores_rejected: Sequence[float] | np.ndarray,
    n_bins: int = 10,
) -> float:
    """ECE of the folded reliability diagram (see `calibration`)."""
    return calibration(scores_chosen, scores_rejected, n_bins=n_bins).ece


def reliability_figure(result: CalibrationResult, title: str | None = None) -> Any:
    """A matplotlib Figure: observed win frequency vs predicted probability, with the diagonal.

    Bin counts are drawn as grey bars on a second axis. Uses `matplotlib.figure.Figure` directly,
    so no pyplot backend is touched; save it with ``fig.savefig(path)``.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("drawing figures needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    lo = float(result.bin_edges[0])
    widths = np.diff(result.bin_edges)
    counts_ax = ax.twinx()
    counts_ax.bar(result.bin_edges[:-1], result.counts, width=widths, align="edge", color="0.85", zorder=0)
    counts_ax.set_ylabel("predictions per bin")
    ax.set_zorder(counts_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot([lo, 1.0], [lo, 1.0], linestyle="--", color="0.4", label="perfect calibration")
    filled = result.counts > 0
    ax.plot(result.mean_predicted[filled], result.observed[filled], marker="o", label="preference model")
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(lo if np.all(result.observed[filled] >= lo) else 0.0, 1.0)
    what = "confidence of the predicted winner" if result.convention == "folded" else "P(A > B)"
    ax.set_xlabel(f"predicted probability ({what})")
    ax.set_ylabel("observed frequency")
    ax.set_title(title or f"PM calibration: ECE {result.ece:.3f}, {result.n_pairs} pairs")
    ax.legend(loc="upper left")
    return fig
