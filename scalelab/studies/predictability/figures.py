"""Figures of the predictability study: loss vs compute beside each task's exact match and answer log-prob
vs compute (final points of every size, and each run's evaluations during training), and the table of
forecast errors (Ganguli et al. 2022, figure 2's contrast)."""

from __future__ import annotations

import math

PER_ROW = 4
"""Tasks per band of panels."""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_figure(results: dict):
    """First column: validation loss vs FLOPs; then per task (PER_ROW to a band of two rows): exact match (top)
    and answer log-prob (bottom) vs FLOPs."""
    plt = _plt()
    tasks, rows = results["tasks"], results["sizes"]
    bands = max(1, math.ceil(len(tasks) / PER_ROW))
    cols = 1 + min(PER_ROW, len(tasks))
    fig, grid = plt.subplots(2 * bands, cols, figsize=(2.9 * cols, 2.8 * 2 * bands), squeeze=False)
    for band in range(1, bands):
        grid[2 * band][0].axis("off")
        grid[2 * band + 1][0].axis("off")
    axes = grid
    colors = plt.cm.viridis([i / max(1, len(rows) - 1) for i in range(len(rows))])
    ax = axes[0][0]
    for color, r in zip(colors, rows):
        pts = results["loss_curves"].get(r["run_id"], [])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, alpha=0.5, lw=1)
    ax.plot([r["flops"] for r in rows], [r["val_loss"] for r in rows], "ko-", ms=4, label="final")
    for e in (results.get("forecast") or {}).get("loss", {}).get("runs", []):
        ax.plot([next(r["flops"] for r in rows if r["name"] == e["run"])], [e["predicted"]], "r*", ms=10,
                label="forecast")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs", ylabel="validation loss", title="loss (smooth)")
    ax.legend(fontsize=7)
    axes[1][0].axis("off")
    note = (
        "thin lines: each run's evaluations\nduring training (colour: size)\nblack: final values;\n"
        "bars: Wilson 95%\nred star: forecast of the largest\nrun from the smaller ones"
    )
    axes[1][0].text(0, 0.5, note, fontsize=8, va="center")
    for k, task in enumerate(tasks):
        band, j = divmod(k, PER_ROW)
        for i, metric in enumerate(("exact", "logprob")):
            ax = axes[2 * band + i][1 + j]
            for color, r in zip(colors, rows):
                pts = results["task_curves"].get(task, {}).get(r["run_id"], {}).get(metric, [])
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, alpha=0.5, lw=1)
            xs = [r["flops"] for r in rows]
            ys = [r["tasks"][task][metric] for r in rows]
            if metric == "exact":
                lo = [y - (r["tasks"][task]["exact_ci"] or [y, y])[0] for y, r in zip(ys, rows)]
                hi = [(r["tasks"][task]["exact_ci"] or [y, y])[1] - y for y, r in zip(ys, rows)]
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="ko-", ms=4, capsize=2)
            else:
                ax.plot(xs, ys, "ko-", ms=4)
            for e in (results.get("forecast") or {}).get("tasks", {}).get(task, []):
                x = next(r["flops"] for r in rows if r["name"] == e["run"])
                ax.plot([x], [e[f"{metric}_predicted"]], "r*", ms=10)
            abrupt = results["abrupt"].get(task)
            title = f"{task}" + (" (abrupt)" if abrupt else "") if metric == "exact" else f"{task}: log p(answer)"
            ax.set(xscale="log", xlabel="training FLOPs", title=title,
                   ylabel="exact match" if metric == "exact" else "nats")  # fmt: skip
            if metric == "exact":
                ax.set_ylim(-0.03, 1.03)
    for k in range(len(tasks), bands * PER_ROW):
        band, j = divmod(k, PER_ROW)
        if 1 + j < cols:
            axes[2 * band][1 + j].axis("off")
            axes[2 * band + 1][1 + j].axis("off")
    fig.suptitle("Loss falls smoothly; task exact match can jump (red star: forecast from the smaller runs)")
    fig.tight_layout()
    return fig


def forecast_table_figure(results: dict):
    """The forecast errors of the largest run: loss (relative) vs every task's exact match and log-prob."""
    plt = _plt()
    fc = results["forecast"]
    loss = fc["loss"]["runs"][0]
    cells = [["loss (validation)", _pct(results.get("loss_forecast_error")), _band(loss["interval"], loss["actual"]),
              "", "", ""]]  # fmt: skip
    for task, e in (results.get("task_forecast_errors") or {}).items():
        first = fc["tasks"][task][0]
        cells.append([task, _pct(e.get("logprob_rel_error")), _band(first["logprob_interval"], first["logprob_actual"]),
                      f"{e['exact_abs_error']:.2f}", _band(first["exact_interval"], first["exact_actual"]),
                      "abrupt" if results["abrupt"].get(task) else "smooth"])  # fmt: skip
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(cells) + 1.4))
    ax.axis("off")
    labels = ["metric", "rel. error (loss / log-prob)", "95% interval: actual", "exact-match error (abs.)",
              "95% interval: actual", "jump verdict"]  # fmt: skip
    table = ax.table(cellText=cells, colLabels=labels, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    ax.set_title(f"Forecast of {loss['run']} from the smaller runs (first held-out run)", fontsize=9)
    fig.tight_layout()
    return fig


def _band(interval, actual) -> str:
    """'[1.48, 1.68]: 1.50 in' (or 'out'): a prediction interval and where the actual value fell."""
    if interval is None:
        return ""
    inside = "in" if interval[0] <= actual <= interval[1] else "OUT"
    return f"[{interval[0]:.2f}, {interval[1]:.2f}]: {actual:.2f} {inside}"


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def figures(results: dict, store=None) -> list:
    """The loss-vs-tasks panels and the forecast-error table (the table only once a forecast exists)."""
    if not results["sizes"]:
        return []
    out = [curves_figure(results)]
    if results.get("loss_forecast_error") is not None:
        out.append(forecast_table_figure(results))
    return out
