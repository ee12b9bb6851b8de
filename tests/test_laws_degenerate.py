"""Unidentifiable designs are refused with a UserError (issue 8, "Degenerate fits"), also by the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws import fit_chinchilla, fit_power_law


def _design() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.repeat([1e6, 3e6, 1e7, 3e7], 3)
    d = np.tile([2e7, 6e7, 2e8], 4)
    return n, d, 2.0 + 400 / n**0.35 + 400 / d**0.3


def test_identical_rows_are_refused() -> None:
    # today: E = 14.19 and exit 0
    with pytest.raises(UserError, match="distinct"):
        fit_chinchilla(np.full(8, 1e6), np.full(8, 2e7), np.full(8, 3.0))


def test_constant_n_is_refused_naming_n() -> None:
    # today: alpha = 2.16, A = 6e10
    _, d, y = _design()
    with pytest.raises(UserError, match="N takes only 1 distinct value"):
        fit_chinchilla(np.full(len(d), 1e6), d, y)


def test_tokens_tied_to_params_are_refused() -> None:
    n, _, _ = _design()
    with pytest.raises(UserError, match="cannot be told apart"):
        fit_chinchilla(n, 20 * n, 2.0 + 1 / n**0.3)


def test_zero_variance_loss_is_refused() -> None:
    n, d, _ = _design()
    with pytest.raises(UserError, match="zero variance"):
        fit_chinchilla(n, d, np.full(len(n), 3.0))
    with pytest.raises(UserError, match="zero variance"):
        fit_power_law(np.geomspace(1e4, 1e6, 6), np.full(6, 2.5))


def test_power_law_needs_three_distinct_x() -> None:
    with pytest.raises(UserError, match="x takes only 2 distinct values"):
        fit_power_law(np.array([1e4, 1e4, 1e5, 1e5, 1e5]), np.array([3.0, 3.1, 2.5, 2.6, 2.4]))


@pytest.mark.parametrize("args", [["chinchilla", "--n-col", "N"], ["power", "--x", "N", "--y", "loss"]])
def test_cli_exits_2_with_a_message(tmp_path: Path, args: list[str]) -> None:
    csv = tmp_path / "runs.csv"
    csv.write_text("N,D,loss\n" + "".join(f"1000000,{d},{3 - d / 1e9}\n" for d in (2e7, 6e7, 2e8, 6e8) * 2))
    cmd = [sys.executable, "-m", "scalelab", "fit", args[0], str(csv), *args[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert out.returncode == 2, out.stderr
    assert "distinct" in out.stderr + out.stdout and "Traceback" not in out.stderr
