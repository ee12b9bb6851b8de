"""The preference study's results, read from the run store: accuracy with intervals per size, objective
and training-set size, the PMP stages, calibration, and a fit of Acc = a + b ln N + c ln D."""

from __future__ import annotations

import json
import math
from pathlib import Path

from scalelab.errors import UserError
from scalelab.studies.preference.config import Config
from scalelab.studies.preference.plan import plan, sets_folder

ROW_KEYS = ("size", "params", "objective", "pmp", "n_train", "accuracy", "lo", "hi", "ece", "n_test", "run_id")


def _row(p, run: dict) -> dict:
    s = run["summary"]
    ci = s.get("accuracy_ci") or [math.nan, math.nan]
    return {"size": p.axes["size"], "params": p.params, "objective": p.axes.get("objective", "ranked"),
            "pmp": p.axes.get("pmp"), "n_train": s.get("n_train"), "accuracy": s["accuracy"], "lo": ci[0],
            "hi": ci[1], "ece": s.get("ece"), "n_test": s.get("n_test"), "run_id": run["id"],
            "pairs_per_s": s.get("pairs_per_s"), "grid": p.axes.get("grid", False)}  # fmt: skip


def _calibration(run_dir: Path, size: str, objective: str) -> dict | None:
    """Folded reliability bins of a PM's held-out scores (plain lists; empty bins are None)."""
    from scalelab.evals.calibration import calibration

    path = run_dir / "scores.json"
    if not path.is_file():
        return None
    scores = json.loads(path.read_text())
    cal = calibration(scores["chosen"], scores["rejected"])
    plain = lambda a: [None if not math.isfinite(float(x)) else float(x) for x in a]  # noqa: E731
    return {"size": size, "objective": objective, "ece": cal.ece, "n_pairs": cal.n_pairs,
            "convention": cal.convention, "bin_edges": plain(cal.bin_edges),
            "mean_predicted": plain(cal.mean_predicted), "observed": plain(cal.observed),
            "counts": [int(c) for c in cal.counts]}  # fmt: skip


def _fit(rows: list[dict], seed: int) -> dict | None:
    """Acc = a + b ln(N) + c ln(D) over the ranked PMs without PMP (Bai et al. 2022, arXiv 2204.05862)."""
    from scalelab.evals.pm_scaling import fit_pm_accuracy

    ranked = [r for r in rows if r["objective"] == "ranked" and not r["pmp"]]
    if len({r["params"] for r in ranked}) < 2 or len({r["n_train"] for r in ranked}) < 2 or len(ranked) < 4:
        return None
    try:
        f = fit_pm_accuracy([r["params"] for r in ranked], [r["n_train"] for r in ranked],
                            [r["accuracy"] for r in ranked], seed=seed)  # fmt: skip
    except UserError as e:
        return {"error": str(e)}
    return {"a": f.a, "b": f.b, "c": f.c, "ci": f.ci, "rmse": f.rmse, "n_points": f.n_points}


def analyze(store, config: Config) -> dict:
    """Plain results of the study from the completed runs of its plan (matched by name and config hash)."""
    workdir = Path(store.path).parent
    planned = plan(config, workdir)
    done = {(r["name"], r["config_hash"]): r for r in store.find_runs(group=config.name, status="completed")}
    found = [(p, done.get((p.name, p.config_hash))) for p in planned]
    missing = [p.name for p, run in found if run is None]
    found = [(p, run) for p, run in found if run is not None]
    role = lambda name: [(p, run) for p, run in found if p.axes["role"] == name]  # noqa: E731
    largest = config.sizes[-1]
    pms = [_row(p, run) for p, run in role("pm")]
    by_size = sorted((r for r in pms if r["grid"]), key=lambda r: (r["params"], r["objective"], r["pmp"] or ""))
    efficiency = sorted((r for r in pms if r["size"] == largest),
                        key=lambda r: (r["objective"], r["pmp"] or "", r["n_train"]))  # fmt: skip
    zero_shot = [{**_row(p, run), "objective": "LM log-prob (no PM training)", "pmp": None}
                 for p, run in role("zero_shot")]  # fmt: skip
    pmp_stages = [{"size": p.axes["size"], "pmp": p.axes["pmp"], "pmp_accuracy": run["summary"]["accuracy"],
                   "pmp_accuracy_ci": run["summary"].get("accuracy_ci"), "n_pmp": run["summary"].get("n_train"),
                   "run_id": run["id"]} for p, run in role("pmp")]  # fmt: skip
    backbones = [{"size": p.axes["size"], "params": p.params, "val_loss": run.get("final_val_loss"),
                  "run_id": run["id"]} for p, run in role("backbone")]  # fmt: skip
    head = next((r for r in by_size if r["size"] == largest and r["objective"] == "ranked" and not r["pmp"]), None)
    calibrations = [_calibration(workdir / "runs" / r["run_id"], r["size"], r["objective"])
                    for r in sorted(by_size, key=lambda r: r["objective"]) if r["size"] == largest and not r["pmp"]]
    info = sets_folder(config, workdir) / "sets.json"
    results = {
        "design": {"target": config.target, "largest": largest, "n_train": config.n_train,
                   "efficiency_n": list(config.efficiency_n), "sizes": list(config.sizes)},
        "by_size": by_size, "efficiency": efficiency, "zero_shot": zero_shot, "headline": head,
        "fit": _fit(pms, config.seed), "backbones": backbones, "pmp_stages": pmp_stages,
        "calibration": [c for c in calibrations if c is not None], "missing": missing,
        "data": json.loads(info.read_text()) if info.is_file() else {},
    }  # fmt: skip
    results["summary"] = summary(results)
    return results


def _label(r: dict) -> str:
    return r["objective"] + (f" + {r['pmp']} PMP" if r.get("pmp") else "")


def _fmt(r: dict) -> str:
    return f"{r['accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def summary(results: dict) -> str:
    """A few lines of plain text: the headline, the order of objectives, PMP's effect, what is missing."""
    d = results["design"]
    largest, head = d["largest"], results["headline"]
    lines = [f"Preference models on {d['target']} (held-out accuracy, 95% bootstrap CI; chance = 0.5)."]
    if head:
        lines.append(f"Headline: ranked PM on the {largest} backbone ({head['params']:,} params), {d['n_train']} "
                     f"comparisons: {_fmt(head)}, ECE {head['ece']:.3f}, run {head['run_id']}.")  # fmt: skip
    at_largest = sorted((r for r in results["by_size"] if r["size"] == largest), key=lambda r: -r["accuracy"])
    if at_largest:
        order = " > ".join(f"{_label(r)} {_fmt(r)}" for r in at_largest)
        lines.append(f"Order at {largest}, n={d['n_train']}: {order}.")
    z = next((r for r in results["zero_shot"] if r["size"] == largest), None)
    if z:
        lines.append(f"The {largest} LM alone, choosing by log-probability: {_fmt(z)}.")
    for n in d["efficiency_n"]:
        runs = {r["pmp"]: r for r in results["efficiency"] if r["objective"] == "ranked" and r["n_train"] == n}
        if None in runs and len(runs) > 1:
            with_pmp = ", ".join(f"{v} PMP {_fmt(r)}" for v, r in runs.items() if v)
            lines.append(f"Ranked PM, n={n}: no PMP {_fmt(runs[None])}; {with_pmp}.")
    if results["pmp_stages"]:
        lines.append("PMP stages, held-out accuracy on their own (automatic) task: " + ", ".join(
            f"{r['size']} {r['pmp']} {r['pmp_accuracy']:.3f}" for r in results["pmp_stages"]) + ".")  # fmt: skip
    if results["missing"]:
        lines.append(f"Not finished ({len(results['missing'])} runs, left out): {', '.join(results['missing'][:8])}.")
    return "\n".join(lines)
