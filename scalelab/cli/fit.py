"""`scalelab fit ...`: fit scaling laws to a CSV of runs and print the parameters.

    scalelab fit chinchilla runs.csv [--n-col N] [--d-col D] [--loss-col loss]
                                     [--bootstrap K] [--seed S] [--flops C ...] [--json]
    scalelab fit power runs.csv --x N --y loss [--bootstrap K] [--seed S] [--json]
    ... --predict TEST.csv: also predict every row of TEST.csv (same column names) with a 95%
        prediction interval (`laws.forecast_points`: residual bootstrap of K refits, default 200)

With --json, one JSON object is printed (other tools parse it): the parameters, `n_points`, and
with --bootstrap a `ci` object of 95% percentile intervals, e.g. {"alpha": [lo, hi], ...}. With
--predict: `predictions`, one per TEST row in order, {N, D (or x), predicted, ci: [lo, hi]} plus
`actual`, `rel_error` and `covered` when TEST has the loss column, and `prediction_summary`
{n, level, method, median_abs_rel_error, coverage}.
Problems with the file raise `UserError`, which the main CLI prints and exits 2 on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

from scalelab.cli.common import JsonOpt, fmt, out, print_json, show_progress
from scalelab.errors import UserError

if TYPE_CHECKING:  # numpy, pandas and the laws load when a command runs, not at CLI start-up
    import numpy as np
    import pandas as pd

    from scalelab.laws.bootstrap import BootstrapResult, Progress

fit_app = typer.Typer(help="Fit scaling laws (Chinchilla Approach 3, power laws) to a CSV of runs.",
                      no_args_is_help=True)

FIRST_DATA_LINE = 2  # line 1 of the CSV is the header


def read_runs(path: Path) -> pd.DataFrame:
    """The CSV as a DataFrame, or a UserError saying why it cannot be read."""
    import pandas as pd

    if not path.exists():
        raise UserError(f"file {path} does not exist; pass the path of a CSV with one row per run")
    if path.is_dir():
        raise UserError(f"{path} is a directory; pass the path of a CSV file with one row per run")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise UserError(f"{path} is empty; it needs a header line and one row per run") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a readable CSV ({exc}); check the delimiter and quoting") from exc
    return frame


def find_column(frame: pd.DataFrame, name: str, option: str, path: Path) -> str:
    """The column called `name`, matched exactly or else case-insensitively."""
    if name in frame.columns:
        return name
    matches = [c for c in frame.columns if str(c).strip().lower() == name.strip().lower()]
    if len(matches) == 1:
        return str(matches[0])
    available = ", ".join(repr(str(c)) for c in frame.columns)
    raise UserError(f"{path} has no column {name!r} (columns: {available}); "
                    f"name the right one with {option} COLUMN")


def numeric_column(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The column as floats, or a UserError naming the lines whose values are not numbers."""
    import numpy as np
    import pandas as pd

    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        lines = ", ".join(str(i + FIRST_DATA_LINE) for i in np.flatnonzero(bad.to_numpy())[:5])
        raise UserError(f"column {column!r} of {path} has values that are not numbers (e.g. "
                        f"{raw[bad].iloc[0]!r} on line {lines}); fix or remove those rows")
    return values.to_numpy(dtype=float)


def _bootstrap_progress(run: Callable[[Progress | None], BootstrapResult], quiet: bool,
                        n_boot: int) -> BootstrapResult:
    """Call `run(progress)` with a progress bar on stderr unless `quiet`."""
    from scalelab.cli.progress import eta_bar

    if quiet:
        return run(None)
    with eta_bar("bootstrap refits", n_boot) as progress:
        return run(progress)


def _print_table(title: str, result: dict[str, object], keys: list[str]) -> None:
    ci: dict[str, list[float]] = result.get("ci", {})  # type: ignore[assignment]
    table = Table(title=escape(title))
    table.add_column("quantity")
    table.add_column("estimate", justify="right")
    if ci:
        table.add_column("95% interval", justify="right")
    for key in keys + [k for k in ci if k not in keys]:
        row = [escape(key), fmt_na(result.get(key))]
        if ci:
            row.append(escape(f"[{fmt_na(ci[key][0])}, {fmt_na(ci[key][1])}]") if key in ci else "")
        table.add_row(*row)
    out.print(table)
    out.print(f"{result['n_points']} points; summed Huber loss {fmt_na(result['objective'])}", markup=False)


PREDICT_BOOT = 200
"""Bootstrap refits behind prediction intervals when --predict is given without --bootstrap."""

PredictOpt = typer.Option(None, "--predict", help="CSV of runs to predict (same columns; the loss column "
                          "is optional): adds `predictions` with 95% prediction intervals.")


def read_test(path: Path, keys: dict[str, tuple[str, str]], loss_col: str) -> tuple[dict, np.ndarray | None]:
    """TEST's columns {output key: values} and its losses (None without a loss column), checked before any fit.

    keys: {output key: (column name, option that names it)}.
    """
    frame = read_runs(path)
    if len(frame) == 0:
        raise UserError(f"{path} has a header but no rows; add the runs to predict")
    cols = {k: numeric_column(frame, find_column(frame, c, opt, path), path) for k, (c, opt) in keys.items()}
    for k, v in cols.items():
        if not (v > 0).all():
            raise UserError(f"column {keys[k][0]!r} of {path} must hold positive numbers in every row "
                            f"(line {int((~(v > 0)).argmax()) + FIRST_DATA_LINE}); fix or remove that row")
    has_loss = loss_col in frame.columns or any(str(c).strip().lower() == loss_col.lower() for c in frame.columns)
    actual = numeric_column(frame, find_column(frame, loss_col, "--loss-col", path), path) if has_loss else None
    return cols, actual


def predict_rows(test: tuple[dict, np.ndarray | None], predict) -> dict[str, object]:
    """Predict TEST (`read_test`) with `predict(*columns)` -> `PointPredictions`; score it if it has losses."""
    cols, actual = test
    scored = predict(*cols.values()).score(actual)
    rows = [{k: float(v[i]) for k, v in cols.items()} | r for i, r in enumerate(scored["predictions"])]
    return {"predictions": rows, "prediction_summary": scored["summary"]}


def _print_predictions(res: dict[str, object]) -> None:
    rows: list[dict] = res["predictions"]  # type: ignore[assignment]
    table = Table(title="Predictions (95% prediction intervals)")
    keys = [k for k in rows[0] if k not in ("ci", "covered")]
    for k in keys + ["95% interval"]:
        table.add_column(escape(k), justify="right")
    for r in rows:
        table.add_row(*[fmt_na(r[k]) for k in keys], f"[{fmt_na(r['ci'][0])}, {fmt_na(r['ci'][1])}]")
    out.print(table)
    s: dict = res["prediction_summary"]  # type: ignore[assignment]
    if "coverage" in s:
        out.print(f"median |relative error| {fmt_na(s['median_abs_rel_error'])}; {s['coverage']:.0%} of "
                  f"{s['n']} actual losses inside their interval", markup=False)


def fmt_na(value: object) -> str:
    return fmt(value, missing="n/a")


@fit_app.command("chinchilla")
def chinchilla_command(
    csv: Path = typer.Argument(..., help="CSV with one row per run: parameters, tokens and final loss."),
    n_col: str = typer.Option("N", "--n-col", help="Column with parameter counts N."),
    d_col: str = typer.Option("D", "--d-col", help="Column with training tokens D."),
    loss_col: str = typer.Option("loss", "--loss-col", help="Column with final losses."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples for 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples."),
    flops: list[float] = typer.Option([], "--flops", help="Budgets C for N_opt, D_opt, tokens/param."),
    predict: Optional[Path] = PredictOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla Approach 3, Hoffmann et al. 2022)."""
    from scalelab.laws.bootstrap import bootstrap_chinchilla, chinchilla_quantities
    from scalelab.laws.chinchilla import check_chinchilla_data, fit_chinchilla

    frame = read_runs(csv)
    cols = [find_column(frame, n_col, "--n-col", csv), find_column(frame, d_col, "--d-col", csv),
            find_column(frame, loss_col, "--loss-col", csv)]
    n, d, y = check_chinchilla_data(*(numeric_column(frame, c, csv) for c in cols),
                                    names=tuple(f"column {c!r}" for c in cols),  # type: ignore[arg-type]
                                    first_line=FIRST_DATA_LINE)
    test = read_test(predict, {"N": (cols[0], "--n-col"), "D": (cols[1], "--d-col")}, cols[2]) if predict else None
    fit = fit_chinchilla(n, d, y)
    result: dict[str, object] = {"law": "chinchilla", **fit.to_dict()}
    derived = chinchilla_quantities(fit.theta, flops)
    result.update({k: float(v[0]) for k, v in derived.items() if k not in result})
    if bootstrap > 0:
        boot = _bootstrap_progress(
            lambda progress: bootstrap_chinchilla(n, d, y, n_boot=bootstrap, seed=seed, fit=fit,
                                                  flops=flops, progress=progress),
            not show_progress(), bootstrap)
        result.update(ci={k: list(v) for k, v in boot.ci.items()}, n_boot=bootstrap, seed=seed)
    if test is not None:
        from scalelab.laws.forecast_points import predict_chinchilla

        result.update(predict_rows(test, lambda nn, dd: predict_chinchilla(
            n, d, y, nn, dd, n_boot=bootstrap or PREDICT_BOOT, seed=seed, fit=fit)))
    if as_json:
        print_json(result)
        return
    if test is not None:
        _print_predictions(result)
    _print_table(f"Chinchilla fit of {csv.name}", result,
                 ["E", "A", "B", "alpha", "beta", "a", "b", "G"]
                 + [k for k in result if "@" in k])


@fit_app.command("power")
def power_command(
    csv: Path = typer.Argument(..., help="CSV with one row per run."),
    x: str = typer.Option(..., "--x", help="Column with the scale variable (N, D or C)."),
    y: str = typer.Option(..., "--y", help="Column with the loss."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples for 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples."),
    predict: Optional[Path] = PredictOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Fit L(x) = E + A x^(-alpha) (Kaplan et al. 2020 with an irreducible term)."""
    from scalelab.laws.bootstrap import bootstrap_power_law
    from scalelab.laws.power import check_power_data, fit_power_law

    frame = read_runs(csv)
    cols = [find_column(frame, x, "--x", csv), find_column(frame, y, "--y", csv)]
    xa, ya = check_power_data(*(numeric_column(frame, c, csv) for c in cols),
                              names=tuple(f"column {c!r}" for c in cols),  # type: ignore[arg-type]
                              first_line=FIRST_DATA_LINE)
    test = read_test(predict, {"x": (cols[0], "--x")}, cols[1]) if predict else None
    fit = fit_power_law(xa, ya)
    result: dict[str, object] = {"law": "power", "x": cols[0], "y": cols[1], **fit.to_dict()}
    if bootstrap > 0:
        boot = _bootstrap_progress(
            lambda progress: bootstrap_power_law(xa, ya, n_boot=bootstrap, seed=seed, fit=fit,
                                                 progress=progress),
            not show_progress(), bootstrap)
        result.update(ci={k: list(v) for k, v in boot.ci.items()}, n_boot=bootstrap, seed=seed)
    if test is not None:
        from scalelab.laws.forecast_points import predict_power_law

        result.update(predict_rows(test, lambda xx: predict_power_law(
            xa, ya, xx, n_boot=bootstrap or PREDICT_BOOT, seed=seed, fit=fit)))
    if as_json:
        print_json(result)
        return
    if test is not None:
        _print_predictions(result)
    _print_table(f"Power-law fit of {csv.name}: {cols[1]} vs {cols[0]}", result, ["E", "A", "alpha"])
