"""Batched BFGS and the multi-start driver on problems with known minima."""

import numpy as np

from scalelab.laws.multistart import BatchBFGS, lbfgsb_polish, multistart_minimize


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
