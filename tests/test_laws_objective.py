"""The batched Huber/LSE objective: values, analytic gradients, weights."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from scalelab.laws.objective import LogSumExpHuber, huber, log_sum_exp_prediction


def _data(n: int = 40, k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    log_x = np.stack([rng.uniform(17, 23, n), rng.uniform(20, 26, n)])[:k]
    theta = np.array([6.2, 7.7, 0.6, 0.35, 0.37]) if k == 2 else np.array([6.2, 0.6, 0.35])
    log_y = log_sum_exp_prediction(theta, log_x)[0] + 0.01 * rng.standard_normal(n)
    return log_x, log_y


def test_huber_regimes() -> None:
    r = np.array([-0.1, -1e-3, 0.0, 5e-4, 0.2])
    expected = [1e-3 * (0.1 - 5e-4), 0.5e-6, 0.0, 0.5 * 25e-8, 1e-3 * (0.2 - 5e-4)]
    np.testing.assert_allclose(huber(r, 1e-3), expected, rtol=1e-12)


def test_prediction_is_log_of_the_law() -> None:
    n, d = np.array([1e8, 1e9]), np.array([2e9, 3e10])
    theta = np.array([np.log(400.0), np.log(410.0), np.log(1.69), 0.34, 0.28])
    law = 1.69 + 400.0 / n**0.34 + 410.0 / d**0.28
    got = log_sum_exp_prediction(theta, np.stack([np.log(n), np.log(d)]))[0]
    np.testing.assert_allclose(got, np.log(law), rtol=1e-12)


def test_objective_value_matches_direct_sum() -> None:
    log_x, log_y = _data()
    obj = LogSumExpHuber(log_x, log_y)
    theta = np.array([[6.0, 7.5, 0.5, 0.3, 0.4], [20.0, 0.0, -1.0, 1.0, 0.0]])
    f, _ = obj(theta)
    direct = huber(log_sum_exp_prediction(theta, log_x) - log_y).sum(axis=1)
    np.testing.assert_allclose(f, direct, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_analytic_gradient_matches_finite_differences(k: int) -> None:
    log_x, log_y = _data(k=k)
    weights = np.random.default_rng(1).integers(0, 3, size=log_y.size).astype(float)
    for w in (None, weights):
        obj = LogSumExpHuber(log_x, log_y, weights=w)
        # Points away from the optimum, so that residuals are off the Huber kink at +-delta.
        for theta in ([5.0, 10.0, -1.0, 0.5, 0.0], [8.0, 6.0, 1.0, 0.6, 0.2]):
            x = np.array(theta if k == 2 else theta[:1] + theta[2:4])
            _, g = obj.single(x)
            numeric = approx_fprime(x, lambda p, o=obj: o.single(p)[0], 1e-7)
            np.testing.assert_allclose(g, numeric, rtol=1e-4, atol=1e-9)


def test_integer_weights_equal_duplicated_points() -> None:
    log_x, log_y = _data(n=30)
    counts = np.random.default_rng(2).integers(0, 4, size=30)
    idx = np.repeat(np.arange(30), counts)
    weighted = LogSumExpHuber(log_x, log_y, weights=counts.astype(float))
    duplicated = LogSumExpHuber(log_x[:, idx], log_y[idx])
    theta = np.array([[6.0, 7.5, 0.55, 0.33, 0.38], [6.3, 7.8, 0.62, 0.36, 0.36]])
    fw, gw = weighted(theta)
    fd, gd = duplicated(theta)
    np.testing.assert_allclose(fw, fd, rtol=1e-12)
    np.testing.assert_allclose(gw, gd, rtol=1e-10, atol=1e-15)


def test_rows_select_weight_rows_and_chunks_agree() -> None:
    log_x, log_y = _data(n=25)
    weights = np.random.default_rng(3).integers(0, 3, size=(4, 25)).astype(float)
    obj = LogSumExpHuber(log_x, log_y, weights=weights)
    obj.chunk = 3  # force several chunks
    theta = np.tile([6.0, 7.5, 0.55, 0.33, 0.38], (8, 1)) + 0.01 * np.arange(8)[:, None]
    rows = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    f, g = obj(theta, rows)
    for i, r in enumerate(rows):
        fi, gi = LogSumExpHuber(log_x, log_y, weights=weights[r]).single(theta[i])
        assert f[i] == pytest.approx(fi, rel=1e-12)
        np.testing.assert_allclose(g[i], gi, rtol=1e-10, atol=1e-15)


def test_extreme_starts_stay_finite() -> None:
    log_x, log_y = _data()
    obj = LogSumExpHuber(log_x, log_y)
    f, g = obj(np.array([[25.0, 25.0, 1.0, -30.0, 2.0], [0.0, 0.0, -1.0, 40.0, 40.0]]))
    assert np.all(np.isfinite(f)) and np.all(np.isfinite(g))


@pytest.mark.parametrize("k", [1, 2])
def test_hessian_matches_finite_differences_of_the_gradient(k: int) -> None:
    log_x, log_y = _data(k=k)
    counts = np.random.default_rng(4).integers(0, 3, size=(3, log_y.size)).astype(float)
    for obj, row in ((LogSumExpHuber(log_x, log_y), None), (LogSumExpHuber(log_x, log_y, weights=counts[0]), None),
                     (LogSumExpHuber(log_x, log_y, weights=counts), 2)):  # fmt: skip
        for theta in ([5.0, 10.0, -1.0, 0.5, 0.0], [6.2, 7.7, 0.6, 0.35, 0.37]):  # far from and at the optimum
            x = np.array(theta if k == 2 else theta[:1] + theta[2:4])
            h = obj.hessian(x, row)
            eye = np.eye(len(x)) * 1e-6
            numeric = np.array([(obj.single(x + e, row)[1] - obj.single(x - e, row)[1]) / 2e-6 for e in eye])
            np.testing.assert_allclose(h, h.T, rtol=1e-12, atol=1e-15)
            # (a few points lie near the Huber kink, where differences over +-1e-6 blur the curvature)
            np.testing.assert_allclose(h, numeric, rtol=1e-4, atol=1e-6 * np.abs(h).max())


def test_large_chunks_give_the_bits_of_256_row_chunks() -> None:
    """Fits (and their bootstrap refits, which amplify last-bit differences) stay as they were computed with
    256-row chunks: the gradient's matmul still runs on the same 256-row blocks inside larger chunks."""
    log_x, log_y = _data(n=16, k=1)
    weights = np.random.default_rng(5).integers(0, 3, size=(50, 16)).astype(float)
    obj = LogSumExpHuber(log_x, log_y, weights=weights)
    assert obj.chunk > 256 and obj.chunk % 256 == 0
    theta = np.random.default_rng(6).normal([0.5, 0.6, 0.35], 0.3, size=(3000, 3))
    rows = np.arange(3000) % 50
    f, g = obj(theta, rows)
    obj.chunk = 256
    f256, g256 = obj(theta, rows)
    assert np.array_equal(f, f256) and np.array_equal(g, g256)
