"""The model card (README.md) of an exported model: what the store knows about the run."""

from __future__ import annotations

import json
from pathlib import Path

from scalelab.plain import to_plain


def run_record(workdir: Path | None, run_id: str | None) -> dict | None:
    """The store row of the run (read-only), or None when there is no store or no such run."""
    if workdir is None or run_id is None or not (Path(workdir) / "scalelab.db").is_file():
        return None
    from scalelab.store import RunStore

    store = RunStore.in_workdir(workdir, readonly=True)
    try:
        return store.get_run(run_id)
    finally:
        store.close()


def _num(v) -> str:
    return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def model_card(hf_class: str, info: dict, run: dict | None, diffs: dict[str, float]) -> str:
    """Markdown: the architecture, the run's data, tokens, FLOPs, final losses and full config."""
    lines = [
        "---", "library_name: transformers", "tags: [scalelab]", "---", "",
        f"# {run['name'] if run else Path(info['path']).name}", "",
        f"Exported by scalelab from `{info['path']}` (step {info['step']}) as `{hf_class}`: the same function as "
        f"scalelab's `{info['model']['recipe']}` recipe; largest logit difference after export "
        + ", ".join(f"{k}: {v:.2e}" for k, v in diffs.items()) + " (fp32).", "",
        "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(PATH)", "tokenizer = AutoTokenizer.from_pretrained(PATH)", "```",
        "", f"Tokenizer: scalelab `{info['tokenizer']}` ({info['vocab_size']} tokens).", "",
    ]  # fmt: skip
    if run is None:
        lines += ["No run record was found (exported from a folder outside a work directory).", ""]
    else:
        s, cfg = run.get("summary") or {}, run.get("config") or {}
        data = cfg.get("data", {})
        rows = [("run id", run["id"]), ("status", run["status"]), ("group", run.get("grp")),
                ("data source", data.get("source")), ("tokenizer", data.get("tokenizer")),
                ("parameters", run.get("params")), ("non-embedding parameters", run.get("params_nonembed")),
                ("training tokens", run.get("tokens")), ("training FLOPs", run.get("flops")),
                ("final train loss", run.get("final_train_loss")), ("final val loss", run.get("final_val_loss")),
                ("best val loss", s.get("best_val_loss")), ("git commit", run.get("git_commit"))]  # fmt: skip
        lines += ["## Training run", "", "| | |", "|---|---|"] + [f"| {k} | {_num(v)} |" for k, v in rows] + [""]
        lines += ["## Config", "", "```json", json.dumps(to_plain(cfg), indent=1), "```", ""]
    return "\n".join(lines)
