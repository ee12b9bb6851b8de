"""The assistant study's results: per size, the plain model without and with the prompt and its
context-distilled student, on the format choice, the loss (alignment tax), the PMs trained from
each, the distillation's KL, and OOD AUROC per layer; matched to the plan by name and config hash."""

from __future__ import annotations

import json
from pathlib import Path

from scalelab.studies.assistant.config import Config
from scalelab.studies.assistant.measure import STARTS, measure_size, ood_by_size
from scalelab.studies.assistant.plan import corpus_path, data_folder, plan


def analyze(store, config: Config) -> dict:
    """Plain results from the completed runs of the plan; the evaluations load each size's checkpoints."""
    from scalelab.prompting import load_prompt

    workdir = Path(store.path).parent
    planned = plan(config, workdir)
    done = {(r["name"], r["config_hash"]): r for r in store.find_runs(group=config.name, status="completed")}
    found = {p.name: (p, done.get((p.name, p.config_hash))) for p in planned}
    missing = [name for name, (_, run) in found.items() if run is None]
    prompt = load_prompt(config.prompt)
    corpus = str(corpus_path(config, workdir))
    sizes = []
    for size in config.sizes:
        lm, student = found[f"lm-{size}"], found[f"distill-{size}"]
        if lm[1] is None or student[1] is None:
            continue
        row = {"size": size, "params": lm[0].params, "params_nonembed": lm[0].params_nonembed,
               "lm_run": lm[1]["id"], "distill_run": student[1]["id"], "lm_val_loss": lm[1].get("final_val_loss")}
        s = student[1]["summary"]
        row["distill"] = {k: s.get(k) for k in ("kl_before", "kl_after", "kl_factor", "alignment_tax", "tokens",
                                                "tokens_per_s", "top_k", "window", "prompt_tokens", "context")}
        row.update(measure_size(workdir / "runs" / lm[1]["id"], workdir / "runs" / student[1]["id"], prompt, config,
                                corpus))  # fmt: skip
        row["pm"] = {}
        for start in STARTS:
            p, run = found[f"pm-{start}-{size}"]
            if run is not None:
                sm = run["summary"]
                row["pm"][start] = {"accuracy": sm["accuracy"], "ci": sm.get("accuracy_ci"), "n_test": sm.get("n_test"),
                                    "n_truncated": sm.get("n_truncated"), "run_id": run["id"]}  # fmt: skip
        row["ood"] = ood_by_size(workdir / "runs" / lm[1]["id"], config)
        sizes.append(row)
    info = data_folder(config, workdir) / "data.json"
    results = {"design": {"sizes": list(config.sizes), "prompt": prompt.source, "prompt_digest": prompt.digest,
                          "top_k": config.top_k, "pm_target": config.pm_target, "ood_benchmark": config.ood_benchmark},
               "data": json.loads(info.read_text()) if info.is_file() else {}, "by_size": sizes,
               "missing": missing}  # fmt: skip
    results["summary"] = summary(results)
    return results


def summary(results: dict) -> str:
    """A few lines: per size, the format choice and probe, the KL factor, the alignment tax, the PMs."""
    lines = [f"Prompt {Path(results['design']['prompt']).name}: plain model without / with the prompt vs its "
             "context-distilled student without it."]  # fmt: skip
    for r in results["by_size"]:
        c, u, d = r["choice"], r["upper_share"], r["distill"]
        kl = f"KL {d['kl_before']:.4f} -> {d['kl_after']:.4f} (x{d['kl_factor']:.1f} lower)" if d.get("kl_factor") \
            else "KL n/a"  # fmt: skip
        lines.append(
            f"{r['size']} ({r['params']:,} params): format choice plain {c['plain']:.2f} / prompted {c['prompted']:.2f}"
            f" / distilled {c['distilled']:.2f}; capitals written {u['plain']:.2f} / {u['prompted']:.2f} / "
            f"{u['distilled']:.2f}; {kl}; alignment tax {r['tax']['distilled']['mean']:+.4f} nats "
            f"(CI {r['tax']['distilled']['ci'][0]:+.4f}, {r['tax']['distilled']['ci'][1]:+.4f}), prompt's own "
            f"{r['tax']['prompted']['mean']:+.4f}."
        )  # fmt: skip
        if r["pm"]:
            pms = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in r["pm"].items())
            lines.append(f"  PM accuracy (held-out comparisons) starting from: {pms}.")
        if "error" in r["ood"]:
            lines.append(f"  OOD: {r['ood']['error']}")
        elif r["ood"].get("layers"):
            best = max(r["ood"]["layers"], key=lambda x: x["auroc"])
            lines.append(f"  OOD AUROC best at layer {best['layer']}: {best['auroc']:.3f}"
                         + (" (shrinkage covariance)" if r["ood"].get("shrinkage") else "") + ".")  # fmt: skip
    if results["missing"]:
        lines.append(f"Not finished ({len(results['missing'])} runs, left out): {', '.join(results['missing'][:8])}.")
    return "\n".join(lines)
