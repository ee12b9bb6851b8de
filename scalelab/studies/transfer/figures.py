"""Figures of the transfer study (Hernandez et al. 2021, Figures 1-3 in small): fine-tuned and from-scratch
loss vs data per size; D_T vs D_F per size with the fitted law; the effective data multiplier vs D_F."""

from __future__ import annotations

import numpy as np


def _colors(n: int) -> list:
    import matplotlib.pyplot as plt

    return [plt.get_cmap("viridis")(x) for x in np.linspace(0.0, 0.85, max(n, 1))]


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # an empty study draws empty axes, without a warning
        ax.legend(fontsize=7)


def _loss_curves(res: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for e, c in zip(res["sizes"], _colors(len(res["sizes"]))):
        for role, style, label in (("scratch", "o-", "from scratch"), ("finetune", "s--", "fine-tuned")):
            pts = [r for r in e[role] if r["loss"] is not None]
            if pts:
                ax.plot([r["D"] for r in pts], [r["loss"] for r in pts], style, color=c, ms=4,
                        label=f"{e['size']} {label}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("unique tokens of B (D from scratch, D_F fine-tuned)")
    ax.set_ylabel("best validation loss on B (nats/token)")
    ax.set_title("Fine-tuned vs from scratch")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _transferred(res: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    fit = res["fit"]
    for e, c in zip(res["sizes"], _colors(len(res["sizes"]))):
        rows = [r for r in e["rows"] if r["D_T"] > 0 and np.isfinite(r["D_T"])]
        for extrap, face in ((False, c), (True, "none")):
            sel = [r for r in rows if r["extrapolated"] == extrap]
            if sel:
                ax.plot([r["D_F"] for r in sel], [r["D_T"] for r in sel], "o", color=c, mfc=face,
                        label=f"{e['size']}" + (" (extrapolated D_E)" if extrap else ""))  # fmt: skip
        if "error" not in fit and e["rows"]:
            d = np.geomspace(min(r["D_F"] for r in e["rows"]), max(r["D_F"] for r in e["rows"]), 50)
            ax.plot(d, fit["k"] * d ** fit["alpha"] * e["N"] ** fit["beta"], "-", color=c, alpha=0.7)
    if "error" not in fit:
        ax.set_title(f"D_T = {fit['k']:.3g} D_F^{fit['alpha']:.2f} N^{fit['beta']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fine-tuning tokens D_F")
    ax.set_ylabel("effective data transferred D_T = D_E - D_F")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def _multiplier(res: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for e, c in zip(res["sizes"], _colors(len(res["sizes"]))):
        rows = [r for r in e["rows"] if r["multiplier"] > 0 and np.isfinite(r["multiplier"])]
        if rows:
            ax.plot([r["D_F"] for r in rows], [r["multiplier"] for r in rows], "o-", color=c, label=e["size"])
            ext = [r for r in rows if r["extrapolated"]]
            ax.plot([r["D_F"] for r in ext], [r["multiplier"] for r in ext], "o", color="white", ms=3)
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fine-tuning tokens D_F")
    ax.set_ylabel("effective data multiplier D_E / D_F")
    ax.set_title("Below 1: ossification (pre-training hurts); hollow: extrapolated")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig


def figures(res: dict, store=None) -> list:
    """Three figures: loss vs data per size, D_T vs D_F with the fit, multiplier vs D_F."""
    return [_loss_curves(res), _transferred(res), _multiplier(res)]


def sections(res: dict, store, config) -> list:
    """Summary, the three figures, the D_T table (one row per fine-tune) and the runs."""
    from scalelab.report import Section

    keys = ("size", "N", "D_F", "loss_finetuned", "loss_scratch_at_D_F", "D_E", "D_T", "multiplier", "extrapolation",
            "ossified", "run_id")  # fmt: skip
    table = [{k: r.get(k) for k in keys} for r in res["table"]]
    runs = store.list_runs(["id", "name", "status", "params", "tokens", "flops", "final_val_loss"], config.name)
    text = ("D_E: the from-scratch data reaching the fine-tuned loss, read off each size's from-scratch curve "
            "(log-log interpolation; 'beyond_largest' / 'below_smallest': extrapolated along a power law). "
            "D_T = D_E - D_F; multiplier = D_E / D_F; ossified: worse than from scratch at D_F.")  # fmt: skip
    from scalelab.studies.transfer.analyze import summary

    return [Section("Summary", summary(res)),
            Section("Figures", figures=figures(res, store)),
            Section("Effective data transferred", text, tables=[table]),
            Section("Runs", "Every number here traces back to these run ids.", tables=[runs])]  # fmt: skip
