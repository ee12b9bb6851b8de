"""The preference study's figures and report sections (drawn from `analyze`'s plain results)."""

from __future__ import annotations

import numpy as np

OBJECTIVE_STYLE = {"ranked": "C0", "binary": "C1", "imitation": "C2"}
TABLE_KEYS = ("size", "params", "objective", "pmp", "n_train", "accuracy", "lo", "hi", "ece", "run_id")


def _label(r: dict) -> str:
    return r["objective"] + (f" + {r['pmp']} PMP" if r.get("pmp") else "")


def _line(label: str) -> str:
    return "--" if "binary PMP" in label else "-." if "ranked PMP" in label else ":" if "LM" in label else "-"


def accuracy_figure(rows: list[dict], x: str, xlabel: str, title: str):
    """Held-out accuracy with its interval against ``x`` (log axis), one line per objective / PMP variant."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_label(r), []).append(r)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[x])
        err = np.array([[r["accuracy"] - r["lo"] for r in rs], [r["hi"] - r["accuracy"] for r in rs]])
        ax.errorbar([r[x] for r in rs], [r["accuracy"] for r in rs], yerr=err, marker="o", capsize=3, label=label,
                    color=OBJECTIVE_STYLE.get(label.split(" ")[0], "0.5"), linestyle=_line(label))  # fmt: skip
    ax.axhline(0.5, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="held-out accuracy", title=title)
    if groups:
        ax.legend(fontsize=8)
    return fig


def reliability_figures(results: dict) -> list:
    """Folded reliability diagrams of the largest backbone's PMs (no PMP), one per objective."""
    from scalelab.evals.calibration import CalibrationResult, reliability_figure

    def arr(values: list) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    figs = []
    for c in results["calibration"]:
        cal = CalibrationResult(c["convention"], arr(c["bin_edges"]), arr(c["mean_predicted"]), arr(c["observed"]),
                                np.array(c["counts"]), c["ece"], c["n_pairs"])  # fmt: skip
        title = f"{c['objective']} ({c['size']}): ECE {c['ece']:.3f}, {c['n_pairs']} pairs"
        figs.append(reliability_figure(cal, title))
    return figs


def figures(results: dict, store=None) -> list:
    """Accuracy vs size per objective, accuracy vs comparisons per objective, reliability diagrams."""
    largest = results["design"]["largest"]
    return [
        accuracy_figure(results["by_size"] + results["zero_shot"], "params", "backbone parameters",
                        "PM accuracy vs model size"),
        accuracy_figure(results["efficiency"], "n_train", "fine-tuning comparisons",
                        f"Sample efficiency ({largest} backbone), with and without PMP"),
        *reliability_figures(results),
    ]  # fmt: skip


def _data_text(info: dict) -> str:
    if not info:
        return ""
    text = (f"Data: {info.get('n_target')} target pairs ({info.get('n_target_filtered_long')} candidates longer than "
            f"the context left out, counted), {info.get('n_target_train')} train / {info.get('n_target_test')} test, "
            "split by source document.")  # fmt: skip
    if "n_pmp" in info:
        text += (f" PMP set: {info['n_pmp']} pairs from the train documents only ({info['n_pmp_filtered_long']} "
                 "too long, left out).")  # fmt: skip
    return text


def _fit_text(fit: dict | None) -> str:
    fit = fit or {}
    if "a" not in fit:
        return "Acc = a + b ln(N/1e11) + c ln(D/8e4): " + fit.get("error", "not enough points to fit.")
    return (f"Acc = a + b ln(N/1e11) + c ln(D/8e4) over the ranked PMs: a={fit['a']:.3f}, b={fit['b']:.4f} "
            f"{fit['ci']['b']}, c={fit['c']:.4f} {fit['ci']['c']}, rmse {fit['rmse']:.3f} (natural logs); Bai et "
            "al. 2022 report b=0.007, c=0.015 for helpfulness PMs of 1e7 to 5e10 parameters.")  # fmt: skip


def sections(results: dict, store, config) -> list:
    """The report: summary, accuracy vs size, sample efficiency with PMP, calibration, backbones."""
    from scalelab.report import Section

    figs = figures(results, store)
    table = lambda rows: [{k: r.get(k) for k in TABLE_KEYS} for r in rows]  # noqa: E731
    pmp_keys = ("size", "pmp", "pmp_accuracy", "n_pmp", "run_id")
    pmp_table = [{k: r.get(k) for k in pmp_keys} for r in results["pmp_stages"]]
    return [
        Section("Summary", results["summary"] + f"\n\n{_data_text(results.get('data', {}))}"),
        Section("Accuracy vs model size", "Every objective on every backbone, the same training comparisons; "
                "the dotted line is the pre-trained LM alone choosing the higher log-probability. Summed "
                "log-probabilities favour shorter texts, and a broken function is usually one character shorter "
                "than the original (a dropped colon, bracket or quote), which can put a weak LM below chance.",
                figures=[figs[0]], tables=[table(results["by_size"]), table(results["zero_shot"])]),
        Section("Accuracy vs number of comparisons", "Largest backbone. Dashed: after preference-model "
                "pre-training on the binarised automatic set (Askell et al. 2021 section 5); dash-dot: after PMP "
                "on the same pairs unbinarised. " + _fit_text(results["fit"]),
                figures=[figs[1]], tables=[table(results["efficiency"]), pmp_table]),
        Section("Calibration", "Folded reliability diagrams of P(A > B) = sigmoid(r_A - r_B) on held-out pairs "
                "(for imitation, r is the summed log-probability, which is not trained to be calibrated).",
                figures=figs[2:]),
        Section("Backbones", "Language models pre-trained on the embedded corpus.", tables=[results["backbones"]]),
    ]  # fmt: skip
