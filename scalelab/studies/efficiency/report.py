"""The efficiency study's report sections: summary, figures, the compute-to-target table, the runs."""

from __future__ import annotations

import math

from scalelab.studies.efficiency.config import Config
from scalelab.studies.efficiency.figures import figures


def _flops(v: float | None) -> str:
    return "not reached" if v is None or not math.isfinite(v) else f"{v:.3g}"


def sections(results: dict, store, config: Config) -> list:
    """Summary, figures, compute to target per recipe and size (per seed), the dated table, the runs."""
    from scalelab.report import Section

    out = [Section("Summary", results["summary"]), Section("Figures", figures=figures(results, store))]
    if results.get("mode") == "paper_table":
        return out + [Section("The paper's table", results["source"], tables=[results["table"]])]
    rows = [{"recipe": t["recipe"], "size": t["size"], "params": t["params"],
             "seeds reaching target": f"{t['reached']}/{t['seeds']}", "FLOPs (geo. mean)": _flops(t["compute"]),
             "per seed": ", ".join(_flops(v) for v in t["per_seed"])} for t in results["compute_to_target"]]
    out.append(Section("Compute to target", "Training FLOPs at the first evaluation at or below the target loss "
                       f"{results['target_loss']:.4f}; a recipe counts at its best size.", tables=[rows]))
    if results.get("dated_table"):
        out.append(Section("Dated recipes", "The doubling-time fit's points (least squares of log2 FLOPs on date).",
                           tables=[results["dated_table"]]))
    runs = store.list_runs(["id", "name", "status", "params", "tokens", "flops", "final_val_loss"], config.name)
    return out + [Section("Runs", "Every number here traces back to these run ids.", tables=[runs])]
