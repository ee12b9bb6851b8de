"""`scalelab fit chinchilla|power --predict TEST.csv`: the JSON contract and honest prediction intervals."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from scalelab.cli.fit import fit_app
from scalelab.errors import UserError
from scalelab.laws.chinchilla import chinchilla_loss
from scalelab.laws.forecast_points import predict_power_law
from scalelab.laws.synthetic import REPLICATION_PARAMS as P

runner = CliRunner()
LAW = [P[k] for k in ("E", "A", "B", "alpha", "beta")]


def _json(args: list[str]) -> dict:
    result = runner.invoke(fit_app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def csvs(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    n = np.repeat(np.geomspace(1e6, 3e7, 5), 4)
    d = np.tile(np.geomspace(2e7, 1e9, 4), 5)
    y = chinchilla_loss(n, d, *LAW) * np.exp(0.01 * rng.standard_normal(n.size))
    train, test, bare = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "bare.csv"
    pd.DataFrame({"N": n, "D": d, "loss": y}).to_csv(train, index=False)
    n_new, d_new = np.array([1e8, 3e7, 3e8]), np.array([3e9, 1e10, 3e10])  # 10x-500x the largest training C
    pd.DataFrame({"N": n_new, "D": d_new, "loss": chinchilla_loss(n_new, d_new, *LAW)}).to_csv(test, index=False)
    pd.DataFrame({"D": d_new[:2], "N": n_new[:2]}).to_csv(bare, index=False)
    return train, test, bare


def test_chinchilla_predict_json_shape_order_and_summary(csvs) -> None:
    train, test, bare = csvs
    out = _json(["chinchilla", str(train), "--predict", str(test), "--bootstrap", "20", "--json"])
    assert out["E"] > 0 and "ci" in out  # the fit and its parameter intervals are still there
    rows = out["predictions"]
    assert [(r["N"], r["D"]) for r in rows] == [(1e8, 3e9), (3e7, 1e10), (3e8, 3e10)]  # one per row, in order
    for r in rows:
        assert set(r) >= {"N", "D", "predicted", "ci", "actual", "rel_error", "covered"}
        assert r["ci"][0] < r["predicted"] < r["ci"][1]
        assert r["rel_error"] == pytest.approx((r["predicted"] - r["actual"]) / r["actual"])
    s = out["prediction_summary"]
    assert s["n"] == 3 and s["level"] == 0.95 and s["method"] == "residual" and s["n_boot"] == 20
    assert s["coverage"] == np.mean([r["covered"] for r in rows])
    assert s["median_abs_rel_error"] < 0.05  # 1% noise, the true law: a good forecast
    no_loss = _json(["chinchilla", str(train), "--predict", str(bare), "--bootstrap", "10", "--json"])
    assert len(no_loss["predictions"]) == 2 and "actual" not in no_loss["predictions"][0]
    assert "coverage" not in no_loss["prediction_summary"]


def test_power_predict_json_and_bad_test_file(csvs, tmp_path: Path) -> None:
    train, test, _ = csvs
    out = _json(["power", str(train), "--x", "N", "--y", "loss", "--predict", str(test), "--bootstrap", "20", "--json"])
    assert [r["x"] for r in out["predictions"]] == [1e8, 3e7, 3e8] and "coverage" in out["prediction_summary"]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"N": [1e8, -1.0], "D": [1e9, 1e9]}).to_csv(bad, index=False)
    result = runner.invoke(fit_app, ["chinchilla", str(train), "--predict", str(bad), "--json"])
    assert isinstance(result.exception, UserError) and "positive numbers" in str(result.exception)
    nocol = tmp_path / "nocol.csv"
    pd.DataFrame({"params": [1e8]}).to_csv(nocol, index=False)
    result = runner.invoke(fit_app, ["chinchilla", str(train), "--predict", str(nocol), "--json"])
    assert isinstance(result.exception, UserError) and "no column 'N'" in str(result.exception)


def test_prediction_intervals_cover_fresh_runs_extrapolating_10x_and_100x() -> None:
    """Simulated power laws with 2% noise, 8 runs over 2 decades; fresh noisy runs at 1x, 10x, 100x the
    largest training x. The residual-bootstrap interval must hold about 95% of them at every distance
    (benchmarks/RESULTS_efficiency.md has the larger check, Chinchilla included)."""
    hits = {1.0: [], 10.0: [], 100.0: []}
    for t in range(12):
        rng = np.random.default_rng(100 + t)
        x = np.geomspace(1e6, 1e8, 8)
        law = lambda v: 1.8 + 30.0 * v**-0.3  # noqa: E731
        y = law(x) * np.exp(0.02 * rng.standard_normal(x.size))
        scales = np.repeat([1.0, 10.0, 100.0], 2)
        actual = law(x.max() * scales) * np.exp(0.02 * rng.standard_normal(scales.size))
        pred = predict_power_law(x, y, x.max() * scales, n_boot=30, seed=t)
        for s, a, (lo, hi) in zip(scales, actual, pred.interval):
            hits[s].append(lo <= a <= hi)
    coverage = {s: float(np.mean(h)) for s, h in hits.items()}
    assert all(c >= 0.75 for c in coverage.values()), coverage  # 24 draws each: 0.75 is > 4 SE below 0.95
