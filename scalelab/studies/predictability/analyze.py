"""The predictability study's results, read from the run store: loss and task metrics per size and over
training, the abrupt-jump verdict of every task, and forecasts of the largest run from the smaller ones."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scalelab.evals.tasks import N_EVAL, metric_name
from scalelab.laws.abrupt import abrupt_jumps
from scalelab.studies.predictability.config import Config
from scalelab.studies.predictability.plan import plan


def wilson(k: float, n: int, z: float = 1.96) -> list[float]:
    """Wilson score interval of a binomial share k / n (95% by default)."""
    if n <= 0:
        return [math.nan, math.nan]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _series(store, run_ids: list[str], split: str, name: str) -> dict[str, list[list[float]]]:
    """{run id: [[flops, value], ...]} of one metric over training."""
    return {rid: [[float(f or 0.0), float(v)] for _s, _t, f, v in rows]
            for rid, rows in store.metric_series(run_ids, split, name).items()}  # fmt: skip


def line_forecast(x: np.ndarray, y: np.ndarray, x0: float, level: float = 0.95) -> dict:
    """Least-squares line y = a + b x read at x0, with its OLS prediction interval (Student t, n - 2 dof):
    the spread of a new observation, parameter uncertainty included. With 2 points the interval is None."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    b, a = np.polyfit(x, y, 1)
    pred = float(a + b * x0)
    if x.size <= 2:
        return {"predicted": pred, "interval": None}
    s = math.sqrt(float(np.sum((y - a - b * x) ** 2)) / (x.size - 2))
    se = s * math.sqrt(1 + 1 / x.size + (x0 - x.mean()) ** 2 / float(np.sum((x - x.mean()) ** 2)))
    t = float(stats.t.ppf(0.5 + level / 2, x.size - 2))
    return {"predicted": pred, "interval": [pred - t * se, pred + t * se]}


def forecast_loss(compute: np.ndarray, loss: np.ndarray, target: float) -> dict:
    """L(C) = (C_c / C)^alpha (Kaplan et al. 2020's compute law, a line in log-log; an irreducible term is not
    identifiable from a handful of small runs) fitted on the smaller runs, at `target`, with a 95% interval."""
    f = line_forecast(np.log(compute), np.log(loss), math.log(target))
    return {"law": "(C_c / C)^alpha", "predicted": math.exp(f["predicted"]),
            "interval": [math.exp(v) for v in f["interval"]] if f["interval"] else None}  # fmt: skip


def forecast_metric(compute: np.ndarray, values: np.ndarray, target: float, lo: float, hi: float) -> dict:
    """A task metric as a line in log10 C fitted on the smaller runs, at `target` (point and interval clipped
    to the metric's range [lo, hi])."""
    f = line_forecast(np.log10(compute), values, math.log10(target))
    clip = lambda v: float(min(max(v, lo), hi))  # noqa: E731
    return {"predicted": clip(f["predicted"]), "interval": [clip(v) for v in f["interval"]] if f["interval"] else None}


def _forecasts(rows: list[dict], tasks: list[str], holdout: int) -> tuple[dict, dict]:
    """The loss forecast and every task's forecast of the held-out (largest) runs."""
    train, test = rows[:-holdout], rows[-holdout:]
    C = np.array([r["flops"] for r in train])
    loss_out = []
    for t in test:
        f = forecast_loss(C, np.array([r["val_loss"] for r in train]), t["flops"])
        loss_out.append({"run": t["name"], "actual": t["val_loss"], **f,
                         "inside": _inside(t["val_loss"], f["interval"]),
                         "rel_error": abs(f["predicted"] - t["val_loss"]) / t["val_loss"]})  # fmt: skip
    tasks_out = {}
    for task in tasks:
        entries = []
        for t in test:
            ex = forecast_metric(C, np.array([r["tasks"][task]["exact"] for r in train]), t["flops"], 0.0, 1.0)
            lp = forecast_metric(C, np.array([r["tasks"][task]["logprob"] for r in train]), t["flops"], -math.inf, 0.0)
            a_ex, a_lp = t["tasks"][task]["exact"], t["tasks"][task]["logprob"]
            entries.append({"run": t["name"], "exact_predicted": ex["predicted"], "exact_interval": ex["interval"],
                            "exact_actual": a_ex, "exact_abs_error": abs(ex["predicted"] - a_ex),
                            "exact_inside": _inside(a_ex, ex["interval"]),
                            "logprob_predicted": lp["predicted"], "logprob_interval": lp["interval"],
                            "logprob_actual": a_lp, "logprob_abs_error": abs(lp["predicted"] - a_lp),
                            "logprob_rel_error": abs(lp["predicted"] - a_lp) / abs(a_lp) if a_lp else None,
                            "logprob_inside": _inside(a_lp, lp["interval"])})  # fmt: skip
        tasks_out[task] = entries
    return {"runs": loss_out, "rel_error": float(np.mean([e["rel_error"] for e in loss_out]))}, tasks_out


def analyze(store, config: Config) -> dict:
    """Plain results from the completed runs of the plan (matched by name and config hash)."""
    planned = plan(config, Path(store.path).parent)
    tasks = list(config.base.get("data", {}).get("eval_tasks") or [])
    done = {(r["name"], r["config_hash"]): r for r in store.find_runs(group=config.name, status="completed")}
    found = [(p, done.get((p.name, p.config_hash))) for p in planned]
    missing = [p.name for p, run in found if run is None]
    found = sorted(((p, run) for p, run in found if run is not None), key=lambda pr: pr[0].flops)
    ids = [run["id"] for _p, run in found]
    loss_curves = _series(store, ids, "val", "loss")
    rows, curves = [], {t: {} for t in tasks}
    for p, run in found:
        row = {"name": p.name, "run_id": run["id"], "params": p.params, "params_nonembed": p.params_nonembed,
               "tokens": p.tokens, "flops": p.flops, "val_loss": run["final_val_loss"], "tasks": {}}  # fmt: skip
        for task in tasks:
            per = {}
            for m in ("exact", "logprob"):
                series = _series(store, [run["id"]], "eval", metric_name(task, m)).get(run["id"], [])
                curves[task].setdefault(run["id"], {})[m] = series
                per[m] = series[-1][1] if series else math.nan
            per["exact_ci"] = wilson(per["exact"] * N_EVAL, N_EVAL) if math.isfinite(per["exact"]) else None
            row["tasks"][task] = per
        rows.append(row)
    res = {"study": "predictability", "group": config.name, "tasks": tasks, "n_eval": N_EVAL, "missing": missing,
           "sizes": rows, "loss_curves": loss_curves, "task_curves": curves,
           "rule": {"z": config.analysis.z, "min_jump": config.analysis.min_jump},
           "loss_forecast_error": None, "task_forecast_errors": {}, "abrupt": {}, "abrupt_detail": {}}  # fmt: skip
    complete = [r for r in rows if all(math.isfinite(r["tasks"][t]["exact"]) for t in tasks)]
    if len(complete) >= 3:
        for task in tasks:
            v = abrupt_jumps([r["flops"] for r in complete], [r["tasks"][task]["exact"] for r in complete],
                             [r["tasks"][task]["logprob"] for r in complete], N_EVAL, z=config.analysis.z,
                             min_jump=config.analysis.min_jump)  # fmt: skip
            res["abrupt"][task], res["abrupt_detail"][task] = v.abrupt, v.to_dict()
    if len(complete) >= 2 + config.analysis.holdout:
        loss, per_task = _forecasts(complete, tasks, config.analysis.holdout)
        res["forecast"] = {"loss": loss, "tasks": per_task, "holdout": config.analysis.holdout}
        res["loss_forecast_error"] = loss["rel_error"]
        res["task_forecast_errors"] = {t: {"exact_abs_error": float(np.mean([e["exact_abs_error"] for e in es])),
                                           "logprob_abs_error": float(np.mean([e["logprob_abs_error"] for e in es])),
                                           "logprob_rel_error": _mean([e["logprob_rel_error"] for e in es]),
                                           "exact_inside": [e["exact_inside"] for e in es]}
                                       for t, es in per_task.items()}  # fmt: skip
    return res


def _interval_texts(results: dict) -> list[str]:
    """'loss 1.58 [1.48, 1.68], actual 1.50 inside', then each task's exact match, for the first held-out run."""
    fc = results["forecast"]
    out = []
    for label, pred, iv, actual in [("loss", fc["loss"]["runs"][0]["predicted"], fc["loss"]["runs"][0]["interval"],
                                     fc["loss"]["runs"][0]["actual"])] + [
        (f"{t} exact", es[0]["exact_predicted"], es[0]["exact_interval"], es[0]["exact_actual"])
        for t, es in fc["tasks"].items()
    ]:  # fmt: skip
        where = "" if iv is None else (" inside" if iv[0] <= actual <= iv[1] else " OUTSIDE")
        band = "" if iv is None else f" [{iv[0]:.2f}, {iv[1]:.2f}]"
        out.append(f"{label} {pred:.2f}{band}, actual {actual:.2f}{where}")
    return out


def _inside(actual: float, interval: list | None) -> bool | None:
    """Whether the actual value lies in the forecast's prediction interval (None without an interval)."""
    return None if interval is None else bool(interval[0] <= actual <= interval[1])


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summary(results: dict) -> str:
    """A few lines: the loss forecast error beside the task forecast errors, and which tasks jumped."""
    lines = [f"{len(results['sizes'])} sizes, {len(results['tasks'])} tasks ({results['n_eval']} examples each)."]
    if results.get("missing"):
        lines.append(f"Missing runs (not completed): {', '.join(results['missing'])}.")
    if results["loss_forecast_error"] is not None:
        lines.append(f"Forecast of the largest run from the smaller ones: loss off by "
                     f"{100 * results['loss_forecast_error']:.1f}% (relative); exact match off by "
                     + ", ".join(f"{t} {v['exact_abs_error']:.2f}" for t, v in results["task_forecast_errors"].items())
                     + " (absolute share).")  # fmt: skip
        lines.append("95% prediction intervals of the first held-out run: " + "; ".join(_interval_texts(results)) + ".")
    if results["abrupt"]:
        jumped = [t for t, a in results["abrupt"].items() if a]
        lines.append("Abrupt (exact match jumps beyond its log-prob trend, z > "
                     f"{results['rule']['z']:g}, jump >= {results['rule']['min_jump']:g}): "
                     + (", ".join(jumped) if jumped else "none") + ".")  # fmt: skip
    return "\n".join(lines)
