"""The efficiency study's results from the run store: compute-to-target per recipe, size and seed,
multipliers over the baseline with bootstrap intervals over seeds, and the doubling-time fit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.efficiency import (
    best_loss_gap,
    compute_to_target,
    efficiency_multipliers,
    fit_doubling_time,
    geometric_mean,
    paper_table_fit,
)
from scalelab.studies.efficiency.config import Config
from scalelab.studies.efficiency.plan import plan


def _curves(store, config: Config) -> tuple[list[dict], list[str]]:
    """Each planned run's validation curve (FLOPs, loss), matched to the plan by name and config hash."""
    planned = plan(config, Path(store.path).parent)
    done = {(r["name"], r["config_hash"]): r for r in store.find_runs(group=config.name, status="completed")}
    found = [(p, done.get((p.name, p.config_hash))) for p in planned]
    missing = [p.name for p, run in found if run is None]
    found = [(p, run) for p, run in found if run is not None]
    series = store.metric_series([run["id"] for _, run in found], "val", "loss")
    curves = []
    for p, run in found:
        pts = series.get(run["id"], [])
        curves.append({**p.axes, "params": p.params, "params_nonembed": p.params_nonembed, "run_id": run["id"],
                       "flops": [float(q[2]) for q in pts], "loss": [float(q[3]) for q in pts]})  # fmt: skip
    return curves, missing


def choose_target(curves: list[dict], baseline: str) -> tuple[float, str]:
    """The baseline's final loss: its worst seed's last evaluation at the size with the lowest mean final loss."""
    finals: dict[str, list[float]] = {}
    for c in curves:
        if c["recipe"] == baseline and c["loss"]:
            finals.setdefault(c["size"], []).append(c["loss"][-1])
    if not finals:
        raise UserError(f"the baseline recipe {baseline!r} has no finished runs, so no target can be chosen from "
                        "it; rerun the study to finish them, or give one with --set target_loss=X")
    size = min(finals, key=lambda s: float(np.mean(finals[s])))
    target = max(finals[size])
    return target, (f"the baseline's final loss: the worst of its {len(finals[size])} seeds' last evaluations "
                    f"at its best size {size}")


def _unreached(curves: list[dict], target: float, recipes: list[str]) -> dict[str, dict]:
    """Recipes none of whose sizes got every seed to the target, with the best loss they did reach."""
    out = {}
    for r in recipes:
        mine = [c for c in curves if c["recipe"] == r and c["loss"]]
        best = min(mine, key=lambda c: min(c["loss"]), default=None)
        if best is not None:
            out[r] = {"best_loss": min(best["loss"]), "gap": best_loss_gap(best["loss"], target),
                      "size": best["size"], "run_id": best["run_id"]}  # fmt: skip
    return out


def unreachable_message(target: float, gaps: dict[str, dict]) -> str:
    parts = [f"{r} (best {g['best_loss']:.4f} at size {g['size']}, {g['gap']:+.4f} above it)" for r, g in gaps.items()]
    return f"target loss {target:.4f} was never reached by: " + "; ".join(parts)


def analyze(store, config: Config) -> dict:
    """Plain results (see the package docstring); the paper's table alone when `paper_table`."""
    if config.paper_table:
        paper = paper_table_fit(config.level)
        res = {"mode": "paper_table", **paper, "multipliers": {}, "compute_to_target": []}
        res["summary"] = summary(res)
        return res
    curves, missing = _curves(store, config)
    recipes = [r.name for r in config.recipes]
    if config.target_loss is not None:
        target, rule = config.target_loss, "given (target_loss)"
    else:
        target, rule = choose_target(curves, config.baseline)
    cells: dict[str, dict[str, list[float]]] = {r: {} for r in recipes}
    table = []
    for c in curves:
        c["compute_to_target"] = compute_to_target(c["flops"], c["loss"], target, interpolate=config.interpolate)
        cells[c["recipe"]].setdefault(c["size"], []).append(c["compute_to_target"])
    for r in recipes:
        for size, values in cells[r].items():
            params = next(c["params"] for c in curves if c["recipe"] == r and c["size"] == size)
            v = np.asarray(values)
            table.append({"recipe": r, "size": size, "params": params, "seeds": len(v),
                          "reached": int(np.isfinite(v).sum()), "compute": float(geometric_mean(v)),
                          "per_seed": v.tolist()})  # fmt: skip
    gaps = {r: g for r, g in _unreached(curves, target, recipes).items()
            if not any(np.all(np.isfinite(v)) for v in cells[r].values())}  # fmt: skip
    if cells and all(r in gaps or not cells[r] for r in recipes):
        raise UserError(unreachable_message(target, gaps) + "; no recipe reached it, so there is nothing to "
                        "compare: raise the target above those best losses (--set target_loss=X); the finished "
                        "runs are kept and reused")  # fmt: skip
    eff = efficiency_multipliers({r: v for r, v in cells.items() if v}, config.baseline, n_boot=config.bootstrap,
                                 seed=config.seed, level=config.level)  # fmt: skip
    dated = [{"recipe": r.name, "date": r.date, "flops": eff.compute[r.name][0]} for r in config.recipes
             if r.date and r.name in eff.compute and math.isfinite(eff.compute[r.name][0])]  # fmt: skip
    res: dict = {"mode": "runs", "target_loss": target, "target_rule": rule, "interpolate": config.interpolate,
                 "baseline": config.baseline, "multipliers": eff.multipliers, "compute": eff.compute,
                 "best_size": eff.best_size, "compute_to_target": table, "unreached": gaps,
                 "dated_table": dated, "curves": curves, "missing": missing, "notes": []}  # fmt: skip
    if gaps:
        res["notes"].append(unreachable_message(target, gaps))
    if len(dated) >= 3 and len({d["date"] for d in dated}) >= 2:
        fit = fit_doubling_time([d["date"] for d in dated], [d["flops"] for d in dated], level=config.level)
        res["doubling_time"] = fit.to_dict()
        res["doubling_time_months"] = [fit.months, *fit.months_ci]
    elif config.recipes and any(r.date for r in config.recipes):
        res["notes"].append(f"{len(dated)} dated recipes reached the target: the doubling-time fit needs 3")
    res["summary"] = summary(res)
    return res


def _fmt3(v: list[float], unit: str = "") -> str:
    return f"{v[0]:.3g}{unit} [{v[1]:.3g}, {v[2]:.3g}]"


def summary(results: dict) -> str:
    """A few lines: the target, each recipe's compute-to-target and multiplier, the doubling time."""
    if results.get("mode") == "paper_table":
        f = results["fit"]
        return (f"Hernandez and Brown 2020's ImageNet table ({f['n_points']} methods, {f['years']:.1f} years): "
                f"doubling time {_fmt3(results['doubling_time_months'], ' months')} (95% t interval of the slope); "
                f"{results['factor']:.1f}x less compute from AlexNet to EfficientNet-b0 (paper: 44x, 16 months).")
    lines = [f"Target validation loss {results['target_loss']:.4f} ({results['target_rule']}); compute to target = "
             f"training FLOPs at the first evaluation at or below it"
             + (" (interpolated between evaluations)." if results["interpolate"] else ".")]  # fmt: skip
    base = results["baseline"]
    base_reached = results["best_size"].get(base) is not None
    for r, m in results["multipliers"].items():
        c = results["compute"][r]
        size = results["best_size"].get(r)
        if size is None:
            lines.append(f"{r}: never reached the target.")
            continue
        ratio = f"{_fmt3(m)}x the efficiency of {base}" if base_reached else f"no multiplier ({base} never reached it)"
        lines.append(f"{r}: {_fmt3(c)} FLOPs at size {size}; {ratio}.")
    if "doubling_time_months" in results:
        lines.append(f"Doubling time over the dated recipes: {_fmt3(results['doubling_time_months'], ' months')}.")
    lines += results.get("notes", [])
    if results.get("missing"):
        lines.append(f"Not finished ({len(results['missing'])} runs, left out): {', '.join(results['missing'][:6])}.")
    return "\n".join(lines)
