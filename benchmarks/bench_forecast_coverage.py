"""Coverage of `fit chinchilla/power --predict` prediction intervals on simulated laws, extrapolating.

    python benchmarks/bench_forecast_coverage.py [--trials 40] [--boot 100] [--sd 0.02] [--law chinchilla|power|both]
                                                  [--points 10]

Each trial draws a training design from a known law with multiplicative noise (loss * exp(sd z)),
fits it, and predicts fresh noisy observations at the training range (1x), and at 10x and 100x the
largest training compute. Printed: the share of held-out observations inside the 95% interval,
per method ("residual": the default, "pairs": the scaling study's forecast) and per distance.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scalelab.laws.allocation import optimal_params
from scalelab.laws.chinchilla import chinchilla_loss
from scalelab.laws.forecast_points import predict_chinchilla, predict_power_law
from scalelab.laws.synthetic import REPLICATION_PARAMS as P


def chinchilla_trial(rng, sd, n_boot, method, seed):
    n = np.repeat(np.geomspace(1e6, 3e7, 5), 4)
    d = np.tile(np.geomspace(2e7, 1e9, 4), 5)
    law = [P[k] for k in ("E", "A", "B", "alpha", "beta")]
    y = chinchilla_loss(n, d, *law) * np.exp(sd * rng.standard_normal(n.size))
    c_max = (6 * n * d).max()
    scales = np.array([1.0, 10.0, 100.0])
    c_new = c_max * scales
    n_opt = optimal_params(c_new, P["A"], P["B"], P["alpha"], P["beta"])
    n_new = np.concatenate([n_opt, n_opt / 3, n_opt * 3])
    c_rep = np.tile(c_new, 3)
    d_new = c_rep / (6 * n_new)
    truth = chinchilla_loss(n_new, d_new, *law)
    actual = truth * np.exp(sd * rng.standard_normal(truth.size))
    pred = predict_chinchilla(n, d, y, n_new, d_new, n_boot=n_boot, seed=seed, method=method)
    cov = (pred.interval[:, 0] <= actual) & (actual <= pred.interval[:, 1])
    return np.tile(scales, 3), cov


def power_trial(rng, sd, n_boot, method, seed, points=10):
    E, A, alpha = 1.8, 30.0, 0.3
    x = np.geomspace(1e6, 1e8, points)
    y = (E + A * x**-alpha) * np.exp(sd * rng.standard_normal(x.size))
    scales = np.array([1.0, 10.0, 100.0])
    x_new = x.max() * scales
    actual = (E + A * x_new**-alpha) * np.exp(sd * rng.standard_normal(x_new.size))
    pred = predict_power_law(x, y, x_new, n_boot=n_boot, seed=seed, method=method)
    cov = (pred.interval[:, 0] <= actual) & (actual <= pred.interval[:, 1])
    return scales, cov


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--boot", type=int, default=100)
    ap.add_argument("--sd", type=float, default=0.02)
    ap.add_argument("--law", default="both")
    ap.add_argument("--methods", default="residual,pairs")
    ap.add_argument("--points", type=int, default=10, help="training runs of the power law (2 decades of x)")
    args = ap.parse_args()
    laws = ["chinchilla", "power"] if args.law == "both" else [args.law]
    for law in laws:
        def trial(rng, sd, n_boot, method, seed, law=law):
            if law == "chinchilla":
                return chinchilla_trial(rng, sd, n_boot, method, seed)
            return power_trial(rng, sd, n_boot, method, seed, args.points)

        for method in args.methods.split(","):
            t0 = time.perf_counter()
            scales, hits = [], []
            for t in range(args.trials):
                s, c = trial(np.random.default_rng(1000 + t), args.sd, args.boot, method, t)
                scales.append(s)
                hits.append(c)
            s, h = np.concatenate(scales), np.concatenate(hits)
            cov = {f"{k:g}x": f"{h[s == k].mean():.2f} (n={int((s == k).sum())})" for k in np.unique(s)}
            pts = f" points={args.points}" if law == "power" else ""
            print(f"{law:10s} {method:8s} sd={args.sd}{pts} boot={args.boot} trials={args.trials}: coverage {cov} "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
