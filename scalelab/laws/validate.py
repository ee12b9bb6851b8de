"""Input checks shared by the fits: every message says what is wrong and what to do."""

from __future__ import annotations

import numpy as np

from scalelab.errors import UserError


def positive_finite(name: str, values: object, *, first_line: int | None = None) -> np.ndarray:
    """Return `values` as a 1-D float array, or raise UserError if any is NaN, infinite or <= 0.

    Scaling laws are fitted in log space, so every N, D, C and loss must be a positive number.
    `first_line` (e.g. 2 for a CSV with a header) turns array positions into file line numbers.
    """
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"{name} contains values that are not numbers ({exc}); fix or remove those rows"
        ) from exc
    for bad, what in ((np.isnan(arr), "missing (NaN)"), (np.isinf(arr), "infinite")):
        if bad.any():
            raise UserError(f"{name} has {int(bad.sum())} {what} values ({_where(bad, first_line)}); "
                            "fill them in or remove those rows before fitting")
    bad = arr <= 0
    if bad.any():
        raise UserError(
            f"{name} has {int(bad.sum())} non-positive values ({_where(bad, first_line)}, e.g. "
            f"{arr[bad][0]:g}); scaling laws are fitted in log space, so every value must be > 0: "
            "fix or remove those rows"
        )
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the arrays, or UserError naming the lengths that differ."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise UserError(f"inputs have different lengths ({listed}); pass one value per run for each")
    return next(iter(lengths.values()))


def enough_points(n_points: int, n_params: int, law: str) -> None:
    """UserError unless there are more data points than free parameters."""
    if n_points <= n_params:
        raise UserError(
            f"the {law} law has {n_params} parameters but only {n_points} data points were given; "
            f"add runs so that there are at least {n_params + 1} points"
        )


def distinct_values(name: str, values: np.ndarray, needed: int, law: str, why: str) -> None:
    """UserError unless `values` take at least `needed` distinct values (rtol 1e-9).

    A law cannot be identified from a design that does not vary what it explains: with one N,
    A and alpha trade off freely (a constant N once gave alpha = 2.16, A = 6e10 with exit 0).
    """
    v = np.sort(np.asarray(values, dtype=float))
    distinct = 1 + int(np.sum(np.diff(v) > 1e-9 * np.abs(v[1:]))) if v.size else 0
    if distinct < needed:
        raise UserError(
            f"{name} takes only {distinct} distinct value{'s' if distinct != 1 else ''}, so the {law} law "
            f"cannot be identified ({why}); add runs at at least {needed} different {name} values"
        )


def varying_loss(name: str, loss: np.ndarray, law: str) -> None:
    """UserError if every loss is the same: a flat design determines no exponent (and E would be arbitrary)."""
    y = np.asarray(loss, dtype=float)
    if y.size and np.ptp(y) <= 1e-12 * np.abs(y).max():
        raise UserError(
            f"every {name} value is the same ({y[0]:g}), so the {law} law has nothing to fit (zero variance); "
            "check that the column holds per-run final losses and that the runs differ in size or data"
        )


def _where(mask: np.ndarray, first_line: int | None) -> str:
    pos = np.flatnonzero(mask)[:5]
    if first_line is None:
        listed = ", ".join(str(int(i)) for i in pos)
        return f"at index {listed}{', ...' if mask.sum() > 5 else ''}"
    listed = ", ".join(str(int(i) + first_line) for i in pos)
    return f"on line {listed}{', ...' if mask.sum() > 5 else ''}"
