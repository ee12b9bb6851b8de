"""Scaling laws of a sweep (Kaplan et al. 2020; Hoffmann et al. 2022): fits, forecast, report.

`analyze(store, sweep)` reads the sweep's completed runs and fits
- L(N) = E + A N^-alpha on final validation loss (N non-embedding by default), with bootstrap
  intervals, and the same against compute C;
- Chinchilla Approach 3, L(N, D), when the runs vary N and D independently;
- Approach 2 (IsoFLOP parabola minima) when the sweep is an IsoFLOP design;
- a forecast: the law fitted on all but the largest model sizes, scored on the held-out ones
  (the "predictable loss" half of Ganguli et al. 2022).
`figures(results, store)` draws them; `write(results, ...)` writes the HTML report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from scalelab.report import Section, write_report
from scalelab.store import RunStore


def analyze(store: RunStore, sweep: str, fit_params: str = "nonembed", holdout: int = 1, n_boot: int = 200,
            seed: int = 0) -> dict:  # fmt: skip
    from scalelab import laws

    rows = store.find_runs(group=sweep)
    done = [r for r in rows if r["status"] == "completed" and r["final_val_loss"] is not None]
    table = [{"id": r["id"], "name": r["name"], "status": r["status"], "params": r["params"],
              "params_nonembed": r["params_nonembed"], "tokens": r["tokens"], "flops": r["flops"],
              "final_val_loss": r["final_val_loss"]} for r in rows]  # fmt: skip
    res: dict = {"sweep": sweep, "runs": table, "n_completed": len(done), "fit_params": fit_params, "notes": []}
    if len(done) < 4:
        res["notes"].append(f"{len(done)} completed runs: at least 4 are needed to fit a three-parameter law")
        return res
    key = "params_nonembed" if fit_params == "nonembed" else "params"
    N = np.array([r[key] for r in done], dtype=float)
    D = np.array([r["tokens"] for r in done], dtype=float)
    C = np.array([r["flops"] for r in done], dtype=float)
    L = np.array([r["final_val_loss"] for r in done], dtype=float)
    res["points"] = {"N": N.tolist(), "D": D.tolist(), "C": C.tolist(), "loss": L.tolist(),
                     "ids": [r["id"] for r in done]}  # fmt: skip
    for name, x in (("N", N), ("C", C)):
        if len(x) >= 4 and len(np.unique(x)) >= 3:  # three parameters need four points
            fit = laws.fit_power_law(x, L)
            boot = laws.bootstrap_power_law(x, L, n_boot=n_boot, seed=seed, fit=fit)
            res[f"power_{name}"] = fit.to_dict() | {
                "ci": {k: list(v) for k, v in boot.ci.items()},
                "samples": {k: np.asarray(v)[:200].tolist() for k, v in boot.samples.items()},
            }
    sizes = np.unique(N)
    if len(sizes) >= 4 + holdout and holdout > 0:
        try:
            fc = laws.forecast_power_law(N, L, holdout=holdout, n_boot=n_boot, seed=seed)
            res["forecast"] = fc.to_dict()
        except Exception as e:  # a degenerate training set: say so, keep the rest of the report
            res["notes"].append(f"forecast skipped: {e}")
    varied_d = len({(n, d) for n, d in zip(N, D)}) > len(sizes) and len(np.unique(D)) >= 3
    if varied_d and len(done) >= 8:
        ch = laws.fit_chinchilla(N, D, L)
        boot = laws.bootstrap_chinchilla(N, D, L, n_boot=n_boot, seed=seed, fit=ch)
        res["chinchilla"] = ch.to_dict() | {"ci": {k: list(v) for k, v in boot.ci.items()}}
    if varied_d and len(np.unique(np.round(np.log10(C), 1))) >= 2:
        try:
            iso = laws.fit_isoflop(N, L, C)
            res["isoflop"] = iso.to_dict() if hasattr(iso, "to_dict") else {"a": iso.a, "b": iso.b}
        except Exception as e:
            res["notes"].append(f"IsoFLOP fit skipped: {e}")
    return res


def headline(res: dict) -> dict:
    """The fits without their bootstrap samples, for JSON output."""
    out = {}
    for k in ("power_N", "power_C", "forecast", "chinchilla", "isoflop"):
        if k in res:
            out[k] = {kk: vv for kk, vv in res[k].items() if kk not in ("samples", "best_starts")}
    return out


def summary_text(res: dict) -> str:
    lines = [f"Sweep {res['sweep']}: {res['n_completed']} completed runs."]
    p = res.get("power_N")
    if p:
        ci = p["ci"]["alpha"]
        lines.append(f"L(N) = {p['E']:.3f} + {p['A']:.3g} N^-{p['alpha']:.3f}  "
                     f"(alpha 95% CI [{ci[0]:.3f}, {ci[1]:.3f}], N = {res['fit_params']} parameters).")  # fmt: skip
    fc = res.get("forecast")
    if fc:
        for act, pred, rel, ci in zip(fc["actual"], fc["predicted"], fc["rel_error"], fc["rel_error_ci"]):
            lines.append(f"Forecast of the largest model from the {fc['n_train']} smaller runs: predicted "
                         f"{pred:.4f}, actual {act:.4f}, error {100 * rel:+.2f}% "
                         f"(95% CI [{100 * ci[0]:+.2f}%, {100 * ci[1]:+.2f}%]).")  # fmt: skip
    ch = res.get("chinchilla")
    if ch:
        lines.append(f"Chinchilla L(N,D): E {ch['E']:.3f}, A {ch['A']:.3g}, B {ch['B']:.3g}, alpha {ch['alpha']:.3f}, "
                     f"beta {ch['beta']:.3f}; N_opt ~ C^{ch['a']:.3f}.")  # fmt: skip
    lines += res.get("notes", [])
    return "\n".join(lines)


def _log_axes(ax) -> None:
    """Log-log axes labelled '1e6' rather than with mathtext, which is slow to render."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e+0", "e").replace("e+", "e")))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def figures(res: dict, store: RunStore) -> list:
    import matplotlib.pyplot as plt

    figs = []
    ids = [r["id"] for r in res["runs"]]
    series = store.metric_series(ids, "val", "loss")
    names = {r["id"]: r["name"] for r in res["runs"]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for rid, pts in series.items():
        _, tokens, flops, value = zip(*pts)
        axes[0].plot(tokens, value, marker=".", label=names.get(rid, rid))
        axes[1].plot(flops, value, marker=".", label=names.get(rid, rid))
    for ax, xl in zip(axes, ("training tokens", "training FLOPs")):
        _log_axes(ax)
        ax.set_xlabel(xl)
        ax.set_ylabel("validation loss (nats/token)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("loss vs tokens")
    axes[1].set_title("loss vs compute")
    figs.append(fig)
    pts = res.get("points")
    if pts and res.get("power_N"):
        figs.append(_law_figure(res, np.array(pts["N"]), np.array(pts["loss"]), "power_N",
                                f"{res['fit_params']} parameters N"))  # fmt: skip
    if pts and res.get("power_C"):
        figs.append(_law_figure(res, np.array(pts["C"]), np.array(pts["loss"]), "power_C", "training FLOPs C"))
    return figs


def _law_figure(res: dict, x: np.ndarray, y: np.ndarray, key: str, xlabel: str):
    import matplotlib.pyplot as plt

    law = res[key]
    fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    grid = np.geomspace(x.min() / 1.5, x.max() * 10, 100)
    ax.plot(grid, law["E"] + law["A"] * grid ** (-law["alpha"]), "k-",
            label=f"fit: {law['E']:.2f} + {law['A']:.3g} x^-{law['alpha']:.3f}")  # fmt: skip
    # the bootstrap band: the 95% envelope of the curves of the bootstrap refits
    samples = law.get("samples")
    if samples:
        E, A, alpha = (np.asarray(samples[k])[:, None] for k in ("E", "A", "alpha"))
        lo, hi = np.percentile(E + A * grid[None, :] ** (-alpha), [2.5, 97.5], axis=0)
        ax.fill_between(grid, lo, hi, color="gray", alpha=0.25, label="95% bootstrap band")
    ax.scatter(x, y, zorder=3, label="runs")
    fc = res.get("forecast")
    if fc and key == "power_N":
        xt = x[np.array(fc["test_index"], dtype=int)]
        ax.scatter(xt, fc["predicted"], marker="x", s=80, color="red", zorder=4, label="forecast (held out)")
    ax.axvline(x.max(), color="gray", ls=":", lw=1)
    _log_axes(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title("final loss and the fitted law (dotted: extrapolation beyond)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def write(res: dict, store: RunStore, path: str | Path) -> Path:
    text = summary_text(res)
    fits = [{"law": k, **{p: res[k][p] for p in ("E", "A", "alpha") if p in res[k]},
             **{f"{p}_ci": res[k]["ci"].get(p) for p in ("E", "A", "alpha")}}
            for k in ("power_N", "power_C") if k in res]  # fmt: skip
    sections = [
        Section("Summary", text),
        Section("Runs", "Every number in this report traces back to these run ids.", tables=[res["runs"]]),
        Section("Curves and fits", figures=figures(res, store), tables=[fits] if fits else []),
    ]
    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} from {store.path}"
    return write_report(path, f"scalelab sweep report: {res['sweep']}", sections, meta=meta)

