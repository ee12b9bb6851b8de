"""From the run store to the numbers of the repeated-data study (Hernandez et al. 2022): `analyze(store, config)`.

A *cell* is one treatment (N, D, f, R) with its runs (one per seed); its baseline is the
unrepeated run of the same size and budget. Degradation = final test loss minus the baseline's,
paired by seed (same seed, same validation windows) where possible. Every number keeps the run
ids it came from. The rules themselves (noise, rise detection, peak) live in `rules`, the
power-law inversion in `laws.inversion`, the words in `words` (`summary`, re-exported here).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies.repetition import rules as ra
from scalelab.studies.repetition.config import Config
from scalelab.studies.repetition.words import summary

__all__ = ["analyze", "summary"]

PROBE_METRICS = ("induction_max", "detector_max", "copy_loss_first", "copy_loss_later", "icl_score")


def _record(row: dict, key: str) -> dict:
    cfg, summ = row["config"], row["summary"] or {}
    d, m, t = cfg.get("data", {}), cfg.get("model", {}), cfg.get("train", {})
    f = float(d.get("repeat_fraction") or 0.0)
    acct = summ.get("repetition") or {}
    tokens = int(row["tokens"] or 0)
    unique = acct.get("unique_tokens", 0) + acct.get("subset_tokens", 0) if acct else tokens
    return {"id": row["id"], "name": row["name"], "status": row["status"],
            "size": m.get("size") or f"{m.get('n_layer')}x{m.get('n_embd')}", "N": row.get(key) or row.get("params"),
            "params": row.get("params"), "params_nonembed": row.get("params_nonembed"), "tokens": tokens,
            "f": f, "R": int(d.get("repeat_epochs", 1)) if f > 0 else 1, "seed": t.get("seed"),
            "subset_tokens": acct.get("subset_tokens"), "unique_tokens": unique,
            "f_realised": acct.get("repeated_fraction", f),
            "final_val_loss": row.get("final_val_loss"),
            "same_final_windows": (t.get("final_eval_batches") or t.get("eval_batches")) == t.get("eval_batches"),
            }  # fmt: skip


def _series(m, run_id: str, split: str, name: str, drop_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    g = m[(m.run_id == run_id) & (m.split == split) & (m.name == name)].sort_values("step")
    steps, vals = g.step.to_numpy(), g.value.to_numpy(dtype=float)
    return (steps[:-1], vals[:-1]) if drop_last and len(vals) > 1 else (steps, vals)


def _main_budget(recs: list[dict]) -> int | None:
    """The token budget most treated runs share: the baseline law is fitted at it."""
    treated = [r["tokens"] for r in recs if r["f"] > 0]
    return max(set(treated), key=treated.count) if treated else None


def analyze(store: RunStore, config: Config) -> dict:
    """Every number of the report, as plain data with intervals, from the runs of group `config.name`.

    Keys: noise (sigma and the rule), cells (one per treatment: degradation with its CI, realised
    f, effective size k with its CI, the test-loss curve's shape), peaks (per size and f: the R of
    peak degradation and whether the peak is resolved), law (the baseline L(N)), data_constrained,
    probes (per cell and seed: prefix matching, copying; differences from the baseline with
    intervals over seeds), runs (the table), notes.
    """
    study, sweep = config.analysis, config.name
    fit_params, n_boot = study.fit_params, study.bootstrap
    rows = store.find_runs(group=sweep)
    if not rows:
        raise UserError(f"no runs of sweep {sweep!r} in {store.path}; run the study first")
    rows, plan_note = _planned_rows(rows, store, config)
    key = "params_nonembed" if fit_params == "nonembed" else "params"
    recs = [_record(r, key) for r in rows]
    done = [r for r in recs if r["status"] == "completed" and r["final_val_loss"] is not None]
    res: dict = {"sweep": sweep, "fit_params": fit_params, "n_runs": len(recs), "n_completed": len(done),
                 "runs": [_table_row(r) for r in recs], "notes": [], "cells": [], "peaks": [], "law": None}  # fmt: skip
    if plan_note:
        res["notes"].append(plan_note)
    failed = [r["name"] for r in recs if r["status"] != "completed"]
    if failed:
        res["notes"].append(f"{len(failed)} run(s) not completed and left out: {', '.join(failed)}")
    m = store.metrics_df([r["id"] for r in done]) if done else None
    if not done:
        return res
    for r in done:
        r["steps"], r["val"] = _series(m, r["id"], "val", "loss", drop_last=not r["same_final_windows"])
        r["repeated_final"] = _last(_series(m, r["id"], "repeated", "loss")[1])
    res["noise"] = _noise(done, study.noise_z, study.noise_floor)
    res["main_tokens"] = _main_budget(done)
    cells, base = _cells(done)
    res["law"], law = _law(done, res, study, n_boot)
    for cell in cells:
        res["cells"].append(_cell_result(cell, base, res["noise"], law, study.seed))
    res["peaks"] = _peaks(res["cells"], res["noise"]["sigma"], study)
    res["data_constrained"] = _data_constrained(done, res, min(n_boot, 100), study.seed)
    res["probes"] = _probes(m, done, cells, base, study.seed)
    return res


def _planned_rows(rows: list[dict], store: RunStore, config: Config) -> tuple[list[dict], str | None]:
    """The group's runs that the current plan asks for, matched by name and config hash.

    A run of the same group trained under another config (an older preset, other `--set` values,
    the pre-v2 mixer) is left out and counted in a note. When no run matches the plan at all (a
    store written by hand or by other code), every run of the group is analysed, and the note says so.
    """
    from pathlib import Path

    from scalelab.studies.repetition.plan import plan

    wanted = {(p.name, p.config_hash) for p in plan(config, Path(store.path).parent)}
    kept = [r for r in rows if (r["name"], r["config_hash"]) in wanted]
    if not kept:
        return rows, (f"no run of group {config.name!r} matches the current plan's configs; all {len(rows)} "
                      "runs of the group are analysed as they are")  # fmt: skip
    if len(kept) < len(rows):
        return kept, (f"{len(rows) - len(kept)} run(s) of group {config.name!r} were trained under another config "
                      "than the current plan's and are left out")  # fmt: skip
    return kept, None


def _last(v: np.ndarray) -> float | None:
    return float(v[-1]) if len(v) else None


def _table_row(r: dict) -> dict:
    return {"id": r["id"], "name": r["name"], "status": r["status"], "size": r["size"], "N": r["N"],
            "tokens": r["tokens"], "f": r["f"], "R": r["R"], "seed": r["seed"], "subset_tokens": r["subset_tokens"],
            "final_val_loss": r["final_val_loss"]}  # fmt: skip


def _noise(done: list[dict], z: float, floor: float = 0.0) -> dict:
    baselines = [r for r in done if r["f"] == 0]
    jitter = ra.curve_noise([r["val"] for r in baselines])
    groups = defaultdict(list)
    for r in done:
        groups[(r["N"], r["tokens"], r["f"], r["R"])].append(r["final_val_loss"])
    rep, dof = ra.replicate_noise([np.array(v) for v in groups.values()])
    found = [x for x in (jitter, rep) if np.isfinite(x)]
    sigma = max(found + [floor]) if found or floor > 0 else float("nan")
    return {"sigma_jitter": jitter, "sigma_replicates": rep, "replicate_dof": dof, "sigma_floor": floor,
            "sigma": sigma, "z": z, "threshold": z * sigma * np.sqrt(2.0),
            "rule": ("sigma = the largest of: the jitter of the baseline test-loss curves (1.4826 MAD of second "
                     "differences / sqrt(6), after the first quarter of each curve); the pooled SD of replicate seeds "
                     "(each seed is evaluated on its own validation windows, so this counts window sampling too); "
                     f"the spec's noise_floor ({floor:g}). A difference of two evaluations counts above "
                     f"z sigma sqrt(2), z = {z:g}")}  # fmt: skip


def _cells(done: list[dict]) -> tuple[list[dict], dict]:
    """Treated cells {(N, D, f, R): runs} and baselines {(N, D): runs}."""
    cells, base = defaultdict(list), defaultdict(list)
    for r in done:
        (cells[(r["N"], r["tokens"], r["f"], r["R"])] if r["f"] > 0 else base[(r["N"], r["tokens"])]).append(r)
    out = [{"key": k, "runs": v} for k, v in sorted(cells.items())]
    return out, base


def _law(done: list[dict], res: dict, study, n_boot: int):
    D = res["main_tokens"]
    fam = [r for r in done if r["f"] == 0 and r["tokens"] == D]
    every = [r for r in done if r["f"] == 0]
    if len({r["N"] for r in fam}) < 3 <= len({r["N"] for r in every}):
        fam = every
        res["notes"].append("the baseline law is fitted on every unrepeated run (fewer than 3 sizes share the "
                            "treated runs' token budget)")  # fmt: skip
    N = np.array([r["N"] for r in fam], dtype=float)
    L = np.array([r["final_val_loss"] for r in fam], dtype=float)
    try:
        law = ra.fit_baseline_law(N, L, res["noise"]["sigma"], n_boot=n_boot, seed=study.seed,
                                  method=study.law_bootstrap)  # fmt: skip
    except UserError as e:
        where = f"at the token budget D = {D:,} of the treated runs, " if D else ""
        res["notes"].append(f"no effective sizes: {where}{e}")
        return None, None
    out = law.to_dict() | {"tokens": D, "ids": [r["id"] for r in fam], "N": N.tolist(), "loss": L.tolist()}
    return out, law


def _cell_result(cell: dict, base: dict, noise: dict, law, seed: int) -> dict:
    N, D, f, R = cell["key"]
    runs, b_runs = cell["runs"], base.get((N, D), [])
    sigma, thr = noise["sigma"], noise["threshold"]
    loss = float(np.mean([r["final_val_loss"] for r in runs]))
    out = {"size": runs[0]["size"], "N": N, "tokens": D, "f": f, "R": R, "run_ids": [r["id"] for r in runs],
           "loss": loss, "subset_tokens": runs[0]["subset_tokens"], "unique_tokens": runs[0]["unique_tokens"],
           "f_realised": float(np.mean([r["f_realised"] for r in runs])), "seeds": [r["seed"] for r in runs],
           "repeated_loss": _mean([r["repeated_final"] for r in runs]), "baseline_ids": [r["id"] for r in b_runs],
           }  # fmt: skip
    curve = ra.detect_rise(runs[0]["steps"], runs[0]["val"], thr)
    out["curve"] = curve | {"run_id": runs[0]["id"]}
    if b_runs:
        by_seed = {r["seed"]: r for r in b_runs}
        pairs = [(r, by_seed[r["seed"]]) for r in runs if r["seed"] in by_seed]
        if pairs:
            d = float(np.mean([a["final_val_loss"] - b["final_val_loss"] for a, b in pairs]))
            se = sigma * np.sqrt(2.0 / len(pairs))
        else:
            d = loss - float(np.mean([r["final_val_loss"] for r in b_runs]))
            se = sigma * np.sqrt(1.0 / len(runs) + 1.0 / len(b_runs))
        b0 = pairs[0][1] if pairs else b_runs[0]
        gap = _gap(runs[0], b0)
        out.update(baseline_loss=float(np.mean([r["final_val_loss"] for r in b_runs])), degradation=d,
                   degradation_se=se, degradation_ci=[d - ra.Z95 * se, d + ra.Z95 * se],
                   significant=bool(d > noise["z"] * se), rel_degradation=d / (loss - d), **gap)  # fmt: skip
    if law is not None:
        out.update(law.effective_size(N, loss, sigma / np.sqrt(len(runs)), seed=seed))
    return out


def _mean(v: list) -> float | None:
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None


def _gap(run: dict, b: dict) -> dict:
    """Test loss of the treated run minus its baseline's at the evaluations both have (same steps by design)."""
    common, ia, ib = np.intersect1d(run["steps"], b["steps"], return_indices=True)
    if not len(common):
        return {"max_gap": None, "max_gap_step": None}
    gap = run["val"][ia] - b["val"][ib]
    i = int(np.argmax(gap))
    return {"max_gap": float(gap[i]), "max_gap_step": int(common[i])}


def _peaks(cells: list[dict], sigma: float, study) -> list[dict]:
    groups = defaultdict(list)
    for c in cells:
        if "degradation" in c:
            groups[(c["N"], c["tokens"], c["f"])].append(c)
    out = []
    for (N, D, f), cs in sorted(groups.items()):
        se = np.array([c["degradation_se"] for c in cs])
        pk = ra.peak_degradation([c["R"] for c in cs], [c["degradation"] for c in cs], se, z=study.noise_z,
                                 seed=study.seed)
        best = next(c for c in cs if c["R"] == pk["R_peak"])
        out.append({"size": cs[0]["size"], "N": N, "tokens": D, "f": f, **pk, "run_ids": best["run_ids"],
                    **{k: best.get(k) for k in ("k", "k_ci", "N_eff", "N_eff_ci", "extrapolated", "loss",
                                                "baseline_loss", "rel_degradation", "subset_tokens", "repeated_loss",
                                                "curve", "f_realised")}})  # fmt: skip
    return out


def _data_constrained(done: list[dict], res: dict, n_boot: int, seed: int) -> dict:
    rs = [r for r in done if r["unique_tokens"]]
    out = ra.data_constrained([r["N"] for r in rs], [r["tokens"] for r in rs], [r["unique_tokens"] for r in rs],
                              [r["final_val_loss"] for r in rs], n_boot=n_boot, seed=seed)  # fmt: skip
    out["run_ids"] = [r["id"] for r in rs]
    ratio = dict(zip(out["run_ids"], out["effective_data_ratio_published"]))
    for c in res["cells"]:
        c["effective_data_ratio_published"] = float(np.mean([ratio[i] for i in c["run_ids"] if i in ratio]))
    return out


def _mean_ci(v: list[float], fallback_half: float) -> tuple[float, list[float], str]:
    """Mean of per-seed values and its 95% interval: Student t over seeds with 2+, else mean +- fallback_half."""
    from scipy import stats

    x = np.asarray(v, dtype=float)
    mu = float(x.mean())
    if x.size >= 2:
        half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
        return mu, [mu - half, mu + half], f"t over {x.size} seeds"
    return mu, [mu - fallback_half, mu + fallback_half], "eval jitter (one seed)"


def _probes(m, done: list[dict], cells: list[dict], base: dict, seed: int = 0) -> dict:
    """Final probe values of every cell and of its baselines, and their differences paired by seed.

    With 2 or more seeds the intervals are Student-t intervals over seeds (the mechanism's seed
    variation, Hernandez et al. 2022 Section 5); with one seed they fall back to the jitter of the
    baseline probe curves (1.96 sigma sqrt(2)), and `interval` says which.
    """
    have = set(m[m.split == "eval"].name) if m is not None else set()
    metrics = [k for k in PROBE_METRICS if k in have]
    out: dict = {"metrics": metrics, "noise": {}, "cells": [], "baselines": []}
    if not metrics:
        return out
    last = {(r["id"], k): _last(_series(m, r["id"], "eval", k)[1]) for r in done for k in metrics}
    for k in metrics:
        out["noise"][k] = ra.curve_noise([_series(m, r["id"], "eval", k)[1] for r in done if r["f"] == 0])
    for (N, D), b_runs in sorted(base.items()):
        row = {"size": b_runs[0]["size"], "N": N, "tokens": D, "run_ids": [r["id"] for r in b_runs]}
        for k in metrics:
            vals = [last[(r["id"], k)] for r in b_runs if last[(r["id"], k)] is not None]
            if vals:
                row[k], row[f"{k}_ci"], row["interval"] = _mean_ci(vals, ra.Z95 * out["noise"][k])
        out["baselines"].append(row)
    for cell in cells:
        N, D, f, R = cell["key"]
        runs = cell["runs"]
        by_seed = {x["seed"]: x for x in base.get((N, D), [])}
        row = {"size": runs[0]["size"], "N": N, "f": f, "R": R, "run_id": runs[0]["id"],
               "run_ids": [r["id"] for r in runs], "seeds": [r["seed"] for r in runs],
               "baseline_id": by_seed[runs[0]["seed"]]["id"] if runs[0]["seed"] in by_seed else None}  # fmt: skip
        for k in metrics:
            vals = [last[(r["id"], k)] for r in runs if last[(r["id"], k)] is not None]
            if not vals:
                continue
            row[k] = float(np.mean(vals))
            pairs = [(last[(r["id"], k)], last[(by_seed[r["seed"]]["id"], k)]) for r in runs if r["seed"] in by_seed]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if pairs:
                row[f"{k}_baseline"] = float(np.mean([b for _, b in pairs]))
                d, ci, how = _mean_ci([a - b for a, b in pairs], ra.Z95 * out["noise"][k] * np.sqrt(2.0))
                row[f"{k}_delta"], row[f"{k}_delta_ci"], row["interval"], row["pairs"] = d, ci, how, len(pairs)
        out["cells"].append(row)
    return out
