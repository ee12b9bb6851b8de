"""Figures of the scaling study: the runs' curves, L(N) with its band and the forecast, the frontier."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from scalelab.store import RunStore


def _log_axes(ax) -> None:
    """Log-log axes labelled '1e6' rather than with mathtext, which is slow to render; no minor ticks on x
    (each tick is an artist: on a log axis spanning decades they were most of the drawing time)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e+0", "e").replace("e+", "e")))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))


def _figure(width: float, height: float, cols: int = 1):
    """A figure and its axes with fixed margins: no pyplot (its import and figure manager), no layout engine
    (constrained layout measures every artist's extent before drawing: a second full layout pass)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, cols)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.35 / height,
                        wspace=0.25)  # fmt: skip
    return fig, axes


def figures(res: dict, store: RunStore) -> list:
    """Curves of every run (loss vs tokens and vs FLOPs, with the frontier), and L(N) with the forecast."""
    figs = []
    ids = [r["id"] for r in res["runs"]]
    series = store.metric_series(ids, "val", "loss")
    names = {r["id"]: r["name"] for r in res["runs"]}
    fig, axes = _figure(11, 4, cols=2)
    for rid, pts in series.items():
        _, tokens, flops, value = zip(*pts)
        axes[0].plot(tokens, value, marker=".", label=names.get(rid, rid))
        axes[1].plot(flops, value, marker=".", alpha=0.6)
    fr = res.get("fits", {}).get("compute_frontier")
    if fr:
        c = np.geomspace(min(fr["frontier_flops"]), max(fr["frontier_flops"]) * 3, 100)
        axes[1].plot(fr["frontier_flops"], fr["frontier_loss"], "k.", ms=4, label="frontier (envelope)")
        axes[1].plot(c, fr["E"] + fr["A"] * c ** (-fr["alpha"]), "k--",
                     label=f"L(C) = {fr['E']:.2f} + {fr['A']:.3g} C^-{fr['alpha']:.3f}")  # fmt: skip
        axes[1].legend(fontsize=7)
    for ax, xl in zip(axes, ("training tokens", "training FLOPs")):
        _log_axes(ax)
        ax.set_xlabel(xl)
        ax.set_ylabel("validation loss (nats/token)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("loss vs tokens", y=1.0)  # a given y: no search for overlapping tick labels
    axes[1].set_title("loss vs compute, and the compute-efficient frontier", y=1.0)
    figs.append(fig)
    pts = res.get("points")
    if pts and res.get("fits", {}).get("power_N"):
        d_fit = res["fits"]["power_N"].get("D")
        at_d = np.array(pts["D"]) >= d_fit * (1 - 1e-9) if d_fit else np.ones(len(pts["D"]), dtype=bool)
        figs.append(_law_figure(res, np.array(pts["N"]), np.array(pts["loss"]), at_d))
    return figs


def _law_figure(res: dict, x: np.ndarray, y: np.ndarray, at_d: np.ndarray):
    law = res["fits"]["power_N"]
    fig, ax = _figure(6, 4.2)
    grid = np.geomspace(x.min() / 1.5, x.max() * 3, 100)
    ax.plot(grid, law["E"] + law["A"] * grid ** (-law["alpha"]), "k-",
            label=f"fit on all runs: {law['E']:.2f} + {law['A']:.3g} N^-{law['alpha']:.3f}")  # fmt: skip
    samples = law.get("samples")
    if samples:  # the 95% envelope of the bootstrap refits' curves
        E, A, alpha = (np.asarray(samples[k])[:, None] for k in ("E", "A", "alpha"))
        lo, hi = np.nanpercentile(E + A * grid[None, :] ** (-alpha), [2.5, 97.5], axis=0)
        ax.fill_between(grid, lo, hi, color="gray", alpha=0.25, label="95% bootstrap band")
    ax.scatter(x[at_d], y[at_d], zorder=3, label="runs at this D")
    fc = res["fits"].get("forecast")
    if fc and fc.get("N") == law.get("N"):
        ids = res["points"]["ids"]
        xt = np.array([x[ids.index(i)] for i in fc["test_ids"]])
        pi = np.array(fc["prediction_interval"])
        pred = np.array(fc["predicted"])
        ax.errorbar(xt, pred, yerr=[pred - pi[:, 0], pi[:, 1] - pred], fmt="x", color="red", ms=9, capsize=4,
                    zorder=4, label="forecast from runs with <= 1/4 compute (95% PI)")  # fmt: skip
    _log_axes(ax)
    ax.set_xlabel(f"{law.get('N', 'nonembed')} parameters N")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title("final loss and the fitted law", y=1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write(res: dict, store: RunStore, path: str | Path) -> Path:
    """The report of a plain `scalelab sweep` (summary, runs, figures); studies use the runner's writer."""
    from scalelab.report import Section, write_report
    from scalelab.studies.scaling.analyze import summary

    sections = [
        Section("Summary", summary(res)),
        Section("Runs", "Every number in this report traces back to these run ids.", tables=[res["runs"]]),
        Section("Curves and fits", figures=figures(res, store)),
    ]
    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} from {store.path}"
    return write_report(path, f"scalelab sweep report: {res['sweep']}", sections, meta=meta)
