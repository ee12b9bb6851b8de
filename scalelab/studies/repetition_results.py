"""From the run store to the numbers of the repeated-data study (Hernandez et al. 2022), and their summary.

A *cell* is one treatment (N, D, f, R) with its runs (one per seed); its baseline is the
unrepeated run of the same size and budget. Degradation = final test loss minus the baseline's,
paired by seed (same seed, same validation windows) where possible. Every number keeps the run
ids it came from. The rules themselves (noise, rise detection, peak, inversion) live in
`repetition_analysis`.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies import repetition_analysis as ra

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


def analyze_runs(store: RunStore, sweep: str, study, fit_params: str = "nonembed", n_boot: int = 200) -> dict:
    rows = store.find_runs(group=sweep)
    if not rows:
        raise UserError(f"no runs of sweep {sweep!r} in {store.path}; run the study first")
    key = "params_nonembed" if fit_params == "nonembed" else "params"
    recs = [_record(r, key) for r in rows]
    done = [r for r in recs if r["status"] == "completed" and r["final_val_loss"] is not None]
    res: dict = {"sweep": sweep, "fit_params": fit_params, "n_runs": len(recs), "n_completed": len(done),
                 "runs": [_table_row(r) for r in recs], "notes": [], "cells": [], "peaks": [], "law": None}  # fmt: skip
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
    res["probes"] = _probes(m, done, cells, base)
    return res


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
        out.update(ra.effective_size(N, loss, sigma / np.sqrt(len(runs)), law, seed=seed))
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
                                                "curve")}})  # fmt: skip
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


def _probes(m, done: list[dict], cells: list[dict], base: dict) -> dict:
    """Final probe values of each treated run minus its baseline's; noise from the baseline probe curves."""
    have = set(m[m.split == "eval"].name) if m is not None else set()
    metrics = [k for k in PROBE_METRICS if k in have]
    out: dict = {"metrics": metrics, "noise": {}, "cells": []}
    if not metrics:
        return out
    series = {(r["id"], k): _series(m, r["id"], "eval", k) for r in done for k in metrics}
    for k in metrics:
        out["noise"][k] = ra.curve_noise([series[(r["id"], k)][1] for r in done if r["f"] == 0])
    for cell in cells:
        N, D, f, R = cell["key"]
        run = cell["runs"][0]
        b = next((x for x in base.get((N, D), []) if x["seed"] == run["seed"]), None)
        row = {"size": run["size"], "N": N, "f": f, "R": R, "run_id": run["id"], "baseline_id": b and b["id"]}
        for k in metrics:
            v = _last(series[(run["id"], k)][1])
            row[k] = v
            if b is not None and v is not None and _last(series[(b["id"], k)][1]) is not None:
                bv = _last(series[(b["id"], k)][1])
                half = ra.Z95 * out["noise"][k] * np.sqrt(2.0)
                row[f"{k}_baseline"], row[f"{k}_delta"] = bv, v - bv
                row[f"{k}_delta_ci"] = [v - bv - half, v - bv + half]
        out["cells"].append(row)
    return out


# ----------------------------------------------------------------------------- words


def _fmt_k(c: dict) -> str:
    if c.get("k") is None or not np.isfinite(c["k"]):
        return ""
    lo, hi = c["k_ci"]
    ext = ", extrapolated beyond the baseline sizes" if c.get("extrapolated") else ""
    if c["k"] >= 1:
        return f"; performs like a model {c['k']:.2f}x smaller (95% CI [{lo:.2f}, {hi:.2f}]{ext})"
    inv = [1 / x if x > 0 else float("inf") for x in (hi, lo)]
    return f"; performs like a model {1 / c['k']:.2f}x larger (95% CI [{inv[0]:.2f}, {inv[1]:.2f}]{ext})"


def _peak_words(p: dict) -> str:
    lo, hi = p["degradation_ci"]
    head = f"{p['size']} (N = {p['N']:,.0f}, f = {p['f']:g}): "
    change = (f"test loss {p['degradation']:+.3f} nats (95% CI [{lo:+.3f}, {hi:+.3f}], "
              f"{100 * p['rel_degradation']:+.1f}%){_fmt_k(p)}")  # fmt: skip
    if not p["band"]:
        return head + f"no repeat count degrades test loss above the noise (largest at R = {p['R_peak']:g}: {change})."
    shape = "inside the R grid (double descent across R)" if p["interior"] else "at the edge of the R grid"
    band = ", ".join(f"{r:g}" for r in p["band"])
    text = (head + f"degradation peaks at R = {p['R_peak']:g}, {shape}: {change}. The peak stays at that R in "
            f"{100 * p['peak_share']:.0f}% of noise redraws; significant degradation at R = {band}.")  # fmt: skip
    if p.get("repeated_loss") is not None:
        text += f" Loss on its repeated subset ({p['subset_tokens']:,} tokens) ended at {p['repeated_loss']:.3f} nats."
    return text


def summary_text(res: dict) -> str:
    lines = [f"Sweep {res['sweep']}: {res['n_completed']} of {res['n_runs']} runs completed."]
    nz = res.get("noise")
    if nz:
        lines.append(f"Eval noise sigma = {nz['sigma']:.4f} nats (baseline jitter {nz['sigma_jitter']:.4f}, "
                     f"replicate seeds {nz['sigma_replicates']:.4f} with {nz['replicate_dof']} dof, floor "
                     f"{nz['sigma_floor']:g}); a rise of test loss counts above {nz['threshold']:.4f} nats "
                     f"(z = {nz['z']:g}).")  # fmt: skip
    lines += [_peak_words(p) for p in res.get("peaks", [])]
    cells = res.get("cells", [])
    shapes = defaultdict(list)
    for c in cells:
        shapes[c["curve"]["shape"]].append(f"{c['size']} R={c['R']:g}")
    if cells:
        dd = shapes.get("double descent", []) + shapes.get("rise", [])
        lines.append(f"During training, {len(dd)} of {len(cells)} repeated runs show a sustained rise of test loss "
                     f"after an earlier minimum" + (f" ({', '.join(dd)})" if dd else "") +
                     (f"; single-evaluation spikes only: {', '.join(shapes['spike'])}" if shapes.get("spike") else "")
                     + ".")  # fmt: skip
    law = res.get("law")
    if law:
        ci = law["ci"]["alpha"]
        lines.append(f"Baseline law L(N) = {law['E']:.3f} + {law['A']:.3g} N^-{law['alpha']:.3f} (alpha 95% CI "
                     f"[{ci[0]:.3f}, {ci[1]:.3f}], {law['bootstrap']} bootstrap, {law['n_boot']} refits, "
                     f"{law['n_points']} runs, N = {res['fit_params']} parameters).")  # fmt: skip
    dc = res.get("data_constrained")
    if dc:
        worst = min(cells, key=lambda c: c.get("effective_data_ratio_published", 1.0)) if cells else None
        text = "Data-constrained law (Muennighoff et al. 2023): "
        if worst:
            low = worst["effective_data_ratio_published"]
            text += (f"with the published R_D* = {dc['R_D_star_published']:g}, effective data D'/D is at least "
                     f"{low:.3f} for every treatment (lowest: {worst['size']} R = {worst['R']:g}), i.e. at most "
                     f"{100 * (1 - low):.1f}% of the tokens lost; ")
        if dc["fitted"]:
            lo, hi = dc["R_D_star_ci"] or (float("nan"), float("nan"))
            text += f"fitted on these runs, R_D* = {dc['R_D_star']:.3g} (95% CI [{lo:.3g}, {hi:.3g}])"
            if dc["R_D_star"] > 0.99e4:
                text += " at the upper end of the search (1e4): no measurable cost of repetition under this law."
            elif dc["R_D_star"] < 0.0101:
                text += " at the lower end of the search (0.01): repeated tokens worth nothing under this law."
            else:
                text += "."
        else:
            text += f"{dc['reason']}."
        lines.append(text)
    lines += _probe_words(res)
    lines += res.get("notes", [])
    return "\n".join(lines)


def _probe_words(res: dict) -> list[str]:
    pr = res.get("probes") or {}
    if not pr.get("cells"):
        return ["No mechanism probes were logged (set probes = true in the spec)."] if res.get("cells") else []
    peaks = {(p["N"], p["f"], p["R_peak"]) for p in res.get("peaks", [])}
    out = []
    for row in pr["cells"]:
        if (row["N"], row["f"], row["R"]) not in peaks:
            continue
        parts = []
        for k, label in (("induction_max", "prefix matching"), ("copy_loss_later", "copying loss on later copies")):
            if f"{k}_delta" in row:
                lo, hi = row[f"{k}_delta_ci"]
                parts.append(f"{label} {row[k]:.3f} vs baseline {row[f'{k}_baseline']:.3f} "
                             f"(difference {row[f'{k}_delta']:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}])")  # fmt: skip
        if parts:
            out.append(f"Probes at the end of training, {row['size']} at its peak R = {row['R']:g}: " + "; ".join(parts)
                       + ".")  # fmt: skip
    out += _copying_words(pr)
    return out


def _copying_words(pr: dict) -> list[str]:
    """Whether the baselines copy in context at all: without that, the probes cannot show copying damaged."""
    if "copy_loss_first_baseline" not in next(iter(pr["cells"]), {}):
        return []
    seen, gains = set(), []
    for row in pr["cells"]:
        if row.get("baseline_id") and row["baseline_id"] not in seen and "copy_loss_first_baseline" in row:
            seen.add(row["baseline_id"])
            gains.append((row["size"], row["copy_loss_first_baseline"] - row["copy_loss_later_baseline"],
                          row.get("induction_max_baseline")))  # fmt: skip
    thr = 3 * np.sqrt(2.0) * pr["noise"].get("copy_loss_later", 0.0)
    copying = [g for g in gains if g[1] > thr]
    listed = ", ".join(f"{s} {g:+.3f} nats (prefix matching {p:.3f})" for s, g, p in gains)
    if copying:
        return [f"Copying gain of the baselines (first copy minus later copies): {listed}."]
    return [f"No baseline copies in context (first copy minus later copies: {listed}): at this scale no induction "
            "heads have formed, so the probes cannot show repetition damaging them; run a larger preset."]
