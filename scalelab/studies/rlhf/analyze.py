"""The RLHF study's results, read from the run store (runs matched to the plan by name and config hash).

- reward = a + b sqrt(KL) over each PPO run's evaluations (Bai et al. 2022, arXiv 2204.05862, fig. 4),
  per policy size, per PM size and per label budget;
- train PM vs test PM: the optimised PM and a PM on the other half of the labels score the same
  samples; both as gains over the starting policy against sqrt(KL), and where they separate;
- gold vs proxy per algorithm with R_gold(d) = d (alpha - beta d), d = sqrt(KL), and the KL at which
  the gold reward peaks (Gao et al. 2022, arXiv 2210.10760, eq. 2-3); the same gold peak for PPO
  against every proxy PM (smaller PMs and fewer labels over-optimise sooner in Gao et al., fig. 3-4);
- online vs offline: k rounds of iterated online training against one offline round at equal labels.
"""

from __future__ import annotations

import math
from pathlib import Path

from scalelab.align.rl.fits import gold_curve_fit, sqrt_kl_fit
from scalelab.errors import UserError
from scalelab.studies.rlhf.config import Config
from scalelab.studies.rlhf.plan import plan

EVAL_METRICS = ("reward", "kl", "gold", "pm_0")


def _matched(store, config: Config, workdir: Path) -> tuple[list[tuple], list[str]]:
    """(planned run, store row) for every planned run that completed with the planned config hash; missing names."""
    planned = plan(config, workdir)
    done = {(r["name"], r["config_hash"]): r for r in store.find_runs(group=config.name, status="completed")}
    found = [(p, done.get((p.name, p.config_hash))) for p in planned]
    return [(p, r) for p, r in found if r is not None], [p.name for p, r in found if r is None]


def eval_series(store, run_id: str) -> list[dict]:
    """The run's evaluations (split "eval"), one dict per step: step, reward, kl, sqrt_kl, gold, pm_0."""
    points: dict[int, dict] = {}
    for metric in EVAL_METRICS:
        for step, _tokens, _flops, value in store.metric_series([run_id], "eval", metric).get(run_id, []):
            points.setdefault(int(step), {"step": int(step)})[metric] = value
    rows = [points[s] for s in sorted(points)]
    for r in rows:
        r["sqrt_kl"] = math.sqrt(max(r["kl"], 0.0)) if r.get("kl") is not None else None
    return [r for r in rows if r.get("kl") is not None and r.get("reward") is not None]


def _fit_row(fit: dict) -> dict:
    return {
        "a": fit["a"],
        "b": fit["b"],
        "r2": fit["r2"],
        "b_ci": fit["ci"]["b"],
        "a_ci": fit["ci"]["a"],
        "n": fit["n"],
    }


def _gain(series: list[dict], key: str) -> list[float | None]:
    """Each point's value minus the starting point's (KL 0): rewards of different PMs on one scale."""
    first = next((r[key] for r in series if r.get(key) is not None), None)
    return [None if first is None or r.get(key) is None else r[key] - first for r in series]


def separation(series: list[dict], rel_tol: float = 0.25, min_gain: float = 0.05) -> dict:
    """Where the train PM's gain pulls away from the test PM's: the smallest sqrt(KL) from which the gap
    (train gain - test gain) stays above ``rel_tol`` x the largest train gain at every later point.

    A train PM that gained less than ``min_gain`` (PM score units: logits of P(A > B)) has nothing to
    separate from; so is a gap below ``min_gain``.
    """
    train, test = _gain(series, "reward"), _gain(series, "pm_0")
    gaps = [None if a is None or b is None else a - b for a, b in zip(train, test)]
    top = max((g for g in train if g is not None), default=0.0)
    tol = max(rel_tol * top, min_gain)
    out = {"tolerance": tol, "rel_tol": rel_tol, "sqrt_kl": None, "kl": None, "step": None}
    if top < min_gain:
        out["note"] = f"the train PM's reward rose by less than {min_gain}: no separation to find"
        return out
    for i, row in enumerate(series):
        later = [g for g in gaps[i:] if g is not None]
        if later and all(g > tol for g in later):
            out.update(sqrt_kl=row["sqrt_kl"], kl=row["kl"], step=row["step"])
            return out
    out["note"] = "train and test PM gains stay within the tolerance at every point: no separation measured"
    return out


def _train_vs_test(series: list[dict], run: str) -> dict:
    train, test, gold = _gain(series, "reward"), _gain(series, "pm_0"), _gain(series, "gold")
    rows = [{"step": r["step"], "kl": r["kl"], "sqrt_kl": r["sqrt_kl"], "train_pm": r["reward"],
             "test_pm": r.get("pm_0"), "train_gain": a, "test_gain": b, "gold_gain": g,
             "gap": None if a is None or b is None else a - b}
            for r, a, b, g in zip(series, train, test, gold)]  # fmt: skip
    return {"run": run, "series": rows, "separation": separation(series)}


def _gold_vs_proxy(series: list[dict], run: str, algo: str, seed: int) -> dict:
    gold = _gain(series, "gold")
    pts = [(r["kl"], g) for r, g in zip(series, gold) if g is not None]
    fit = gold_curve_fit([k for k, _ in pts], [g for _, g in pts], n_boot=500, seed=seed)
    proxy = sqrt_kl_fit([r["kl"] for r in series], [r["reward"] for r in series], n_boot=500, seed=seed)
    rows = [{"step": r["step"], "kl": r["kl"], "sqrt_kl": r["sqrt_kl"], "proxy": r["reward"], "gold": r.get("gold"),
             "gold_gain": g, "test_pm": r.get("pm_0")} for r, g in zip(series, gold)]  # fmt: skip
    best = max((r for r in rows if r["gold"] is not None), key=lambda r: r["gold"], default=None)
    return {
        "algo": algo,
        "run": run,
        "series": rows,
        "gold_fit": fit,
        "proxy_fit": _fit_row(proxy),
        "peak_kl": fit["peak_kl"],
        "measured_peak": {"kl": best["kl"], "gold": best["gold"]} if best else None,
        "gold_start": series[0].get("gold") if series else None,
        "gold_end": series[-1].get("gold") if series else None,
    }


def _gold_peak_row(g: dict, p, pms: dict) -> dict:
    """One PPO run's gold peak against its proxy PM: the fitted and the measured peak KL, with beta's interval."""
    fit = g["gold_fit"]
    return {"run": g["run"], "policy_size": p.axes["policy_size"], "pm": p.axes["pm"],
            "pm_size": p.axes.get("pm_size"), "labels": pms.get(p.axes["pm"], {}).get("labels"),
            "pm_accuracy": pms.get(p.axes["pm"], {}).get("accuracy"), "beta": fit["beta"],
            "beta_ci": fit["ci"]["beta"], "peak_kl": g["peak_kl"], "peak_kl_ci": fit["ci"]["peak_kl"],
            "peak_in_range": fit["peak_in_range"],
            "measured_peak_kl": (g["measured_peak"] or {}).get("kl")}  # fmt: skip


def _online_vs_offline(rl: dict, pms: dict, config: Config) -> dict | None:
    """Gold reward after k online rounds against one offline round at equal labels and equal PPO steps."""
    rounds = sorted((v for v in rl.values() if "round" in v[0].axes), key=lambda v: v[0].axes["round"])
    offline = rl.get(f"ppo-p{config.policy_sizes[-1]}-pm-{config.pm_sizes[-1]}-train")
    if not rounds or offline is None:
        return None
    off_series = offline[2]
    out_rounds = []
    for p, _row, series in rounds:
        r = p.axes["round"]
        pm = pms.get(f"pm-online-r{r}")
        last = series[-1] if series else {}
        out_rounds.append(
            {
                "round": r,
                "run": p.name,
                "labels_cumulative": pm["labels"] if pm else None,
                "comparisons": pm["n_comparisons"] if pm else None,
                "gold": last.get("gold"),
                "proxy": last.get("reward"),
                "kl_in_round": last.get("kl"),
                "pm_accuracy": pm["accuracy"] if pm else None,
            }
        )
    final, off_last = out_rounds[-1], off_series[-1] if off_series else {}
    gain = None if final["gold"] is None or off_last.get("gold") is None else final["gold"] - off_last["gold"]
    return {
        "rounds": out_rounds,
        "gold_start": off_series[0].get("gold") if off_series else None,
        "offline": {
            "run": offline[0].name,
            "labels": pms.get(offline[0].axes["pm"], {}).get("labels"),
            "comparisons": pms.get(offline[0].axes["pm"], {}).get("n_comparisons"),
            "gold": off_last.get("gold"),
            "proxy": off_last.get("reward"),
            "kl": off_last.get("kl"),
        },
        "online_gold": final["gold"],
        "gain_online_minus_offline": gain,
        "note": "every round's KL is measured from the original pre-trained policy (its `reference`), as the "
        "offline run's is; the comparison is the gold reward at equal labels (labeller queries): `comparisons` "
        "counts the pairs kept, without ties, identical and blank responses",
    }


def analyze(store, config: Config) -> dict:
    """Plain results of the study from the completed runs of its plan (matched by name and config hash)."""
    workdir = Path(store.path).parent
    found, missing = _matched(store, config, workdir)
    lms = [{"size": p.axes["size"], "params": p.params, "val_loss": row.get("final_val_loss"), "run_id": row["id"]}
           for p, row in found if p.axes["role"] == "lm"]  # fmt: skip
    pms = {}
    for p, row in found:
        if p.axes["role"] == "pm":
            s = row.get("summary") or {}
            pms[p.name] = {
                "name": p.name,
                "size": p.axes["size"],
                "params": p.params,
                "labels": p.axes["labels"],
                "half": p.axes.get("half"),
                "n_comparisons": s.get("n_comparisons"),
                "accuracy": s.get("accuracy"),
                "accuracy_ci": s.get("accuracy_ci"),
                "run_id": row["id"],
            }
    rl = {p.name: (p, row, eval_series(store, row["id"])) for p, row in found if p.axes["role"] == "rl"}
    policy, pm_size = config.policy_sizes[-1], config.pm_sizes[-1]
    main_pm = f"pm-{pm_size}-train"
    fits: dict[str, list] = {"by_policy_size": [], "by_pm_size": [], "by_labels": []}
    for name, (p, row, series) in rl.items():
        if p.axes["algo"] != "ppo" or "round" in p.axes or len(series) < 3:
            continue
        fit = {
            "run": name,
            "run_id": row["id"],
            "policy_size": p.axes["policy_size"],
            "pm": p.axes["pm"],
            "params": p.params,
            "labels": pms.get(p.axes["pm"], {}).get("labels"),
            **_fit_row(sqrt_kl_fit([r["kl"] for r in series], [r["reward"] for r in series], seed=config.seed)),
        }
        if p.axes["pm"] == main_pm:
            fits["by_policy_size"].append(fit)
        if p.axes["policy_size"] == policy and "labels" not in p.axes:
            fits["by_pm_size"].append({**fit, "pm_size": p.axes["pm_size"]})
        if p.axes["policy_size"] == policy and p.axes["pm_size"] == pm_size:
            fits["by_labels"].append(fit)
    for key in fits:
        fits[key].sort(key=lambda f: (f["params"], f.get("labels") or 0))
    main = rl.get(f"ppo-p{policy}-{main_pm}")
    headline = next((f for f in fits["by_policy_size"] if f["run"] == f"ppo-p{policy}-{main_pm}"), None)
    gold_vs_proxy = {}
    for algo in config.algos:
        got = rl.get(f"{algo}-p{policy}-{main_pm}")
        if got and got[2]:
            gold_vs_proxy[algo] = _gold_vs_proxy(got[2], got[0].name, algo, config.seed)
    gold_peaks = []
    for name, (p, _row, series) in rl.items():
        if p.axes["algo"] == "ppo" and "round" not in p.axes and len(series) >= 3:
            g = gold_vs_proxy["ppo"] if name == f"ppo-p{policy}-{main_pm}" and "ppo" in gold_vs_proxy else None
            gold_peaks.append(_gold_peak_row(g or _gold_vs_proxy(series, name, "ppo", config.seed), p, pms))
    gold_peaks.sort(key=lambda r: (r["policy_size"] != policy, -(pms.get(r["pm"], {}).get("params") or 0),
                                   -(r["labels"] or 0)))  # fmt: skip
    results = {
        "design": {
            "policy_sizes": list(config.policy_sizes),
            "pm_sizes": list(config.pm_sizes),
            "gold": config.gold,
            "label_temperature": config.label_temperature,
            "n_labels": config.n_labels,
            "steps": config.steps,
            "online_rounds": config.online_rounds,
            "algos": list(config.algos),
        },
        "sqrt_kl_fit": headline or {"note": "the main PPO run is missing or has fewer than 3 evaluations"},
        "sqrt_kl_fits": fits,
        "train_pm_vs_test_pm": _train_vs_test(main[2], main[0].name) if main else None,
        "gold_vs_proxy": gold_vs_proxy,
        "gold_peak_by_run": gold_peaks,
        "online_vs_offline": _online_vs_offline(rl, pms, config),
        "pms": sorted(pms.values(), key=lambda r: (r["params"], r["name"])),
        "lms": lms,
        "runs": [
            {
                "name": n,
                "algo": p.axes["algo"],
                "policy_size": p.axes["policy_size"],
                "pm": p.axes["pm"],
                "reward": s[-1]["reward"] if s else None,
                "kl": s[-1]["kl"] if s else None,
                "gold": s[-1].get("gold") if s else None,
                "test_pm": s[-1].get("pm_0") if s else None,
                "run_id": row["id"],
            }
            for n, (p, row, s) in rl.items()
        ],
        "missing": missing,
    }
    try:
        results["samples"] = before_after_samples(workdir, config, main, found)
    except (UserError, OSError, StopIteration) as e:  # a pruned checkpoint must not lose the analysis
        results["samples"] = {"rows": [], "note": f"samples not drawn: {type(e).__name__}: {e}"}
    results["summary"] = summary(results)
    return results


def before_after_samples(workdir: Path, config: Config, main, found) -> dict:
    """Samples of the starting policy and of the main PPO run's final policy on the same held-out prompts
    (same seed), with their gold scores: the report's side-by-side table."""
    if main is None or config.n_samples_shown == 0:
        return {"rows": [], "note": "no PPO run to show"}
    import torch

    from scalelab.align.gold import gold_reward
    from scalelab.align.rl import sample_responses
    from scalelab.align.rl.prompts import load_prompts, split_prompts
    from scalelab.train.checkpoint import load_for_inference

    start = next(row for p, row in found if p.name == f"lm-{config.policy_sizes[-1]}")
    _, held = split_prompts(load_prompts("builtin", n_builtin=config.n_prompts), config.eval_prompts)
    prompts = held[: config.n_samples_shown]
    texts = {}
    for label, run_id in (("before", start["id"]), ("after", main[1]["id"])):
        model, tokenizer, _ = load_for_inference(workdir / "runs" / run_id, workdir, "cpu")
        ids = [[int(t) for t in tokenizer.encode(p)] for p in prompts]
        g = torch.Generator().manual_seed(config.seed + 7)
        ro = sample_responses(
            model,
            ids,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            eot_id=tokenizer.eot_id,
            generator=g,
        )
        texts[label] = ro.decode(tokenizer)
    gold = gold_reward(config.gold)
    gb, ga = gold(prompts, texts["before"]), gold(prompts, texts["after"])
    rows = [{"prompt": p, "before": b, "after": a, "gold_before": x, "gold_after": y}
            for p, b, a, x, y in zip(prompts, texts["before"], texts["after"], gb, ga)]  # fmt: skip
    return {"rows": rows, "run": main[0].name, "policy_run": start["id"]}


def _f(x, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def summary(results: dict) -> str:
    """A few lines of plain text: the sqrt(KL) fit, train vs test PM, over-optimisation, online vs offline."""
    d = results["design"]
    lines = [f"RLHF against proxy PMs trained on gold labels ({d['gold']}, labeller T={d['label_temperature']}), "
             f"{d['n_labels']} labels per PM, {d['steps']} RL steps."]  # fmt: skip
    h = results["sqrt_kl_fit"]
    if "b" in h:
        lines.append(
            f"Proxy reward = a + b sqrt(KL) ({h['run']}): b = {_f(h['b'])} [{_f(h['b_ci'][0])}, "
            f"{_f(h['b_ci'][1])}], a = {_f(h['a'])}, R^2 = {_f(h['r2'], '.2f')} over {h['n']} evaluations."
        )
    tt = results["train_pm_vs_test_pm"]
    if tt:
        s = tt["separation"]
        last = tt["series"][-1] if tt["series"] else {}
        lines.append(
            f"Train PM gain {_f(last.get('train_gain'))} vs test PM gain {_f(last.get('test_gain'))} at "
            f"sqrt(KL) {_f(last.get('sqrt_kl'), '.2f')}; "
            + (
                f"they separate from sqrt(KL) {_f(s['sqrt_kl'], '.2f')}."
                if s["sqrt_kl"] is not None
                else s.get("note", "") + "."
            )
        )
    for algo, g in results["gold_vs_proxy"].items():
        fit = g["gold_fit"]
        lo, hi = fit["ci"]["beta"]
        peak = fit.get("note", "")
        if g["peak_kl"] is not None:
            where = "inside" if fit["peak_in_range"] else "beyond"
            peak = f"gold peaks at KL {_f(g['peak_kl'], '.2f')} ({where} the measured range)"
        best = g["measured_peak"] or {}
        lines.append(
            f"{algo}: gold {_f(g['gold_start'])} -> max {_f(best.get('gold'))} at KL {_f(best.get('kl'), '.2f')} -> "
            f"{_f(g['gold_end'])}; alpha {_f(fit['alpha'])}, beta {_f(fit['beta'])} [{_f(lo)}, {_f(hi)}]; {peak}."
        )
    peaks = [r for r in results.get("gold_peak_by_run", []) if r["policy_size"] == d["policy_sizes"][-1]]
    if len(peaks) > 1:
        lines.append("PPO gold peak KL by proxy PM: " + ", ".join(
            f"{r['pm']} ({r['labels']} labels) {_f(r['peak_kl'], '.2f')}" for r in peaks) + ".")  # fmt: skip
    ov = results["online_vs_offline"]
    if ov:
        lines.append(
            f"Online ({len(ov['rounds'])} rounds) gold {_f(ov['online_gold'])} vs offline "
            f"{_f(ov['offline']['gold'])} at equal labels (gain {_f(ov['gain_online_minus_offline'])}; "
            f"{ov['rounds'][-1]['comparisons']} vs {ov['offline']['comparisons']} comparisons kept)."
        )
    if results["missing"]:
        lines.append(f"Not finished ({len(results['missing'])} runs, left out): {', '.join(results['missing'][:8])}.")
    return "\n".join(lines)
