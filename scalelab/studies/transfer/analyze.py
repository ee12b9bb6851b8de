"""The transfer study's results, read from the run store: per size the from-scratch L(D) and the
fine-tuned L(D_F) on B (best validation loss under early stopping), D_E, D_T and the effective data
multiplier per fine-tune, ossification, and the fit D_T = k D_F^alpha N^beta with intervals."""

from __future__ import annotations

import math
from pathlib import Path

from scalelab.errors import UserError
from scalelab.laws.transfer import PAPER_TEXT_TO_PYTHON, fit_transfer, transfer_table
from scalelab.studies.transfer.config import Config
from scalelab.studies.transfer.plan import plan


def _point(p, run: dict, max_iters: int) -> dict:
    s = run["summary"]
    loss = s.get("best_val_loss", run.get("final_val_loss"))
    return {"D": p.axes["D"], "loss": loss, "best_tokens": s.get("best_tokens"), "iters": s.get("iters"),
            "early_stopped": bool(s.get("early_stopped")),
            "capped": not s.get("early_stopped") and (s.get("iters") or 0) >= max_iters,
            "run_id": run["id"]}  # fmt: skip


def _fit(rows: list[dict], config: Config) -> dict:
    """The fit on the interpolated points; on every point (said so) when those are too few."""
    for use_all in (False, True):
        pts = [r for r in rows if use_all or not r["extrapolated"]]
        try:
            f = fit_transfer([r["D_F"] for r in pts], [r["N"] for r in pts], [r["D_T"] for r in pts],
                             n_boot=config.bootstrap, seed=config.seed)  # fmt: skip
        except UserError as e:
            error = str(e)
            continue
        return f.to_dict() | {"includes_extrapolated": use_all}
    return {"error": error}


def analyze(store, config: Config) -> dict:
    """Plain results from the completed runs of the plan (matched by name and config hash)."""
    planned = plan(config, Path(store.path).parent)
    done = {(r["name"], r["config_hash"]): r for r in store.find_runs(group=config.name, status="completed")}
    missing = [p.name for p in planned if (p.name, p.config_hash) not in done]
    sizes, rows, notes = [], [], []
    for size in config.sizes:
        mine = [(p, done.get((p.name, p.config_hash))) for p in planned if p.axes["size"] == size]
        mine = [(p, run) for p, run in mine if run is not None]
        n = next(p.params_nonembed for p in planned if p.axes["size"] == size)
        pre = next((run for p, run in mine if p.axes["role"] == "pretrain"), None)
        pts = {role: sorted((_point(p, run, config.max_iters) for p, run in mine if p.axes["role"] == role),
                            key=lambda r: r["D"]) for role in ("scratch", "finetune")}  # fmt: skip
        entry = {"size": size, "N": n, "pretrain": {"val_loss_A": pre.get("final_val_loss"), "run_id": pre["id"]}
                 if pre else None, **pts, "rows": []}  # fmt: skip
        scratch = [r for r in pts["scratch"] if r["loss"] is not None]
        if len(scratch) >= 2 and pts["finetune"]:
            ft = [r for r in pts["finetune"] if r["loss"] is not None]
            table = transfer_table(n, [r["D"] for r in scratch], [r["loss"] for r in scratch],
                                   [r["D"] for r in ft], [r["loss"] for r in ft])  # fmt: skip
            for row, r in zip(table, ft):
                row.update(size=size, run_id=r["run_id"])
            entry["rows"] = table
            rows += table
        elif pts["finetune"]:
            notes.append(f"size {size}: fewer than two from-scratch runs completed, D_E cannot be inverted")
        sizes.append(entry)
    capped = [r["run_id"] for e in sizes for role in ("scratch", "finetune") for r in e[role] if r["capped"]]
    if capped:
        notes.append(f"{len(capped)} runs reached max_iters={config.max_iters} before early stopping: their loss is "
                     "limited by compute, not by data (raise max_iters for the full picture)")  # fmt: skip
    extrap = [r for r in rows if r["extrapolated"]]
    if extrap:
        notes.append(f"{len(extrap)} of {len(rows)} D_E values lie outside the measured from-scratch range and "
                     "are extrapolated along a power law (flagged; widen scratch_tokens to measure them)")  # fmt: skip
    ft_d = sorted({r["D_F"] for r in rows})
    orders = math.log10(ft_d[-1] / ft_d[0]) if len(ft_d) > 1 else 0.0
    if rows and orders < 3:
        notes.append(f"D_F spans {orders:.1f} orders of magnitude, fewer than the paper's design of >= 3")
    fit = _fit(rows, config)
    if "error" not in fit:
        outside = [k for k, ok in fit["paper_inside"].items() if not ok]
        notes.append("The paper's text -> Python values (k 1.9e4, alpha 0.18, beta 0.38) lie "
                     + (f"outside the intervals of {', '.join(outside)}" if outside else "inside every interval")
                     + f". Here N is {min(e['N'] for e in sizes):.2g}-{max(e['N'] for e in sizes):.2g} non-embedding "
                     "parameters, D counts the tokens of this tokenizer (the paper's BPE token holds about 4 "
                     "characters, which moves k) and the runs are short: small values need not match.")  # fmt: skip
    return {"group": config.name, "sizes": sizes, "table": rows, "fit": fit, "paper": PAPER_TEXT_TO_PYTHON,
            "multiplier": [{k: r[k] for k in ("size", "N", "D_F", "multiplier", "extrapolated")} for r in rows],
            "ossified": [{k: r[k] for k in ("size", "D_F", "loss_finetuned", "loss_scratch_at_D_F")}
                         for r in rows if r["ossified"]],
            "d_f_orders_of_magnitude": orders, "missing": missing, "notes": notes}  # fmt: skip


def summary(res: dict) -> str:
    """A few plain lines: the fit with intervals, the multipliers, ossification, the notes."""
    lines = [f"Transfer study {res['group']}: {len(res['table'])} fine-tunes compared with from-scratch curves."]
    f = res["fit"]
    if "error" in f:
        lines.append(f"No D_T fit: {f['error']}")
    else:
        ci = f["ci"]
        lines.append(f"D_T = k D_F^alpha N^beta: k {f['k']:.3g} [{ci['k'][0]:.3g}, {ci['k'][1]:.3g}], alpha "
                     f"{f['alpha']:.3f} [{ci['alpha'][0]:.3f}, {ci['alpha'][1]:.3f}], beta {f['beta']:.3f} "
                     f"[{ci['beta'][0]:.3f}, {ci['beta'][1]:.3f}] (95% bootstrap intervals, {f['n_points']} points"
                     f"{', extrapolated ones included' if f.get('includes_extrapolated') else ''}); paper: k 1.9e4, "
                     "alpha 0.18, beta 0.38.")  # fmt: skip
    for e in res["sizes"]:
        mult = ", ".join(f"D_F {r['D_F']:.3g}: x{r['multiplier']:.3g}{'*' if r['extrapolated'] else ''}"
                         for r in e["rows"])  # fmt: skip
        if mult:
            lines.append(f"{e['size']} (N {e['N']:.3g}) effective data multiplier D_E/D_F: {mult}")
    if any(r["extrapolated"] for r in res["table"]):
        lines.append("* D_E extrapolated beyond the measured from-scratch range.")
    if res["ossified"]:
        lines.append("Ossification (fine-tuned worse than from scratch on the same data): "
                     + ", ".join(f"{o['size']} at D_F {o['D_F']:.3g}" for o in res["ossified"]))  # fmt: skip
    if res["missing"]:
        lines.append(f"{len(res['missing'])} planned runs missing: {', '.join(res['missing'][:6])}")
    return "\n".join(lines + res["notes"])
