"""Benchmark of Chinchilla Approach 3 fitting: full-grid fit, bootstrap refits, plain-SciPy baseline.

    python benchmarks/bench_fit.py [--csv PATH] [--n-boot 1000] [--baseline [--baseline-every K]]

Data: with --csv, either Epoch AI's replication file (columns "Model Size", "Training FLOP",
"loss"; D = C / 6N and, as in Besiroglu et al. 2024, the 5 highest-loss points are dropped, which
leaves 240) or any CSV with N, D, loss columns. Without --csv, 240 synthetic points on an IsoFLOP
grid from the replication's parameters with 1% multiplicative noise.

Timed: (1) `fit_chinchilla` on the 4,500-start grid (median of --repeat runs); (2) the same with
every start run to convergence (no pruning), as a check of the pruning; (3) `bootstrap_chinchilla`
with --n-boot refits; (4) with --baseline, the plain reference: SciPy L-BFGS-B with numeric
gradients and default options, one start at a time over the grid (every K-th start with
--baseline-every K; the time is then extrapolated to 4,500 starts and labelled so). Prints JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scalelab.laws import bootstrap_chinchilla, chinchilla_grid, fit_chinchilla
from scalelab.laws.reference import plain_scipy_loop
from scalelab.laws.synthetic import synthetic_chinchilla_runs

PARAMS = ("E", "A", "B", "alpha", "beta")


def load(csv: str | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(N, D, loss, description) from --csv or synthetic."""
    if csv is None:
        n, d, y = synthetic_chinchilla_runs(seed=seed)
        return n, d, y, f"synthetic: 240 points, replication parameters, 1% noise, seed {seed}"
    frame = pd.read_csv(csv)
    if {"Model Size", "Training FLOP", "loss"} <= set(frame.columns):
        n = frame["Model Size"].to_numpy(float)
        d = frame["Training FLOP"].to_numpy(float) / (6.0 * n)
        y = frame["loss"].to_numpy(float)
        keep = y < np.sort(y)[-5]  # Besiroglu et al. 2024 drop the 5 highest-loss points
        return n[keep], d[keep], y[keep], f"{Path(csv).name} (Epoch AI format, 5 highest losses dropped)"
    return (frame["N"].to_numpy(float), frame["D"].to_numpy(float), frame["loss"].to_numpy(float),
            Path(csv).name)


def params_of(theta: np.ndarray) -> dict[str, float]:
    """(a, b, e, alpha, beta) -> {E, A, B, alpha, beta}."""
    return {"E": float(np.exp(theta[2])), "A": float(np.exp(theta[0])), "B": float(np.exp(theta[1])),
            "alpha": float(theta[3]), "beta": float(theta[4])}


def agreement(ours: dict[str, float], ref: dict[str, float]) -> dict[str, object]:
    """Whether the parameters agree to 3 significant figures, and the largest relative difference."""
    same = all(float(f"{ours[k]:.3g}") == float(f"{ref[k]:.3g}") for k in PARAMS)
    rel = max(abs(ours[k] - ref[k]) / abs(ref[k]) for k in PARAMS)
    return {"same_3_significant_figures": same, "max_rel_diff": rel}


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, {os.cpu_count()} cores, {platform.system()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", action="store_true", help="also run the slow plain SciPy loop")
    ap.add_argument("--baseline-every", type=int, default=1, help="run only every K-th start")
    args = ap.parse_args()

    n, d, y, source = load(args.csv, args.seed)
    out: dict[str, object] = {"data": source, "n_points": int(len(y)), "machine": machine(),
                              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fit = fit_chinchilla(n, d, y)
        times.append(time.perf_counter() - t0)
    ours = {k: getattr(fit, k) for k in PARAMS}
    out["fit"] = {"seconds_median": statistics.median(times), "seconds_all": times, "starts": 4500,
                  "objective": fit.objective, "params": ours}

    t0 = time.perf_counter()
    exhaustive = fit_chinchilla(n, d, y, screen_iter=0)
    out["fit_no_pruning"] = {"seconds": time.perf_counter() - t0, "objective": exhaustive.objective,
                             "params": {k: getattr(exhaustive, k) for k in PARAMS},
                             **agreement(ours, {k: getattr(exhaustive, k) for k in PARAMS})}

    t0 = time.perf_counter()
    boot = bootstrap_chinchilla(n, d, y, n_boot=args.n_boot, seed=args.seed, fit=fit, flops=[5.76e23])
    out["bootstrap"] = {"n_boot": args.n_boot, "seconds": time.perf_counter() - t0,
                        "ci": {k: list(v) for k, v in boot.ci.items()}}

    if args.baseline:
        grid = chinchilla_grid()[:: args.baseline_every]
        t0 = time.perf_counter()
        ref_f, ref_x = plain_scipy_loop(n, d, y, grid)
        seconds = time.perf_counter() - t0
        ref = params_of(ref_x)
        out["baseline"] = {
            "method": "scipy L-BFGS-B, numeric gradients, default options, one start at a time",
            "starts_run": int(len(grid)), "seconds": seconds,
            "seconds_for_4500_starts": seconds * 4500 / len(grid),
            "extrapolated": len(grid) != 4500, "objective": ref_f, "params": ref,
            "ours_objective_not_worse": fit.objective <= ref_f * (1 + 1e-9), **agreement(ours, ref),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
