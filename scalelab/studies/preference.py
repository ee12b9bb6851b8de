"""Askell et al. 2021 (arXiv 2112.00861): ranked PM vs binary discrimination vs imitation, with and without PMP.

Method, as in the paper's sections 4 and 5, on a gold-known task:

1. Pre-train GPT backbones of several sizes on the embedded corpus (the Python standard library).
2. Build the code-validity comparison set (a function that parses preferred to a minimally broken
   copy) and split it by source document into train and test.
3. Train preference models with each objective (ranked, binary, imitation) on every backbone, and
   on the largest one with growing numbers of training comparisons.
4. PMP: pre-train the ranked PM on a binarised automatic set drawn from the train documents only
   (corrupted passages by default) and fine-tune on the target; compare accuracy vs comparisons.
5. Report held-out accuracy with 95% bootstrap intervals, calibration (ECE, reliability diagrams)
   and a fit of Acc = a + b log N + c log D (Bai et al. 2022, arXiv 2204.05862).

Every PM and backbone is a run in the store; re-running reuses finished runs by config hash.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path

import numpy as np

from scalelab.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OBJECTIVE_STYLE = {"ranked": "C0", "binary": "C1", "imitation": "C2"}


@dataclass
class PreferenceSpec:
    """What the study runs; presets live beside this file (preference_quick.toml, preference_full.toml)."""

    sizes: list[str] = field(default_factory=lambda: ["3xs", "2xs", "xs"])
    context: int = 128
    corpus: str = "stdlib"
    corpus_max_documents: int | None = None
    pretrain_iters: int = 300
    pretrain_batch: int = 16
    target: str = "code:stdlib"
    data_max: int = 3000
    test_fraction: float = 0.25
    n_train: int = 1024
    n_test: int = 400
    efficiency_n: list[int] = field(default_factory=lambda: [32, 128, 1024])
    objectives: list[str] = field(default_factory=lambda: ["ranked", "binary", "imitation"])
    pmp: str | None = "corruptions:stdlib"
    pmp_max: int = 1000
    pmp_lr: float = 1e-3
    pmp_formats: list[str] = field(default_factory=lambda: ["binary", "ranked"])
    """PMP variants: 'binary' (the paper's binarised set) and/or 'ranked' (the automatic pairs as they are)."""
    lr: float = 3e-4
    batch_size: int = 16
    min_steps: int = 16
    seed: int = 0
    threads: int | None = None
    device: str = "auto"


def load_spec(preset: str, spec: Path | None) -> PreferenceSpec:
    """The preset's TOML, with the keys of ``spec`` (a TOML file) on top."""
    path = resources.files("scalelab.studies") / f"preference_{preset}.toml"
    if not path.is_file():
        raise UserError(f"unknown preset {preset!r} for the preference study; use quick or full")
    raw = tomllib.loads(path.read_text())
    if spec is not None:
        if not Path(spec).is_file():
            raise UserError(f"spec file not found: {spec}; pass a TOML file with keys of the preference study")
        try:
            raw.update(tomllib.loads(Path(spec).read_text()))
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{spec} is not valid TOML: {e}") from None
    known = {f.name for f in fields(PreferenceSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"unknown keys {unknown} in the preference spec; valid keys: {', '.join(sorted(known))}")
    out = PreferenceSpec(**raw)
    bad = [o for o in out.objectives if o not in ("ranked", "binary", "imitation")]
    bad_pmp = [f for f in out.pmp_formats if f not in ("binary", "ranked")]
    if bad or bad_pmp or not out.sizes or not out.efficiency_n:
        raise UserError(f"need objectives among ranked, binary, imitation (got {bad or out.objectives}), "
                        f"pmp_formats among binary, ranked (got {out.pmp_formats}), and non-empty sizes and "
                        "efficiency_n")
    return out


# ----------------------------------------------------------------------------- plan


def backbone_config(spec: PreferenceSpec, size: str):
    """The LM pre-training run of one backbone (the modern recipe with Muon, as the demo preset)."""
    from scalelab.config import load_config

    it = spec.pretrain_iters
    return load_config(None, [
        f"name='pref-backbone-{size}'", f"data.source='{spec.corpus}'", "data.tokenizer='byte'",
        f"model.size='{size}'", "model.recipe='modern'", f"model.block_size={spec.context}",
        f"train.iters={it}", f"train.batch_size={spec.pretrain_batch}", "train.optimizer='muon'", "train.lr=3e-3",
        "train.muon_lr=0.02", "train.min_lr=1e-4", f"train.warmup_iters={min(30, it // 5)}", "train.weight_decay=0.0",
        "train.schedule='wsd'", f"train.eval_every={it}", "train.eval_batches=10", f"train.ckpt_every={it}",
        f"train.log_every={max(1, it // 10)}", f"train.seed={spec.seed + 1337}", f"train.device='{spec.device}'",
        *([f"train.threads={spec.threads}"] if spec.threads else []),
        *([f"data.max_documents={spec.corpus_max_documents}"] if spec.corpus_max_documents else []),
    ])  # fmt: skip


def ensure_backbone(spec: PreferenceSpec, size: str, workdir: Path, group: str, progress: bool) -> dict:
    """A finished backbone run of this config (reused from the store if there is one), as its summary."""
    from scalelab.store import RunStore
    from scalelab.train.loop import train

    cfg = backbone_config(spec, size)
    for run in reversed(RunStore.in_workdir(workdir).find_runs(config_hash=cfg.config_hash(), status="completed")):
        if (workdir / "runs" / run["id"] / "ckpt").is_dir():
            return {**run["summary"], "reused": True}
    return train(cfg, workdir, group=group, progress=progress)


def build_sets(spec: PreferenceSpec, workdir: Path) -> dict[str, Path]:
    """Target train/test files and the PMP file, built once per data spec (files never rewritten).

    Documents are split by a hash (`in_test_split`); the target's test pairs come from test
    documents only and the PMP set from train documents only, so PMP never sees a test function.
    """
    from scalelab.align.backbones import fresh_gpt_backbone
    from scalelab.align.pm import PreferenceModel
    from scalelab.align.pm_data import build_automatic, in_test_split, split_set
    from scalelab.data.comparisons import save_comparisons

    key = {k: getattr(spec, k) for k in ("context", "corpus", "target", "data_max", "test_fraction", "pmp",
                                         "pmp_max", "seed")}  # fmt: skip
    folder = workdir / "studies" / "preference" / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    paths = {"train": folder / "target_train.jsonl", "test": folder / "target_test.jsonl", "pmp": folder / "pmp.jsonl",
             "info": folder / "sets.json"}
    if paths["info"].exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    backbone, tokenizer = fresh_gpt_backbone("3xs", spec.context)
    encoder = PreferenceModel(backbone, tokenizer)

    def fits(c) -> bool:
        return not any(encoder.encode(c.prompt, r).truncated for r in (c.chosen, c.rejected))

    target = build_automatic(spec.target, seed=spec.seed, max_pairs=spec.data_max, fits=fits)
    train, test = split_set(target.comparisons, spec.test_fraction, spec.seed)
    info: dict = {}
    if spec.pmp is not None:
        keep = lambda i: not in_test_split(f"doc:{i}", spec.test_fraction, spec.seed)  # noqa: E731
        pmp = build_automatic(spec.pmp, seed=spec.seed + 7, max_pairs=spec.pmp_max, fits=fits,
                              max_chars=int(0.9 * spec.context), keep_doc=keep)  # fmt: skip
        _save_once(pmp.comparisons, paths["pmp"], save_comparisons)
        info.update(n_pmp=len(pmp.comparisons), n_pmp_filtered_long=pmp.n_filtered_long)
    _save_once(train, paths["train"], save_comparisons)
    _save_once(test, paths["test"], save_comparisons)
    info.update(n_target=len(target.comparisons), n_target_filtered_long=target.n_filtered_long,
                n_target_train=len(train), n_target_test=len(test))
    _save_once(info, paths["info"], lambda obj, path: Path(path).write_text(json.dumps(obj)))
    return paths


def _save_once(comparisons, path: Path, save) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save(comparisons, tmp)
    tmp.replace(path)


def pm_spec(spec: PreferenceSpec, sets: dict[str, Path], base: str, objective: str, n_train: int, group: str,
            pmp: str | None = None, tag: str = ""):  # fmt: skip
    from scalelab.align.pm_run import PMRunSpec
    from scalelab.align.pm_train import PMTrainConfig

    train = PMTrainConfig(objective=objective, epochs=1.0, min_steps=spec.min_steps, batch_size=spec.batch_size,
                          lr=spec.lr, seed=spec.seed, warmup_steps=min(10, spec.min_steps // 2))  # fmt: skip
    return PMRunSpec(data=str(sets["train"]), objective=objective, format="generic", test=str(sets["test"]),
                     max_train=n_train, max_test=spec.n_test, base=base, pmp=str(sets["pmp"]) if pmp else None,
                     pmp_max=None, pmp_lr=spec.pmp_lr, pmp_binary=pmp != "ranked", train=train, device=spec.device,
                     threads=spec.threads, name=f"pref-{objective}{f'-{pmp}pmp' if pmp else ''}{tag}-n{n_train}",
                     group=group)  # fmt: skip


# ----------------------------------------------------------------------------- run


def run_study(preset: str = "quick", spec: Path | None = None, workdir: Path = Path("scalelab-work"),
              progress: bool = False) -> dict:  # fmt: skip
    """Run (or reuse) every backbone and PM of the study, write the report; returns numbers and paths."""
    from scalelab.align.pm_run import run_pm

    t0 = time.perf_counter()
    s = load_spec(preset, spec)
    workdir = Path(workdir)
    group = f"study:preference:{preset}"
    sets = build_sets(s, workdir)
    backbones = {size: ensure_backbone(s, size, workdir, group, progress) for size in s.sizes}
    largest = s.sizes[-1]
    rows = []

    def pm(size: str, objective: str, n: int, pmp: str | None = None, base: str | None = None,
           grid: bool = False) -> dict:  # fmt: skip
        """One PM run; ``pmp`` names the PMP variant, run here or (with ``base``) already in ``base``."""
        stage = pmp if base is None else None
        base = base or str(workdir / "runs" / backbones[size]["run_id"])
        run = run_pm(pm_spec(s, sets, base, objective, n, group, stage, "" if stage or not pmp else "-ft"), workdir,
                     progress=progress, reuse=True)  # fmt: skip
        row = {"size": size, "params": backbones[size]["params"], "objective": objective, "pmp": pmp,
               "n_train": run["n_train"], "accuracy": run["accuracy"], "lo": run["accuracy_ci"][0],
               "hi": run["accuracy_ci"][1], "ece": run["ece"], "n_test": run["n_test"], "run_id": run["run_id"],
               "pm_path": run["pm_path"], "pmp_accuracy": run.get("pmp_accuracy"), "pmp_path": run.get("pmp_path"),
               "pairs_per_s": run.get("pairs_per_s"), "reused": bool(run.get("reused")), "grid": grid}  # fmt: skip
        rows.append(row)
        return row

    for size in s.sizes:
        for objective in s.objectives:
            pm(size, objective, s.n_train, grid=True)
        if s.pmp and s.pmp_formats and "ranked" in s.objectives:
            pm(size, "ranked", s.n_train, pmp=s.pmp_formats[0], grid=True)
    variants = s.pmp_formats if s.pmp and "ranked" in s.objectives else []
    for v in variants[1:]:  # the other PMP variants' stages, on the largest backbone only
        pm(largest, "ranked", s.n_train, pmp=v)
    bases = {r["pmp"]: r["pmp_path"] for r in rows if r["pmp"] and r["size"] == largest}
    for n in s.efficiency_n:
        for objective in s.objectives:
            if n != s.n_train:
                pm(largest, objective, n)
            for v in variants if objective != "imitation" else []:
                if n != s.n_train or objective != "ranked":
                    pm(largest, objective, n, pmp=v, base=bases[v])
    zero_shot = [zero_shot_row(s, sets, size, backbones[size]) for size in s.sizes]
    results = analyze(s, rows, zero_shot, backbones)
    results["data"] = json.loads(sets["info"].read_text())
    results["wall_s"] = time.perf_counter() - t0
    report = workdir / "reports" / f"preference-{preset}.html"
    write(results, report, preset)
    results.update(report=str(report), preset=preset, spec=asdict(s))
    return results


def zero_shot_row(spec: PreferenceSpec, sets: dict[str, Path], size: str, backbone: dict) -> dict:
    """The pre-trained LM before any preference training, choosing by log-probability."""
    from scalelab.align.backbones import GPTBackbone
    from scalelab.align.pm import PreferenceModel, encode_pairs
    from scalelab.align.pm_data import load_set
    from scalelab.align.pm_train import evaluate_pm
    from scalelab.train.checkpoint import load_model_from_checkpoint

    model, tokenizer, _ = load_model_from_checkpoint(backbone["run_dir"])
    lm = PreferenceModel(GPTBackbone(model), tokenizer, "imitation")
    test = load_set(str(sets["test"]), format="generic", max_pairs=spec.n_test).comparisons
    ev = evaluate_pm(lm, encode_pairs(lm, test), seed=spec.seed)
    return {"size": size, "params": backbone["params"], "objective": "LM log-prob (no PM training)",
            "accuracy": ev.accuracy.value, "lo": ev.accuracy.ci[0], "hi": ev.accuracy.ci[1], "ece": ev.calibration.ece,
            "backbone_run": backbone["run_id"], "val_loss": backbone.get("final_val_loss")}  # fmt: skip


# ----------------------------------------------------------------------------- analyze


def analyze(spec: PreferenceSpec, rows: list[dict], zero_shot: list[dict], backbones: dict) -> dict:
    """Plain results: the size grid, the efficiency curves, the headline and the accuracy fit."""
    from scalelab.evals.pm_scaling import fit_pm_accuracy

    largest = spec.sizes[-1]
    by_size = sorted((r for r in rows if r["grid"]), key=lambda r: (r["params"], r["objective"], r["pmp"] or ""))
    efficiency = sorted((r for r in rows if r["size"] == largest),
                        key=lambda r: (r["objective"], r["pmp"] or "", r["n_train"]))  # fmt: skip
    efficiency = list({(r["objective"], r["pmp"], r["n_train"]): r for r in efficiency}.values())
    pmp_stages = [r for r in rows if r.get("pmp_accuracy") is not None]
    head = next((r for r in by_size if r["size"] == largest and r["objective"] == "ranked" and not r["pmp"]), None)
    fit = None
    ranked = [r for r in rows if r["objective"] == "ranked" and not r["pmp"]]
    if len({r["params"] for r in ranked}) > 1 and len({r["n_train"] for r in ranked}) > 1 and len(ranked) >= 4:
        try:
            f = fit_pm_accuracy([r["params"] for r in ranked], [r["n_train"] for r in ranked],
                                [r["accuracy"] for r in ranked], seed=spec.seed)  # fmt: skip
            fit = {"a": f.a, "b": f.b, "c": f.c, "ci": f.ci, "rmse": f.rmse, "n_points": f.n_points}
        except UserError as e:
            fit = {"error": str(e)}
    backbone_rows = [{"size": k, "params": v["params"], "val_loss": v.get("final_val_loss"), "run_id": v["run_id"],
                      "reused": bool(v.get("reused"))} for k, v in backbones.items()]  # fmt: skip
    return {"by_size": by_size, "efficiency": efficiency, "zero_shot": zero_shot, "headline": head, "fit": fit,
            "backbones": backbone_rows, "pmp_stages": pmp_stages,
            "summary": summary_text(spec, by_size, efficiency, zero_shot, head, pmp_stages)}


def _label(r: dict) -> str:
    return r["objective"] + (f" + {r['pmp']} PMP" if r.get("pmp") else "")


def _line(label: str) -> str:
    return "--" if "binary PMP" in label else "-." if "ranked PMP" in label else ":" if "LM" in label else "-"


def _fmt(r: dict) -> str:
    return f"{r['accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def summary_text(spec: PreferenceSpec, by_size: list[dict], efficiency: list[dict], zero_shot: list[dict],
                 head: dict | None, pmp_stages: list[dict]) -> str:  # fmt: skip
    largest = spec.sizes[-1]
    lines = [f"Preference models on {spec.target} (held-out accuracy, 95% bootstrap CI; chance = 0.5)."]
    if head:
        lines.append(f"Headline: ranked PM on the {largest} backbone ({head['params']:,} params), {spec.n_train} "
                     f"comparisons: {_fmt(head)}, ECE {head['ece']:.3f}, run {head['run_id']}.")
    at_largest = sorted((r for r in by_size if r["size"] == largest), key=lambda r: -r["accuracy"])
    order = " > ".join(f"{_label(r)} {_fmt(r)}" for r in at_largest)
    lines.append(f"Order at {largest}, n={spec.n_train}: {order}.")
    z = next((r for r in zero_shot if r["size"] == largest), None)
    if z:
        lines.append(f"The {largest} LM alone, choosing by log-probability: {_fmt(z)}.")
    for n in spec.efficiency_n:
        runs = {r["pmp"]: r for r in efficiency if r["objective"] == "ranked" and r["n_train"] == n}
        if None in runs and len(runs) > 1:
            with_pmp = ", ".join(f"{v} PMP {_fmt(r)}" for v, r in runs.items() if v)
            lines.append(f"Ranked PM, n={n}: no PMP {_fmt(runs[None])}; {with_pmp}.")
    if pmp_stages:
        lines.append("PMP stages, held-out accuracy on their own (automatic) task: " + ", ".join(
            f"{r['size']} {r['pmp']} {r['pmp_accuracy']:.3f}" for r in pmp_stages) + ".")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- figures and report


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
    ax.legend(fontsize=8)
    return fig


def figures(results: dict) -> list:
    """Accuracy vs size per objective, accuracy vs comparisons per objective, reliability diagrams."""
    size = results["efficiency"][0]["size"] if results["efficiency"] else ""
    return [
        accuracy_figure(results["by_size"] + results["zero_shot"], "params", "backbone parameters",
                        "PM accuracy vs model size"),
        accuracy_figure(results["efficiency"], "n_train", "fine-tuning comparisons",
                        f"Sample efficiency ({size} backbone), with and without PMP"),
        *reliability_figures(results),
    ]  # fmt: skip


def reliability_figures(results: dict) -> list:
    from scalelab.evals.calibration import calibration, reliability_figure

    figs = []
    largest = [r for r in results["by_size"] if r["size"] == results["by_size"][-1]["size"] and not r["pmp"]]
    for r in sorted(largest, key=lambda r: r["objective"]):
        scores = json.loads((Path(r["pm_path"]).parent / "scores.json").read_text())
        cal = calibration(scores["chosen"], scores["rejected"])
        figs.append(reliability_figure(cal, f"{r['objective']} ({r['size']}): ECE {cal.ece:.3f}, {cal.n_pairs} pairs"))
    return figs


def _data_text(info: dict) -> str:
    text = (f"Data: {info.get('n_target')} target pairs ({info.get('n_target_filtered_long')} candidates longer than "
            f"the context left out, counted), {info.get('n_target_train')} train / {info.get('n_target_test')} test, "
            "split by source document.")
    if "n_pmp" in info:
        text += (f" PMP set: {info['n_pmp']} pairs from the train documents only ({info['n_pmp_filtered_long']} "
                 "too long, left out).")
    return text


def write(results: dict, path: Path, preset: str) -> Path:
    from scalelab.report import Section, write_report

    figs = figures(results)
    pm_rows = {r["run_id"]: r for r in results["by_size"] + results["efficiency"]}.values()
    n_reused = sum(r["reused"] for r in pm_rows)
    cols = ("size", "params", "objective", "pmp", "n_train", "accuracy", "lo", "hi", "ece", "run_id")
    table = lambda rows: [{c: r.get(c) for c in cols} for r in rows]  # noqa: E731
    fit = results["fit"] or {}
    fit_text = ("Acc = a + b ln(N/1e11) + c ln(D/8e4) over the ranked PMs: " +
                (f"a={fit['a']:.3f}, b={fit['b']:.4f} {fit['ci']['b']}, c={fit['c']:.4f} {fit['ci']['c']}, "
                 f"rmse {fit['rmse']:.3f} (natural logs); Bai et al. 2022 report b=0.007, c=0.015 for "
                 "helpfulness PMs of 1e7 to 5e10 parameters."
                 if "a" in fit else fit.get("error", "not enough points")))  # fmt: skip
    sections = [
        Section("Summary", results["summary"] + f"\n\n{_data_text(results.get('data', {}))}\nWall time "
                f"{results['wall_s']:.0f} s; {n_reused} of {len(pm_rows)} PM runs reused from the store."),
        Section("Accuracy vs model size", "Every objective on every backbone, the same training comparisons; "
                "the dotted line is the pre-trained LM alone choosing the higher log-probability. Summed "
                "log-probabilities favour shorter texts, and a broken function is usually one character shorter "
                "than the original (a dropped colon, bracket or quote), which can put a weak LM below chance.",
                figures=[figs[0]], tables=[table(results["by_size"]), results["zero_shot"]]),
        Section("Accuracy vs number of comparisons", "Largest backbone. Dashed: after preference-model "
                "pre-training on the binarised automatic set (Askell et al. 2021 section 5); dash-dot: after PMP "
                "on the same pairs unbinarised. " + fit_text,
                figures=[figs[1]], tables=[table(results["efficiency"]), [{k: r.get(k) for k in (
                    "size", "pmp", "pmp_accuracy", "run_id")} for r in results["pmp_stages"]]]),
        Section("Calibration", "Folded reliability diagrams of P(A > B) = sigmoid(r_A - r_B) on held-out pairs "
                "(for imitation, r is the summed log-probability, which is not trained to be calibrated).",
                figures=figs[2:]),
        Section("Backbones", "Language models pre-trained on the embedded corpus.", tables=[results["backbones"]]),
    ]  # fmt: skip
    return write_report(path, f"Preference models (Askell et al. 2021), preset {preset}", sections)
