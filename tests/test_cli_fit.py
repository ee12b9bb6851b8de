"""`scalelab fit chinchilla|power`: the JSON contract other tools rely on, tables, and bad CSVs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalelab.cli.fit import fit_app
from scalelab.errors import UserError
from scalelab.laws import power_law
from scalelab.laws.synthetic import synthetic_chinchilla_runs

runner = CliRunner()


@pytest.fixture
def runs_csv(tmp_path: Path) -> Path:
    n, d, y = synthetic_chinchilla_runs(seed=0, n_budgets=5, sizes_per_budget=8)
    path = tmp_path / "runs.csv"
    pd.DataFrame({"N": n, "D": d, "loss": y, "C": 6 * n * d}).to_csv(path, index=False)
    return path


def _json(args: list[str]) -> dict:
    result = runner.invoke(fit_app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _user_error(args: list[str]) -> str:
    result = runner.invoke(fit_app, args)
    assert isinstance(result.exception, UserError), (result.exception, result.output)
    return str(result.exception)


def test_chinchilla_json_keys(runs_csv: Path) -> None:
    out = _json(["chinchilla", str(runs_csv), "--json"])
    assert {"E", "A", "B", "alpha", "beta", "a", "b", "n_points"} <= set(out)
    assert out["n_points"] == 40
    assert "ci" not in out
    assert out["a"] == pytest.approx(out["beta"] / (out["alpha"] + out["beta"]))


def test_chinchilla_bootstrap_json_has_intervals(runs_csv: Path) -> None:
    out = _json(["chinchilla", str(runs_csv), "--bootstrap", "30", "--seed", "3", "--json",
                 "--flops", "1e22"])
    for key in ("E", "A", "B", "alpha", "beta", "a", "b", "tokens_per_param@1e+22"):
        lo, hi = out["ci"][key]
        assert lo <= hi
    assert out["ci"]["alpha"][0] <= out["alpha"] <= out["ci"]["alpha"][1]
    assert out["n_boot"] == 30 and out["seed"] == 3
    again = _json(["chinchilla", str(runs_csv), "--bootstrap", "30", "--seed", "3", "--json",
                   "--flops", "1e22"])
    assert again["ci"] == out["ci"]  # same seed, same numbers


def test_chinchilla_table_and_case_insensitive_columns(tmp_path: Path, runs_csv: Path) -> None:
    frame = pd.read_csv(runs_csv).rename(columns={"N": "n", "D": "d", "loss": "Loss"})
    path = tmp_path / "lower.csv"
    frame.to_csv(path, index=False)
    result = runner.invoke(fit_app, ["chinchilla", str(path), "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    assert "alpha" in result.stdout and "95% interval" in result.stdout


def test_custom_column_names(tmp_path: Path, runs_csv: Path) -> None:
    frame = pd.read_csv(runs_csv).rename(columns={"N": "params", "D": "tokens", "loss": "val"})
    path = tmp_path / "named.csv"
    frame.to_csv(path, index=False)
    out = _json(["chinchilla", str(path), "--n-col", "params", "--d-col", "tokens",
                 "--loss-col", "val", "--json"])
    assert out["n_points"] == 40


def test_power_json(tmp_path: Path) -> None:
    x = np.geomspace(1e17, 1e21, 10)
    path = tmp_path / "power.csv"
    pd.DataFrame({"C": x, "loss": power_law(x, 1.9, 800.0, 0.15)}).to_csv(path, index=False)
    out = _json(["power", str(path), "--x", "C", "--y", "loss", "--json"])
    assert {"E", "A", "alpha", "n_points"} <= set(out)
    assert out["alpha"] == pytest.approx(0.15, rel=1e-3)
    boot = _json(["power", str(path), "--x", "C", "--y", "loss", "--json", "--bootstrap", "20"])
    assert set(boot["ci"]) == {"E", "A", "alpha"}
    table = runner.invoke(fit_app, ["power", str(path), "--x", "c", "--y", "LOSS"])
    assert table.exit_code == 0 and "alpha" in table.stdout


def test_missing_file(tmp_path: Path) -> None:
    message = _user_error(["chinchilla", str(tmp_path / "nope.csv"), "--json"])
    assert "does not exist" in message and "nope.csv" in message


def test_missing_column_names_it_and_lists_columns(runs_csv: Path) -> None:
    message = _user_error(["chinchilla", str(runs_csv), "--d-col", "tokens", "--json"])
    assert "'tokens'" in message and "'N', 'D', 'loss', 'C'" in message and "--d-col" in message
    message = _user_error(["power", str(runs_csv), "--x", "flops", "--y", "loss"])
    assert "'flops'" in message and "--x" in message


@pytest.mark.parametrize(
    ("column", "value", "needle"),
    [
        ("N", -5.0, "non-positive"),
        ("loss", 0.0, "non-positive"),
        ("D", np.nan, "NaN"),
        ("loss", "abc", "not numbers"),
    ],
)
def test_bad_values_name_the_column_and_line(tmp_path: Path, runs_csv: Path, column: str,
                                             value: object, needle: str) -> None:
    frame = pd.read_csv(runs_csv).astype(object)
    frame.loc[3, column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    message = _user_error(["chinchilla", str(path), "--json"])
    assert needle in message and f"'{column}'" in message and "line 5" in message


def test_too_few_points(tmp_path: Path, runs_csv: Path) -> None:
    path = tmp_path / "few.csv"
    pd.read_csv(runs_csv).head(4).to_csv(path, index=False)
    message = _user_error(["chinchilla", str(path), "--json"])
    assert "5 parameters" in message and "4 data points" in message
    pd.read_csv(runs_csv).head(3).to_csv(path, index=False)
    message = _user_error(["power", str(path), "--x", "N", "--y", "loss", "--json"])
    assert "3 parameters" in message and "3 data points" in message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert "empty" in _user_error(["chinchilla", str(path)])
