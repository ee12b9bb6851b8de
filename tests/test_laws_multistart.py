"""Batched BFGS and the multi-start driver on problems with known minima."""

import numpy as np
import pytest

import scalelab.laws.multistart as multistart
from scalelab.laws import fit_chinchilla, fit_power_law
from scalelab.laws.multistart import BatchBFGS, lbfgsb_polish, multistart_minimize, newton_polish
from scalelab.laws.objective import row_sum


class Rosenbrock:
    """Batched 2-D Rosenbrock function, minimum 0 at (1, 1)."""

    n_evals = 0

    def __call__(self, x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        a, b = x[:, 0], x[:, 1]
        f = (1 - a) ** 2 + 100 * (b - a * a) ** 2
        g = np.stack([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)], axis=1)
        self.n_evals += len(x)
        return f, g

    def single(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = self(np.asarray(x)[None])
        return float(f[0]), g[0]

    @staticmethod
    def hessian(x: np.ndarray) -> np.ndarray:
        a, b = x
        return np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]])


def test_batch_bfgs_solves_rosenbrock_from_many_starts() -> None:
    starts = np.random.default_rng(0).uniform(-2, 2, size=(50, 2))
    opt = BatchBFGS(Rosenbrock(), starts)
    opt.run(2000)
    assert opt.done.all()
    np.testing.assert_allclose(opt.x, 1.0, atol=1e-5)


def test_rows_route_each_start_to_its_problem() -> None:
    centres = np.array([[1.0, -2.0], [3.0, 0.5], [-1.0, 4.0]])

    def quad(x: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        diff = x - centres[rows]
        return (diff**2).sum(axis=1), 2 * diff

    rows = np.repeat(np.arange(3), 4)
    opt = BatchBFGS(quad, np.zeros((12, 2)) + np.arange(12)[:, None] * 0.1, rows)
    opt.run(200)
    np.testing.assert_allclose(opt.x, centres[rows], atol=1e-6)


def test_multistart_keeps_the_best_basin() -> None:
    # Two minima: f = (x^2 - 1)^2 + 0.3 x has its global minimum near x = -1.
    def fun(x: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        v = x[:, 0]
        return (v * v - 1) ** 2 + 0.3 * v, (4 * v * (v * v - 1) + 0.3)[:, None]

    res = multistart_minimize(fun, np.linspace(-2, 2, 9)[:, None], screen_iter=3, n_survivors=4)
    assert res.x[0] < 0
    assert res.fun == min(res.all_fun)


def test_polish_converges_tightly() -> None:
    rb = Rosenbrock()
    x, f = lbfgsb_polish(rb.single, np.array([-1.2, 1.0]))
    assert f < 1e-14
    np.testing.assert_allclose(x, 1.0, atol=1e-7)


def test_newton_polish_converges_quadratically_near_a_minimum() -> None:
    rb = Rosenbrock()
    x, f, converged = newton_polish(rb.single, rb.hessian, np.array([1.1, 1.2]))
    assert converged and f < 1e-20
    np.testing.assert_allclose(x, 1.0, atol=1e-10)
    _, _, converged = newton_polish(rb.single, lambda x: -np.eye(2), np.array([1.1, 1.2]))  # no descent step
    assert not converged


def _power_fixture(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e4, 1e8, 12) * rng.uniform(0.8, 1.2, 12)
    return x, (1.3 + 300 * x ** -0.3) * np.exp(rng.normal(0, [0.002, 0.01, 0.03][seed % 3], 12))


def _chinchilla_fixture(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, d = 10 ** rng.uniform(5, 8, 16), 10 ** rng.uniform(7, 10, 16)
    return n, d, (1.7 + 400 * n**-0.34 + 410 * d**-0.28) * np.exp(rng.normal(0, 0.01, 16))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_newton_polish_finds_the_optimum_of_the_lbfgsb_polish(seed: int, monkeypatch) -> None:
    """The fits polished by Newton (no SciPy) equal those polished by SciPy's L-BFGS-B, as before."""
    x, y = _power_fixture(seed)
    n, d, loss = _chinchilla_fixture(seed)
    new = fit_power_law(x, y), fit_chinchilla(n, d, loss, grid=fit_chinchilla_grid())
    monkeypatch.setattr(multistart, "newton_polish", lambda f, h, x0: (x0, np.inf, False))  # the old polish
    old = fit_power_law(x, y), fit_chinchilla(n, d, loss, grid=fit_chinchilla_grid())
    for a, b in zip(new, old):
        for name in ("E", "A", "alpha", "objective") + (("B", "beta") if hasattr(a, "beta") else ()):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-6), name
        assert a.objective <= b.objective * (1 + 1e-12)


def fit_chinchilla_grid() -> np.ndarray:
    """A coarser grid than the default 4,500 starts, to keep the test short."""
    from scalelab.laws.chinchilla import chinchilla_grid

    return chinchilla_grid(es=(-1.0, 0.0, 1.0), a_s=(0.0, 5.0, 10.0, 20.0), bs=(0.0, 5.0, 10.0, 20.0))


def test_bfgs_update_keeps_the_bits_of_the_einsum_formula() -> None:
    """The (P, P, S) update adds as einsum did, so fits keep their bits (bootstrap refits amplify the last one)."""
    rng = np.random.default_rng(0)
    for n, p in ((1, 3), (7, 5), (300, 3), (300, 2)):
        a = rng.normal(size=(n, p, p))
        h = np.einsum("sij,skj->sik", a, a) + np.eye(p)
        s = rng.normal(size=(n, p))
        y = s + 0.3 * rng.normal(size=(n, p))
        y[: n // 5] *= -1  # some pairs with s.y <= 0 are skipped
        fresh = rng.random(n) < 0.3
        sy = np.einsum("si,si->s", s, y)
        good = sy > 1e-12 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
        want = h.copy()
        hg, sg, yg, syg = h[good].copy(), s[good], y[good], sy[good]
        first = fresh[good]
        hg[first] = (syg[first] / np.einsum("si,si->s", yg[first], yg[first]))[:, None, None] * np.eye(p)
        rho = 1.0 / syg
        hy = np.einsum("sij,sj->si", hg, yg)
        yhy = np.einsum("si,si->s", yg, hy)
        outer = np.einsum("si,sj->sij", sg, sg)
        want[good] = (hg - rho[:, None, None] * (np.einsum("si,sj->sij", hy, sg) + np.einsum("si,sj->sij", sg, hy))
                      + (rho * rho * yhy + rho)[:, None, None] * outer)  # fmt: skip
        np.testing.assert_array_equal(BatchBFGS._update(h, s, y, fresh), want)


def test_column_reductions_equal_numpys_row_reductions() -> None:
    a = np.random.default_rng(1).normal(size=(500, 5)) * 10.0 ** np.random.default_rng(2).uniform(-8, 8, (500, 5))
    for p in (1, 2, 3, 5):
        np.testing.assert_array_equal(row_sum(a[:, :p]), np.add.reduce(a[:, :p], axis=1))
        np.testing.assert_array_equal(multistart._row_max_abs(a[:, :p]), np.abs(a[:, :p]).max(axis=1))
