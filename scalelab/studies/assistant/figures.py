"""The assistant study's figures (Askell et al. 2021 style: each quantity against model size, one line
per starting point: the plain model, the plain model with the prompt, the context-distilled model)."""

from __future__ import annotations

STYLE = {"plain": ("C0", "o", "plain (no prompt)"), "prompted": ("C1", "s", "prompted"),
         "distilled": ("C2", "^", "context-distilled (no prompt)")}  # fmt: skip


def _axes(title: str, ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    ax.set(xlabel="parameters", ylabel=ylabel, title=title)
    ax.set_xscale("log")
    return fig, ax


def _by_start(rows: list[dict], ax, value, err=None) -> None:
    for start, (color, marker, label) in STYLE.items():
        pts = [(r["params"], value(r, start), err(r, start) if err else None) for r in rows]
        pts = [p for p in pts if p[1] is not None]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if err:
            lo = [y - p[2][0] for y, p in zip(ys, pts)]
            hi = [p[2][1] - y for y, p in zip(ys, pts)]
            ax.errorbar(xs, ys, yerr=[lo, hi], color=color, marker=marker, capsize=3, label=label)
        else:
            ax.plot(xs, ys, color=color, marker=marker, label=label)
    ax.legend(fontsize=8)


def figures(results: dict, store=None) -> list:
    """Format choice, capitals written, loss, alignment tax, PM accuracy, KL, OOD AUROC per layer."""
    rows = sorted(results["by_size"], key=lambda r: r["params"])
    if not rows:
        return []
    figs = []
    fig, ax = _axes("Format the prompt asks for: binary choice", "P(choose the capitalised text)")
    _by_start(rows, ax, lambda r, s: r["choice"][s], lambda r, s: r["choice"]["ci"][s])
    figs.append(fig)
    fig, ax = _axes("Format the prompt asks for: samples", "share of capital letters written")
    _by_start(rows, ax, lambda r, s: r["upper_share"][s])
    figs.append(fig)
    fig, ax = _axes("Loss on held-out text of the corpus", "loss (nats / token)")
    _by_start(rows, ax, lambda r, s: r["loss"][s]["mean"], lambda r, s: r["loss"][s]["ci"])
    figs.append(fig)
    fig, ax = _axes("Alignment tax: held-out loss minus the plain model's", "loss change (nats / token)")
    for start in ("prompted", "distilled"):
        color, marker, label = STYLE[start]
        ys = [r["tax"][start]["mean"] for r in rows]
        err = [[y - r["tax"][start]["ci"][0] for y, r in zip(ys, rows)],
               [r["tax"][start]["ci"][1] - y for y, r in zip(ys, rows)]]  # fmt: skip
        ax.errorbar([r["params"] for r in rows], ys, yerr=err, color=color, marker=marker, capsize=3, label=label)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(fontsize=8)
    figs.append(fig)
    if any(r["pm"] for r in rows):
        fig, ax = _axes("Preference models from three starting points", "held-out PM accuracy")
        _by_start(rows, ax, lambda r, s: r["pm"].get(s, {}).get("accuracy"),
                  lambda r, s: r["pm"].get(s, {}).get("ci") or [r["pm"][s]["accuracy"]] * 2)  # fmt: skip
        ax.axhline(0.5, color="0.6", lw=0.8)
        figs.append(fig)
    fig, ax = _axes("Context distillation: held-out KL(prompted || student)", "KL per token (nats)")
    ax.plot([r["params"] for r in rows], [r["distill"]["kl_before"] for r in rows], "o-", color="C1",
            label="before (the plain model)")  # fmt: skip
    ax.plot([r["params"] for r in rows], [r["distill"]["kl_after"] for r in rows], "^-", color="C2",
            label="after distillation")  # fmt: skip
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    figs.append(fig)
    ood = [r for r in rows if r["ood"].get("layers")]
    if ood:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4.2))
        ax = fig.add_subplot()
        for r in ood:
            layers = r["ood"]["layers"]
            ax.errorbar([x["layer"] for x in layers], [x["auroc"] for x in layers],
                        yerr=[[x["auroc"] - x["ci"][0] for x in layers], [x["ci"][1] - x["auroc"] for x in layers]],
                        marker="o", capsize=3, label=f"{r['size']} ({r['params']:,})")  # fmt: skip
        ax.axhline(0.5, color="0.6", lw=0.8)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="layer", ylabel="AUROC (Mahalanobis)", title="OOD detection per layer and size")
        ax.legend(fontsize=8)
        figs.append(fig)
        exposed = [r for r in ood if r["ood"].get("exposure", {}).get("curve")]
        if exposed:
            fig = Figure(figsize=(6, 4.2))
            ax = fig.add_subplot()
            for r in exposed:
                curve = r["ood"]["exposure"]["curve"]
                ax.errorbar([c["m"] for c in curve], [c["auroc"] for c in curve],
                            yerr=[[c["auroc"] - c["lo"] for c in curve], [c["hi"] - c["auroc"] for c in curve]],
                            marker="o", capsize=3, label=f"{r['size']}, layer {r['ood']['exposure']['layer']}")
            ax.set_xscale("log", base=2)
            ax.set(xlabel="labelled OOD examples (outlier exposure)", ylabel="AUROC", title="Outlier exposure")
            ax.legend(fontsize=8)
            figs.append(fig)
    return figs
