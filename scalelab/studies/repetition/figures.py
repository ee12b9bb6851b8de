"""Figures and report sections of the repeated-data study, in the spirit of Hernandez et al. 2022.

- test loss vs repeated epochs for each model size, the baseline as a horizontal line (their Fig. 2, left);
- test loss vs step for chosen runs, with the loss on the repeated subset (Fig. 2, right);
- effective-size degradation k as a heatmap over (N, R) (their Fig. 1 in table form);
- the baseline law L(N) with each degraded run moved to its effective size;
- prefix-matching and copying scores at the end of training vs R, and over training (Section 5).
"""

from __future__ import annotations

import numpy as np

from scalelab.report import Section
from scalelab.store import RunStore


def _colors(n: int) -> list:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis")
    return [cmap(x) for x in np.linspace(0.0, 0.85, max(n, 1))]


def _sizes(res: dict) -> list[tuple]:
    """(N, size label) of the treated sizes, smallest first."""
    return sorted({(c["N"], c["size"]) for c in res["cells"]})


def loss_vs_repeats(res: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes, sigma = _sizes(res), res["noise"]["sigma"]
    for (N, label), color in zip(sizes, _colors(len(sizes))):
        cs = sorted((c for c in res["cells"] if c["N"] == N), key=lambda c: (c["f"], c["R"]))
        for f in sorted({c["f"] for c in cs}):
            sub = [c for c in cs if c["f"] == f]
            R, L = [c["R"] for c in sub], [c["loss"] for c in sub]
            ls = "-" if f == max(c["f"] for c in cs) else "--"
            ax.errorbar(R, L, yerr=1.96 * sigma, marker="o", color=color, capsize=2, ls=ls,
                        label=f"{label} (N={N:.2g}), f={f:g}")
        if cs and cs[0].get("baseline_loss") is not None:
            ax.axhline(cs[0]["baseline_loss"], color=color, ls=":", lw=1.2)
    for p in res["peaks"]:
        if p.get("resolved"):
            ax.scatter([p["R_peak"]], [p["loss"]], marker="*", s=160, color="red", zorder=5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("repeated epochs R on the subset")
    ax.set_ylabel("final test loss (nats/token)")
    ax.set_title("test loss vs repeats (dotted: no repetition; star: resolved peak)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


def curves_for_sizes(res: dict, store: RunStore):
    """Test loss (solid) and repeated-subset loss (dashed) vs step: baseline, peak R and largest R."""
    import matplotlib.pyplot as plt

    sizes = _sizes(res)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.8), squeeze=False)
    for ax, (N, label) in zip(axes[0], sizes):
        cs = [c for c in res["cells"] if c["N"] == N]
        peak = next((p for p in res["peaks"] if p["N"] == N), None)
        chosen = [c for c in cs if peak and c["R"] == peak["R_peak"] and c["f"] == peak["f"]]
        chosen += [max(cs, key=lambda c: c["R"])] if cs else []
        ids = list(dict.fromkeys(([cs[0]["baseline_ids"][0]] if cs and cs[0]["baseline_ids"] else []) +
                                 [c["run_ids"][0] for c in chosen]))  # fmt: skip
        m = store.metrics_df(ids, name="loss")
        for rid, color in zip(ids, ["black", "tab:red", "tab:blue"]):
            tag = "baseline" if rid in (cs[0]["baseline_ids"] if cs else []) else next(
                f"R={c['R']:g}, f={c['f']:g}" for c in cs if rid in c["run_ids"])
            for split, ls in (("val", "-"), ("repeated", "--")):
                g = m[(m.run_id == rid) & (m.split == split)].sort_values("step")
                if len(g):
                    ax.plot(g.step, g.value, ls=ls, color=color, marker="." if ls == "-" else None,
                            label=f"{tag} {'test' if split == 'val' else 'repeated subset'}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{label} (N={N:.2g})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("loss (nats/token)")
    fig.tight_layout()
    return fig


def effective_size_heatmap(res: dict):
    import matplotlib.pyplot as plt

    sizes = _sizes(res)
    cols = sorted({(c["f"], c["R"]) for c in res["cells"]})
    use_k = res.get("law") is not None
    grid = np.full((len(sizes), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in sizes]
    for c in res["cells"]:
        i, j = sizes.index((c["N"], c["size"])), cols.index((c["f"], c["R"]))
        if use_k and c.get("k") is not None and np.isfinite(c["k"]) and c["k"] > 0:
            grid[i, j] = np.log2(c["k"])
            lo, hi = c["k_ci"]
            text[i][j] = f"{c['k']:.2f}x\n[{lo:.2f}, {hi:.2f}]"
        elif c.get("degradation") is not None:
            grid[i, j] = c["degradation"]
            text[i][j] = f"{c['degradation']:+.3f}"
    fig, ax = plt.subplots(figsize=(1.6 * len(cols) + 2, 0.9 * len(sizes) + 1.8))
    lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(sizes)):
        for j in range(len(cols)):
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), [f"R={r:g}\nf={f:g}" for f, r in cols], fontsize=8)
    ax.set_yticks(range(len(sizes)), [f"{lab} ({n:.2g})" for n, lab in sizes], fontsize=8)
    fig.colorbar(im, ax=ax, label="log2 k (k: times smaller)" if use_k else "degradation (nats)")
    ax.set_title("effective-size degradation: performs like a model k times smaller" if use_k
                 else "test-loss degradation (no baseline law)")  # fmt: skip
    fig.tight_layout()
    return fig


def law_figure(res: dict):
    import matplotlib.pyplot as plt

    law = res["law"]
    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    N = np.array(law["N"])
    grid = np.geomspace(min(N.min(), *[c["N_eff"] for c in res["cells"] if _finite(c.get("N_eff"))], N.min()) / 1.5,
                        N.max() * 1.5, 100)  # fmt: skip
    ax.plot(grid, law["E"] + law["A"] * grid ** (-law["alpha"]), "k-",
            label=f"L(N) = {law['E']:.2f} + {law['A']:.3g} N^-{law['alpha']:.3f}")  # fmt: skip
    ax.scatter(N, law["loss"], color="black", zorder=3, label="baseline runs")
    for p in res["peaks"]:
        if _finite(p.get("N_eff")):
            ax.annotate("", xy=(p["N_eff"], p["loss"]), xytext=(p["N"], p["loss"]),
                        arrowprops={"arrowstyle": "->", "color": "tab:red"})  # fmt: skip
            ax.scatter([p["N"]], [p["loss"]], color="tab:red", zorder=4)
            ax.text(p["N"], p["loss"], f" {p['size']} R={p['R_peak']:g}: {p['k']:.2f}x", fontsize=7, va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel(f"{res['fit_params']} parameters N")
    ax.set_ylabel("final test loss (nats/token)")
    ax.set_title("peak-degradation runs moved to their effective size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x)) and x > 0


def probes_over_training(res: dict, store: RunStore):
    """Prefix matching (induction_max) and copying (copy_loss_later) vs step: baseline vs peak R per size."""
    import matplotlib.pyplot as plt

    metrics = [k for k in ("induction_max", "copy_loss_later") if k in res["probes"]["metrics"]]
    sizes = _sizes(res)
    fig, axes = plt.subplots(len(metrics), len(sizes), figsize=(4 * len(sizes), 3.2 * len(metrics)), squeeze=False)
    for j, (N, label) in enumerate(sizes):
        peak = next((p for p in res["peaks"] if p["N"] == N), None)
        rows = [r for r in res["probes"]["cells"] if r["N"] == N]
        pick = [r for r in rows if peak and r["R"] == peak["R_peak"] and r["f"] == peak["f"]]
        pick += [max(rows, key=lambda r: r["R"])] if rows else []
        ids = [(rows[0]["baseline_id"], "baseline", "black")] if rows and rows[0]["baseline_id"] else []
        ids += [(r["run_id"], f"R={r['R']:g}", c) for r, c in zip(pick, ["tab:red", "tab:blue"])]
        ids = list({i[0]: i for i in ids}.values())
        m = store.metrics_df([i[0] for i in ids])
        for i, k in enumerate(metrics):
            ax = axes[i][j]
            for rid, tag, color in ids:
                g = m[(m.run_id == rid) & (m.split == "eval") & (m.name == k)].sort_values("step")
                ax.plot(g.step, g.value, marker=".", color=color, label=tag)
            ax.set_title(f"{label}: {'prefix matching (max head)' if k == 'induction_max' else 'loss on later copies'}",
                         fontsize=9)  # fmt: skip
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def probes_vs_repeats(res: dict):
    """Final prefix matching and loss on later copies vs R per size, baseline as a band: the mechanism's damage."""
    import matplotlib.pyplot as plt

    pr = res["probes"]
    metrics = [k for k in ("induction_max", "copy_loss_later") if k in pr["metrics"]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), squeeze=False)
    sizes = _sizes(res)
    for ax, k in zip(axes[0], metrics):
        for (N, label), color in zip(sizes, _colors(len(sizes))):
            b = next((x for x in pr["baselines"] if x["N"] == N and k in x), None)
            if b is not None:
                ax.axhspan(*b[f"{k}_ci"], color=color, alpha=0.15)
                ax.axhline(b[k], color=color, ls=":", lw=1.2)
            for f in sorted({r["f"] for r in pr["cells"] if r["N"] == N}):
                rows = sorted((r for r in pr["cells"] if r["N"] == N and r["f"] == f and f"{k}_delta" in r),
                              key=lambda r: r["R"])  # fmt: skip
                if not rows:
                    continue
                y = np.array([r[f"{k}_baseline"] + r[f"{k}_delta"] for r in rows])
                lo = np.array([r[f"{k}_baseline"] + r[f"{k}_delta_ci"][0] for r in rows])
                hi = np.array([r[f"{k}_baseline"] + r[f"{k}_delta_ci"][1] for r in rows])
                ax.errorbar([r["R"] for r in rows], y, yerr=[y - lo, hi - y], marker="o", capsize=2, color=color,
                            label=f"{label}, f={f:g}")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("repeated epochs R")
        ax.set_title("prefix matching (best head)" if k == "induction_max" else "loss on later copies (nats)",
                     fontsize=9)  # fmt: skip
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("mechanism at the end of training (band: baseline 95% CI)", fontsize=9)
    fig.tight_layout()
    return fig


def figures(res: dict, store: RunStore) -> list:
    """Every figure of the report (those the results support)."""
    if not res.get("cells"):
        return []
    figs = [loss_vs_repeats(res), curves_for_sizes(res, store), effective_size_heatmap(res)]
    if res.get("law") and res.get("peaks"):
        figs.append(law_figure(res))
    if res.get("probes", {}).get("metrics"):
        figs += [probes_vs_repeats(res), probes_over_training(res, store)]
    return figs


def _r(x, nd: int = 4):
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(f"{v:.{nd}g}" if isinstance(v, float) else str(v) for v in x) + "]"
    return round(x, nd) if isinstance(x, float) else x


def sections(res: dict, store: RunStore, config=None) -> list[Section]:
    """The report: summary, double descent, effective size, data-constrained law, probes, runs."""
    from scalelab.studies.repetition.words import summary

    nz, dc = res.get("noise", {}), res.get("data_constrained") or {}
    sec = [Section("Summary", summary(res))]
    if res.get("cells"):
        cells = [_cell_row(c) for c in res["cells"]]
        sec.append(Section("Double descent: test loss vs repeats and over training",
                           f"Noise rule: {nz.get('rule', '')}. Threshold {nz.get('threshold', float('nan')):.4f} nats.",
                           figures=[loss_vs_repeats(res), curves_for_sizes(res, store)], tables=[cells]))  # fmt: skip
        eff = [effective_size_heatmap(res)] + ([law_figure(res)] if res.get("law") and res.get("peaks") else [])
        peaks = [{k: _r(v) for k, v in p.items()} for p in res["peaks"]]
        sec.append(Section("Effective model size", "k = N / N_eff, N_eff the unrepeated size with the same test loss "
                           "under the baseline law; interval: each bootstrap refit of the law inverted at a noise "
                           "redraw of the degraded loss.", figures=eff, tables=[peaks] if peaks else []))  # fmt: skip
    fitted = str(dc.get("reason") or "")
    if dc.get("fitted"):
        fitted = f"Fitted R_D* = {dc['R_D_star']:.3g}."
    sec.append(Section("Data-constrained law (Muennighoff et al. 2023)",
                       "Effective data D' = U + U R_D* (1 - exp(-R_D / R_D*)), R_D = D / U - 1, U the unique tokens "
                       "a run saw (its unique windows plus one copy of the subset). " + fitted))  # fmt: skip
    pr = res.get("probes", {})
    probes = [{k: _r(v) for k, v in r.items() if k not in ("run_ids", "seeds")} for r in pr.get("cells", [])]
    base = [{k: _r(v) for k, v in r.items() if k != "run_ids"} for r in pr.get("baselines", [])]
    if probes:
        sec.append(Section("Mechanism probes over training", "induction_max: the largest prefix-matching score of any "
                           "head; copy_loss_first / copy_loss_later: loss on the first copy / copies 2-4 of a random "
                           "passage (a model that copies has later far below first); icl_score: late minus early "
                           "token loss on held-out text (8 windows during training: read it as noisy). Deltas are "
                           "treated minus baseline of the same seed at the last evaluation, intervals over seeds "
                           "(Student t) when there are 2 or more. First table: the baselines; second: the treatments.",
                           figures=[probes_vs_repeats(res), probes_over_training(res, store)],
                           tables=[base, probes]))  # fmt: skip
    sec.append(Section("Runs", "Every number in this report traces back to these run ids.", tables=[res["runs"]]))
    return sec


def _cell_row(c: dict) -> dict:
    return {"size": c["size"], "N": c["N"], "f": c["f"], "f realised": _r(c.get("f_realised")), "R": c["R"],
            "subset_tokens": c["subset_tokens"], "seeds": len(c["run_ids"]),
            "test_loss": _r(c["loss"]), "baseline": _r(c.get("baseline_loss")), "degradation": _r(c.get("degradation")),
            "95% CI": _r(c.get("degradation_ci")), "k (x smaller)": _r(c.get("k"), 3), "k 95% CI": _r(c.get("k_ci"), 3),
            "curve": c["curve"]["shape"], "max gap": _r(c.get("max_gap")), "gap step": c.get("max_gap_step"),
            "repeated loss": _r(c.get("repeated_loss")),
            "D'/D (R_D*=15.4)": _r(c.get("effective_data_ratio_published")),
            "runs": " ".join(c["run_ids"]), "baseline run": " ".join(c["baseline_ids"])}  # fmt: skip
