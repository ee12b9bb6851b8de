"""Fit the scaling laws of a study's runs, forecast the largest run, and say it in a few lines.

Which N each law uses is stated in its results (`"N": "nonembed"` or `"total"`): L(N) on
non-embedding parameters (Kaplan et al. 2020), L(N, D) and the IsoFLOP fit on total parameters
(Hoffmann et al. 2022); `analysis.power_params` / `analysis.chinchilla_params` switch them. C is
the FLOPs each run actually had (PaLM count x its tokens), and D the tokens it actually had: the
budget that planned the run flows unchanged into the fits.
"""

from __future__ import annotations

import numpy as np

from scalelab import laws
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies.scaling.config import Analysis, Config

RUN_KEYS = ("id", "name", "status", "params", "params_nonembed", "tokens", "flops", "final_val_loss")
ONE_SEED_NOTE = ("One seed per point: the forecast's noise floor is the jitter of the runs around the law "
                 "(fit residuals), not a measured seed-to-seed spread; set seeds = 2 or more to measure it.")
SEEDS_NOTE = "The noise floor ({sd:.2%} of the loss) is the spread of replicate runs of one N and D (seeds)."


def analyze(store: RunStore, config: Config) -> dict:
    """Fits, intervals and the forecast for the study's runs (the store group `config.name`); kept beside its
    report and reused while the runs, options and fitting code are unchanged (`scaling.report.analyze_cached`)."""
    from scalelab.studies.scaling.report import analyze_cached

    return analyze_cached(store, store.path.parent, config.name, config.analysis, seeds=config.seeds)


def analyze_group(store: RunStore, group: str, analysis: Analysis, seeds: int = 1) -> dict:
    """The analysis of the completed runs of store group `group` (see the module docstring)."""
    rows = store.find_runs(group=group)
    done = [r for r in rows if r["status"] == "completed" and r["final_val_loss"] is not None]
    res: dict = {"sweep": group, "runs": [{k: r[k] for k in RUN_KEYS} for r in rows], "n_completed": len(done),
                 "fit_params": analysis.power_params, "notes": [], "fits": {}}  # fmt: skip
    if len(done) < 4:
        res["notes"].append(f"{len(done)} completed runs: at least 4 are needed to fit a three-parameter law")
        return res
    col = {k: np.array([r[k] for r in done], dtype=float) for k in RUN_KEYS[3:]}
    n_pow = col["params_nonembed" if analysis.power_params == "nonembed" else "params"]
    n_ch = col["params" if analysis.chinchilla_params == "total" else "params_nonembed"]
    d, c, y = col["tokens"], col["flops"], col["final_val_loss"]
    ids = [r["id"] for r in done]
    res["points"] = {"N": n_pow.tolist(), "N_total": col["params"].tolist(), "D": d.tolist(), "C": c.tolist(),
                     "loss": y.tolist(), "ids": ids}  # fmt: skip
    curves = store.metric_series(ids, "val", "loss")
    curve_list = [([p[2] for p in curves.get(i, [])], [p[3] for p in curves.get(i, [])]) for i in ids]
    noise_sd, noise_source = _noise(n_pow, d, y)
    res["noise"] = {"sd_log_loss": noise_sd, "source": noise_source, "seeds": seeds}
    res["notes"].append(ONE_SEED_NOTE if noise_sd is None else SEEDS_NOTE.format(sd=noise_sd))
    fits = res["fits"]
    # L(N) at one D (or one D per N, e.g. a fixed token ratio); a design that varies D at a given N
    # is sliced at its largest D, so that the data term stays constant along the fit
    several_d = any(len(np.unique(d[n_pow == v])) > 1 for v in np.unique(n_pow))
    at_d = d >= d.max() * (1 - 1e-9) if several_d else np.ones(len(d), dtype=bool)
    _try(res, "L(N)", lambda: fits.__setitem__("power_N", _power(n_pow[at_d], y[at_d], analysis) | {
        "N": analysis.power_params, "D": float(d[at_d].min()) if several_d else None, "n_runs": int(at_d.sum())}))
    _try(res, "compute frontier", lambda: fits.__setitem__("compute_frontier", _frontier(curve_list)))
    varied_d = len(np.unique(d)) >= 3 and len({(a, b) for a, b in zip(n_ch, d)}) > len(np.unique(n_ch))
    if varied_d and len(done) >= 8:
        _try(res, "L(N, D)", lambda: fits.__setitem__("chinchilla", _chinchilla(n_ch, d, y, analysis)))
    if varied_d and _isoflop_design(c):
        _try(res, "IsoFLOP", lambda: fits.__setitem__(
            "isoflop", laws.fit_isoflop(n_ch, y, c, tokens=d).to_dict() | {"N": analysis.chinchilla_params}))
    _try(res, "forecast", lambda: fits.__setitem__(
        "forecast", _forecast(n_pow, n_ch, d, c, y, ids, curve_list, analysis, noise_sd)))
    return res


def _isoflop_design(c: np.ndarray) -> bool:
    """At least 2 budgets with at least 3 runs each (parabolas need 3 sizes)."""
    _, counts = np.unique(laws.isoflop.group_budgets(c), return_counts=True)
    return int((counts >= 3).sum()) >= 2


def _try(res: dict, what: str, fn) -> None:
    """Run one fit; a design that cannot identify it becomes a note, not a failed study."""
    try:
        fn()
    except UserError as e:
        res["notes"].append(f"{what} not fitted: {e}")


def _noise(n: np.ndarray, d: np.ndarray, y: np.ndarray) -> tuple[float | None, str]:
    """Pooled sd of log loss over replicates (runs of one N and D, e.g. seeds), or (None, 'residuals')."""
    groups: dict[tuple[float, float], list[float]] = {}
    for a, b, v in zip(n, d, y):
        groups.setdefault((a, b), []).append(float(np.log(v)))
    reps = [np.asarray(g) for g in groups.values() if len(g) > 1]
    dof = sum(len(g) - 1 for g in reps)
    if dof > 0:
        return float(np.sqrt(sum(((g - g.mean()) ** 2).sum() for g in reps) / dof)), "seeds"
    return None, "residuals"


def _power(x: np.ndarray, y: np.ndarray, a: Analysis) -> dict:
    fit = laws.fit_power_law(x, y, delta=a.huber_delta)
    out = fit.to_dict() | {"huber_delta": a.huber_delta}
    if a.bootstrap:
        boot = laws.bootstrap_power_law(x, y, n_boot=a.bootstrap, seed=a.seed, fit=fit, level=a.level,
                                        delta=a.huber_delta)
        out |= {"ci": {k: list(v) for k, v in boot.ci.items()},
                "samples": {k: np.asarray(v)[:200].tolist() for k, v in boot.samples.items()}}
    return out


def _frontier(curves: list) -> dict:
    return laws.fit_compute_frontier(curves).to_dict() | {"x": "training FLOPs C (PaLM count x tokens)"}


def _chinchilla(n: np.ndarray, d: np.ndarray, y: np.ndarray, a: Analysis) -> dict:
    fit = laws.fit_chinchilla(n, d, y, delta=a.huber_delta)
    out = fit.to_dict() | {"N": a.chinchilla_params, "huber_delta": a.huber_delta}
    if a.bootstrap:
        boot = laws.bootstrap_chinchilla(n, d, y, n_boot=a.bootstrap, seed=a.seed, fit=fit, level=a.level,
                                         delta=a.huber_delta)
        out["ci"] = {k: list(v) for k, v in boot.ci.items() if k != "objective"}
    return out


def _forecast(n_pow: np.ndarray, n_ch: np.ndarray, d: np.ndarray, c: np.ndarray, y: np.ndarray, ids: list,
              curves: list, a: Analysis, noise_sd: float | None) -> dict:
    """Fit on runs with <= 1/ratio of the largest run's FLOPs; predict the largest run(s)."""
    test = c >= c.max() * (1 - 1e-9)
    train = c <= c.max() / a.forecast_compute_ratio * (1 + 1e-9)  # exactly 1/ratio counts
    if train.sum() < 4:
        raise UserError(f"only {int(train.sum())} runs have at most 1/{a.forecast_compute_ratio:g} of the largest "
                        "run's compute; a forecast needs at least 4: add smaller runs")  # fmt: skip
    use = train | test
    n_test = int(test.sum())
    kw = {"n_boot": max(a.bootstrap, 20), "seed": a.seed, "level": a.level, "noise_sd": noise_sd,
          "delta": a.huber_delta}
    if a.forecast_law == "power_N":
        fc = laws.forecast_power_law(n_pow[use], y[use], holdout=n_test, holdout_by=c[use], **kw)
        extra = {"law": "L(N) = E + A N^-alpha", "N": a.power_params}
    elif a.forecast_law == "chinchilla":
        fc = laws.forecast_chinchilla(n_ch[use], d[use], y[use], by="C", holdout=n_test, **kw)
        extra = {"law": "L(N, D) = E + A/N^alpha + B/D^beta", "N": a.chinchilla_params}
    else:
        flops, loss, _ = laws.compute_frontier([cv for cv, t in zip(curves, train) if t])
        x = np.concatenate([flops, c[test]])
        fc = laws.forecast_power_law(x, np.concatenate([loss, y[test]]), holdout=n_test, **kw)
        extra = {"law": "frontier L(C) = E + A C^-alpha", "N": None}
    out = fc.to_dict() | extra
    out["train_ids"] = [i for i, t in zip(ids, train) if t]
    out["test_ids"] = [i for i, t in zip(ids, test) if t]
    out["compute_ratio"] = float(c.max() / c[train].max())
    return out


def headline(res: dict) -> dict:
    """The fits without their bootstrap samples, for JSON output."""
    fits = res.get("fits") or {}
    return {k: {kk: vv for kk, vv in v.items() if kk not in ("samples", "best_starts")} for k, v in fits.items()}


def summary(res: dict) -> str:
    """A few plain lines: the law, its interval, the forecast and its prediction interval, the notes."""
    lines = [f"Scaling study {res['sweep']}: {res['n_completed']} completed runs."]
    fits = res.get("fits", {})
    p = fits.get("power_N")
    if p:
        ci = p.get("ci", {}).get("alpha")
        band = f" (alpha {100 * 0.95:.0f}% CI [{ci[0]:.3f}, {ci[1]:.3f}])" if ci else ""
        where = f"at D = {p['D']:.3g} tokens" if p.get("D") else "(one D per N)"
        lines.append(f"L(N) = {p['E']:.3f} + {p['A']:.3g} N^-{p['alpha']:.3f}{band}, N = {p['N']} parameters, "
                     f"on the {p['n_runs']} runs {where}.")
    f = fits.get("compute_frontier")
    if f:
        lines.append(f"Compute frontier L(C) = {f['E']:.3f} + {f['A']:.3g} C^-{f['alpha']:.3f} "
                     f"(lower envelope of {len(set(f['frontier_run']))} runs' loss-vs-FLOPs curves).")  # fmt: skip
    fc = fits.get("forecast")
    if fc:
        for act, pred, rel, pi, ok in zip(fc["actual"], fc["predicted"], fc["rel_error"], fc["prediction_interval"],
                                          fc["covered"]):  # fmt: skip
            verdict = "holds" if ok else "misses"
            lines.append(f"Forecast by {fc['law']} from {fc['n_train']} runs with <= 1/{fc['compute_ratio']:.1f} of "
                         f"its compute: predicted {pred:.4f}, actual {act:.4f}, error {100 * rel:+.2f}%; 95% "
                         f"prediction interval [{pi[0]:.4f}, {pi[1]:.4f}] {verdict} the actual.")  # fmt: skip
    ch = fits.get("chinchilla")
    if ch:
        lines.append(f"L(N, D): E {ch['E']:.3f}, A {ch['A']:.3g}, B {ch['B']:.3g}, alpha {ch['alpha']:.3f}, "
                     f"beta {ch['beta']:.3f}; N_opt ~ C^{ch['a']:.3f} (N = {ch['N']} parameters).")  # fmt: skip
    lines += res.get("notes", [])
    return "\n".join(lines)
