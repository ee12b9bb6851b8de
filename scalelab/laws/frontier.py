"""The compute-efficient frontier L(C) (Kaplan et al. 2020, Section 3.3 and Figure 1).

Kaplan's L(C) is not a law of final losses: it is fitted to the lower envelope of the
loss-versus-compute curves of all runs, i.e. the best loss any run reached with C FLOPs,
whichever size it had. A run's final loss lies on the frontier only if its size was
compute-efficient for its budget, so fitting final losses of an arbitrary design mixes the
law with the design. Here the envelope is read on a grid of budgets from every run's evaluated
(FLOPs, loss) points (interpolated linearly in log C between evaluations, never extrapolated),
and L(C) = E + A C^(-alpha) is fitted to it (`power.fit_power_law`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.power import PowerLawFit, fit_power_law

POINTS_PER_DECADE = 8


@dataclass
class FrontierFit:
    """The envelope points and the power law fitted through them.

    Attributes:
        flops, loss: (G,) grid budgets and the lowest loss any run reached there.
        run: (G,) index (into the curves given) of the run that reached it.
        law: L(C) = E + A C^(-alpha) fitted to (flops, loss).
    """

    flops: np.ndarray
    loss: np.ndarray
    run: np.ndarray
    law: PowerLawFit

    def to_dict(self) -> dict[str, object]:
        """Plain numbers for JSON: the law's parameters plus the envelope points."""
        return self.law.to_dict() | {"frontier_flops": self.flops.tolist(), "frontier_loss": self.loss.tolist(),
                                     "frontier_run": self.run.tolist()}


def _curve_at(flops: np.ndarray, loss: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Loss interpolated in log C at `at`; NaN outside the run's evaluated range."""
    order = np.argsort(flops)
    lc, ly = np.log(flops[order]), loss[order]
    out = np.interp(np.log(at), lc, ly)
    out[(at < flops.min() * (1 - 1e-9)) | (at > flops.max() * (1 + 1e-9))] = np.nan
    return out


def compute_frontier(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]], *, start: float | None = None,
    points_per_decade: int = POINTS_PER_DECADE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flops, loss, run): the lower envelope of the runs' loss-vs-FLOPs curves on a log grid.

    Args:
        curves: per run, its evaluated (FLOPs so far, loss) points.
        start: the smallest budget on the grid; default a tenth of the smallest run's final FLOPs
            (earlier points are warm-up, not scaling). The grid ends at the largest final FLOPs.
    """
    runs = [(np.asarray(c, dtype=float), np.asarray(v, dtype=float)) for c, v in curves]
    runs = [(c[(c > 0) & np.isfinite(v)], v[(c > 0) & np.isfinite(v)]) for c, v in runs]
    runs = [r for r in runs if r[0].size >= 2]
    if len(runs) < 2:
        raise UserError("the compute frontier needs the loss curves (at least 2 evaluations each) of at least "
                        "2 runs; train more runs or evaluate more often (train.eval_every)")
    finals = np.array([c.max() for c, _ in runs])
    lo = start if start is not None else finals.min() / 10
    lo = max(lo, min(c.min() for c, _ in runs))
    n = max(2, int(np.ceil(points_per_decade * np.log10(finals.max() / lo))) + 1)
    grid = np.geomspace(lo, finals.max(), n)
    table = np.array([_curve_at(c, v, grid) for c, v in runs])  # (runs, G)
    covered = np.isfinite(table).any(axis=0)
    table = np.where(np.isfinite(table), table, np.inf)[:, covered]
    best = np.argmin(table, axis=0)
    return grid[covered], table[best, np.arange(best.size)], best


def fit_compute_frontier(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]], *, start: float | None = None,
) -> FrontierFit:
    """Fit Kaplan's L(C) = E + A C^(-alpha) to the compute-efficient frontier of the runs' curves."""
    flops, loss, run = compute_frontier(curves, start=start)
    if flops.size < 4:
        raise UserError(f"the compute frontier has {flops.size} grid points; a 3-parameter law needs at least 4: "
                        "add runs that span a wider range of compute")
    return FrontierFit(flops=flops, loss=loss, run=run, law=fit_power_law(flops, loss))
