"""The RLHF study's figures (the papers' figures, drawn from `analyze`'s plain results) and report sections."""

from __future__ import annotations

import numpy as np

ALGO_COLOR = {"ppo": "C0", "rloo": "C1", "dpo": "C2", "best-of-n": "C3"}


def _figure(ncols: int = 1, width: float = 6.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, 4.2), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _fit_line(ax, fit: dict, xmax: float, color: str) -> None:
    if fit.get("a") is None or fit.get("b") is None:
        return
    d = np.linspace(0, xmax, 50)
    ax.plot(d, fit["a"] + fit["b"] * d, color=color, lw=0.8, ls="--")


def sqrt_kl_figure(results: dict, series_of) -> object:
    """Bai et al. 2022 fig. 4: proxy reward against sqrt(KL) with the linear fit, per policy size and per PM."""
    fits = results["sqrt_kl_fits"]
    fig, (left, right) = _figure(2)
    for ax, key, label, title in ((left, "by_policy_size", "policy_size", "per policy size (train PM)"),
                                  (right, "by_pm_size", "pm", "per proxy PM (largest policy)")):  # fmt: skip
        shown: set[str] = set()
        for i, fit in enumerate(fits[key] + (fits["by_labels"] if key == "by_pm_size" else [])):
            series = series_of(fit["run"])
            if not series or fit["run"] in shown or fit["b"] is None:
                continue
            shown.add(fit["run"])
            color = f"C{i}"
            d = [r["sqrt_kl"] for r in series]
            ax.plot(d, [r["reward"] for r in series], "o", color=color, ms=4,
                    label=f"{fit[label]} (b={fit['b']:.2f}, R²={fit['r2'] or 0:.2f})")  # fmt: skip
            _fit_line(ax, fit, max(d), color)
        ax.set(xlabel="sqrt(KL(policy || initial))", ylabel="proxy PM reward", title=f"Reward vs sqrt(KL), {title}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def train_test_figure(results: dict) -> object:
    """Bai et al. 2022 fig. 3: the optimised (train) PM and the held-out (test) PM on the same samples."""
    tt = results["train_pm_vs_test_pm"]
    fig, (ax,) = _figure()
    if tt:
        rows = tt["series"]
        d = [r["sqrt_kl"] for r in rows]
        for key, label, color in (("train_gain", "train PM (optimised)", "C0"), ("test_gain", "test PM", "C1")):
            ax.plot(d, [r[key] for r in rows], "o-", color=color, label=label)
        ax2 = ax.twinx()
        ax2.plot(d, [r["gold_gain"] for r in rows], "s:", color="0.3", label="gold (right axis)")
        ax2.set_ylabel("gold reward gain")
        sep = tt["separation"]
        if sep["sqrt_kl"] is not None:
            ax.axvline(sep["sqrt_kl"], color="0.5", ls="--", lw=0.8)
        ax.legend(fontsize=8, loc="upper left")
        ax2.legend(fontsize=8, loc="lower right")
    ax.set(xlabel="sqrt(KL)", ylabel="PM reward gain over the initial policy", title="Train PM vs test PM")
    return fig


def gold_proxy_figure(results: dict) -> object:
    """Gao et al. 2022 fig. 1: proxy (dashed) and gold (solid) reward against sqrt(KL), fit d (alpha - beta d)."""
    algos = list(results["gold_vs_proxy"].items())
    fig, axes = _figure(max(1, len(algos)), width=4.2)
    for ax, (algo, g) in zip(axes, algos):
        rows = g["series"]
        d = np.array([r["sqrt_kl"] for r in rows], dtype=float)
        color = ALGO_COLOR.get(algo, "C4")
        ax.plot(d, [r["gold_gain"] for r in rows], "o-", color=color, label="gold (gain)")
        fit = g["gold_fit"]
        if fit["alpha"] is not None and d.size:
            x = np.linspace(0, d.max(), 50)
            ax.plot(x, x * (fit["alpha"] - fit["beta"] * x), color=color, lw=0.8, alpha=0.6, label="d(α-βd) fit")
        if g["peak_kl"] is not None and g["gold_fit"].get("peak_in_range"):
            ax.axvline(np.sqrt(g["peak_kl"]), color="0.5", ls=":", lw=0.8)
        ax2 = ax.twinx()
        proxy = [r["proxy"] for r in rows]
        ax2.plot(d, [p - proxy[0] for p in proxy], "--", color="0.4", label="proxy (gain, right)")
        ax.set(xlabel="sqrt(KL)", title=algo)
        ax.legend(fontsize=7, loc="upper left")
        ax2.legend(fontsize=7, loc="lower right")
    if algos:
        axes[0].set_ylabel("gold reward gain")
    return fig


def online_figure(results: dict) -> object:
    """Iterated online training: the gold reward after each round against the offline run at equal labels."""
    ov = results["online_vs_offline"]
    fig, (ax,) = _figure()
    if ov:
        rounds = ov["rounds"]
        x = [r["labels_cumulative"] or 0 for r in rounds]
        ax.plot(x, [r["gold"] for r in rounds], "o-", color="C0", label="online (end of each round)")
        off = ov["offline"]
        ax.plot([off["labels"] or 0], [off["gold"]], "s", color="C3", ms=8, label="offline (one round)")
        if ov["gold_start"] is not None:
            ax.axhline(ov["gold_start"], color="0.6", lw=0.8, label="initial policy")
        ax.legend(fontsize=8)
    ax.set(xlabel="labels (labeller queries) so far", ylabel="gold reward", title="Online vs offline at equal labels")
    return fig


def figures(results: dict, store) -> list:
    """Reward vs sqrt(KL), train vs test PM, gold vs proxy per algorithm, online vs offline."""
    from scalelab.studies.rlhf.analyze import eval_series

    ids = {r["name"]: r["run_id"] for r in results["runs"]}

    def series_of(name: str) -> list[dict]:
        return eval_series(store, ids[name]) if name in ids and store is not None else []

    return [sqrt_kl_figure(results, series_of), train_test_figure(results), gold_proxy_figure(results),
            online_figure(results)]  # fmt: skip


def sections(results: dict, store, config) -> list:
    """The report: summary, the four figures with their tables, samples before/after RL, PMs, runs."""
    from scalelab.report import Section

    figs = figures(results, store)
    fits = results["sqrt_kl_fits"]
    fit_keys = ("run", "policy_size", "pm", "labels", "params", "a", "b", "b_ci", "r2", "n", "run_id")
    fit_rows = [{"axis": key.removeprefix("by_"), **{k: f.get(k) for k in fit_keys}} for key in fits for f in fits[key]]
    gold_rows = [{"algo": a, "alpha": g["gold_fit"]["alpha"], "beta": g["gold_fit"]["beta"],
                  "r2": g["gold_fit"]["r2"], "peak_kl": g["peak_kl"], "peak_kl_ci": g["gold_fit"]["ci"]["peak_kl"],
                  "beta_ci": g["gold_fit"]["ci"]["beta"], "peak_in_range": g["gold_fit"]["peak_in_range"],
                  "gold_start": g["gold_start"], "gold_end": g["gold_end"], "proxy_b": g["proxy_fit"]["b"],
                  "run": g["run"]} for a, g in results["gold_vs_proxy"].items()]  # fmt: skip
    samples = results.get("samples", {})
    sample_rows = [{"prompt": r["prompt"].strip(), "before RL": r["before"], "gold before": r["gold_before"],
                    "after RL": r["after"], "gold after": r["gold_after"]}
                   for r in samples.get("rows", [])]  # fmt: skip
    ov = results["online_vs_offline"]
    tt = results["train_pm_vs_test_pm"]
    return [
        Section("Summary", results["summary"]),
        Section("Reward vs sqrt(KL)", "Proxy PM reward on held-out prompts at every evaluation of each PPO run, with "
                "the fit reward = a + b sqrt(KL) (dashed; Bai et al. 2022 find it roughly linear). b_ci is a 95% "
                "bootstrap interval over the evaluations.", figures=[figs[0]], tables=[fit_rows]),
        Section("Train PM vs test PM", "The policy optimises the train PM; the test PM, trained on the other half "
                "of the labels, scores the same samples. Gains over the initial policy (PM scales differ). "
                + (f"They separate from sqrt(KL) = {tt['separation']['sqrt_kl']:.2f}."
                   if tt and tt["separation"]["sqrt_kl"] is not None
                   else (tt or {}).get("separation", {}).get("note", "No PPO run.")),
                figures=[figs[1]], tables=[tt["series"] if tt else []]),
        Section("Over-optimisation: gold vs proxy", "Gold reward gain (the verifiable property the labeller used) "
                "and proxy reward gain against sqrt(KL) per algorithm, with Gao et al.'s R(d) = d (alpha - beta d); "
                "the dotted line marks the fitted peak. Best-of-N points use the analytic KL log N - (N-1)/N. "
                "The second table: PPO's gold peak against every proxy PM (PM size and label budget).",
                figures=[figs[2]], tables=[gold_rows, results.get("gold_peak_by_run", [])]),
        Section("Online vs offline", "Iterated online training: each round labels samples of the current policy, "
                "retrains the PM on every label so far and continues PPO; the offline run spends the same labels "
                "on the initial policy's samples and the same PPO steps. " + (ov["note"] if ov else "Not planned."),
                figures=[figs[3]], tables=[ov["rounds"] if ov else []]),
        Section("Samples before and after RL", "Held-out prompts, the same seed, the initial policy and the main PPO "
                "run's final policy. " + samples.get("note", ""), tables=[sample_rows]),
        Section("Proxy PMs", "Held-out accuracy on their own gold-labelled comparisons (95% bootstrap CI).",
                tables=[results["pms"]]),
        Section("Runs", "Every number here traces back to these run ids.", tables=[results["runs"], results["lms"]]),
    ]  # fmt: skip
