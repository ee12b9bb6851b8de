"""Figures of the efficiency study: loss vs FLOPs per recipe with the target, compute-to-target with
intervals, and the doubling-time plot (log2 compute against date)."""

from __future__ import annotations

import math

import numpy as np

from scalelab.laws.efficiency import decimal_year


def _loss_vs_flops(res: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    colors = {r: f"C{i}" for i, r in enumerate(res["multipliers"])}
    for c in res["curves"]:
        best = res["best_size"].get(c["recipe"]) or c["size"]
        if c["flops"]:
            ax.plot(c["flops"], c["loss"], color=colors.get(c["recipe"], "k"), lw=1.2 if c["size"] == best else 0.6,
                    alpha=0.9 if c["size"] == best else 0.3, ls="-" if c["size"] == best else ":",
                    label=f"{c['recipe']} ({c['size']})" if c["seed"] == 0 else None)  # fmt: skip
        if math.isfinite(c.get("compute_to_target", math.inf)) and c["size"] == best:
            ax.plot(c["compute_to_target"], res["target_loss"], "o", color=colors.get(c["recipe"], "k"), ms=4)
    ax.axhline(res["target_loss"], color="k", ls="--", lw=1, label=f"target {res['target_loss']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Loss vs compute (solid: best size; dots: first eval at target)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def _compute_bars(res: dict):
    import matplotlib.pyplot as plt

    names = [r for r, c in res["compute"].items() if math.isfinite(c[0])]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for i, r in enumerate(names):
        v, lo, hi = res["compute"][r]
        ax.errorbar([i], [v], yerr=[[v - lo], [hi - v]], fmt="o", capsize=4, color=f"C{i}")
        m = res["multipliers"][r]
        ax.annotate(f"{m[0]:.2f}x [{m[1]:.2f}, {m[2]:.2f}]", (i, v), textcoords="offset points", xytext=(8, 0),
                    fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("training FLOPs to target (best size)")
    ax.set_title(f"Compute to target, 95% bootstrap over seeds; multipliers over {res.get('baseline')}")
    ax.grid(alpha=0.3, axis="y")
    return fig


def _doubling(points: list[tuple[str, str, float]], fit: dict, unit: str):
    import matplotlib.pyplot as plt

    t = np.array([decimal_year(d) for _, d, _ in points])
    y = np.log2([c for _, _, c in points])
    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    ax.plot(t, y, "o")
    for (name, _, _), ti, yi in zip(points, t, y):
        ax.annotate(name, (ti, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    grid = np.linspace(t.min(), t.max(), 50)
    lo, hi = fit["months_ci"]
    ax.plot(grid, fit["intercept"] + fit["slope"] * grid, "k--",
            label=f"doubling time {fit['months']:.1f} months [{lo:.1f}, {hi:.1f}]")
    ax.set_xlabel("date")
    ax.set_ylabel(f"log2 compute to target ({unit})")
    ax.set_title("Algorithmic efficiency: least squares of log2 compute on date")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def figures(results: dict, store=None) -> list:
    """Loss vs FLOPs with the target, compute-to-target with intervals, and the doubling-time plot."""
    if results.get("mode") == "paper_table":
        pts = [(r["method"], r["date"], r["pfs_days"]) for r in results["table"]]
        return [_doubling(pts, results["fit"], "petaflop/s-days")]
    figs = [_loss_vs_flops(results), _compute_bars(results)]
    if "doubling_time" in results:
        pts = [(d["recipe"], d["date"], d["flops"]) for d in results["dated_table"]]
        figs.append(_doubling(pts, results["doubling_time"], "FLOPs"))
    return figs
