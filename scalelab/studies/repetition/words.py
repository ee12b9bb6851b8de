"""The repeated-data study's results in words: the summary of the report and of `scalelab study --json`."""

from __future__ import annotations

from collections import defaultdict

import numpy as np


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
    if p.get("resolved"):
        lo_m = min(p["margins"])
        shape = (f"a resolved peak (double descent across R): above both neighbours by at least {lo_m:.3f} nats, "
                 f"more than z = {p.get('z', 3):g} standard errors of the difference")  # fmt: skip
    elif p["interior"]:
        shape = ("no peak resolved: the worst R lies inside the grid, but not above both neighbours by more than "
                 "the noise threshold")  # fmt: skip
    else:
        shape = "no peak resolved: the worst R is at the edge of the R grid"
    band = ", ".join(f"{r:g}" for r in p["band"])
    text = (head + f"degradation is largest at R = {p['R_peak']:g}, {shape}; {change}. That R stays the largest in "
            f"{100 * p['peak_share']:.0f}% of noise redraws; significant degradation at R = {band}.")  # fmt: skip
    if p.get("repeated_loss") is not None:
        text += f" Loss on its repeated subset ({p['subset_tokens']:,} tokens) ended at {p['repeated_loss']:.3f} nats."
    return text


def summary(res: dict) -> str:
    """A few lines of plain text: the noise, each size's degradation and peak, the law, the probes."""
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


def _ci(lo_hi: list[float]) -> str:
    return f"[{lo_hi[0]:+.3f}, {lo_hi[1]:+.3f}]"


def _probe_words(res: dict) -> list[str]:
    pr = res.get("probes") or {}
    if not pr.get("cells"):
        return ["No mechanism probes were logged (set probes = true in the study config)."] if res.get("cells") else []
    out = _baseline_words(pr)
    band = {(p["N"], p["f"]): set(p["band"]) for p in res.get("peaks", [])}
    for row in pr["cells"]:
        moved = any(f"{k}_delta_ci" in row and (row[f"{k}_delta_ci"][0] > 0 or row[f"{k}_delta_ci"][1] < 0)
                    for k in ("induction_max", "copy_loss_later"))  # fmt: skip
        in_band = row["R"] in band.get((row["N"], row["f"]), ())
        if not (in_band or moved):
            continue
        parts = []
        for k, label in (("induction_max", "prefix matching"), ("copy_loss_later", "loss on later copies")):
            if f"{k}_delta" in row:
                parts.append(f"{label} {row[k]:.3f} vs baseline {row[f'{k}_baseline']:.3f} "
                             f"(difference {row[f'{k}_delta']:+.3f}, 95% CI {_ci(row[f'{k}_delta_ci'])})")  # fmt: skip
        if parts:
            where = "in the degradation band" if in_band else "outside the degradation band"
            out.append(f"Probes at the end of training, {row['size']} R = {row['R']:g} ({where}; "
                       f"intervals: {row.get('interval')}): " + "; ".join(parts) + ".")  # fmt: skip
    return out


def _baseline_words(pr: dict) -> list[str]:
    """Whether the baselines have induction heads and copy at all: without that, the probes cannot show damage."""
    rows = [b for b in pr.get("baselines", []) if "induction_max" in b]
    if not rows:
        return []
    listed = []
    for b in rows:
        text = f"{b['size']} prefix matching {b['induction_max']:.3f} (95% CI {_ci(b['induction_max_ci'])})"
        if "copy_loss_first" in b and "copy_loss_later" in b:
            text += f", copying gain {b['copy_loss_first'] - b['copy_loss_later']:+.3f} nats"
        listed.append(text)
    line = f"Baselines (no repetition; {rows[0].get('interval')}): " + "; ".join(listed) + "."
    formed = [b for b in rows if induction_formed(b)]
    if not formed:
        line += (f" No baseline has formed induction heads (rule: prefix matching >= {INDUCTION_MIN:g} and a copying "
                 f"gain >= {COPY_GAIN_MIN:g} nat), so the probes cannot show repetition damaging them here; the "
                 "`mechanism` preset trains models that do.")  # fmt: skip
    else:
        line += f" Induction heads formed in: {', '.join(b['size'] for b in formed)}."
    return [line]


INDUCTION_MIN, COPY_GAIN_MIN = 0.15, 1.0
"""A baseline 'has induction heads' when its best head's prefix-matching score is at least 0.15 (about 5x a
uniform head's on the probe) and later copies of a random passage cost at least 1 nat less than the first."""


def induction_formed(b: dict) -> bool:
    gain = b.get("copy_loss_first", 0.0) - b.get("copy_loss_later", 0.0)
    return b.get("induction_max", 0.0) >= INDUCTION_MIN and gain >= COPY_GAIN_MIN
