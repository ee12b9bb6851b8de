"""`train.init_from`: start a run from another model's weights (fine-tuning), the optimizer fresh.

The source is a run id / id prefix / name in the work directory's store, a run folder, a `ckpt`
folder or a `step_*` checkpoint folder, or `run:NAME[@CONFIG_HASH]`: the completed run of that name
in the same group (a study's later stage names an earlier one so; with the hash, only that exact
config, so that a fine-tune never starts from a stale run of the same name). As in Hernandez et al.
2021 (arXiv 2102.01293) only the weights transfer: the tokenizer and the model's shape must be the
same, else a `UserError` says what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from scalelab.data import tokenizers as tk
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig
from scalelab.store import RUN_REF
from scalelab.train.checkpoint import _checkpoint_folder, load_weights, resolve_run_folder


def _group_run(ref: str, workdir: Path, run_id: str | None, group: str | None) -> Path:
    """The run folder of `run:NAME[@HASH]`: the newest completed run of that name in the group."""
    from scalelab.store import RunStore, completed_group_run

    name, _, want_hash = ref[len(RUN_REF) :].partition("@")
    if group is None and run_id is not None and (workdir / "scalelab.db").is_file():
        store = RunStore.in_workdir(workdir, readonly=True)
        try:
            own = store.get_run(run_id)
        finally:
            store.close()
        group = own["grp"] if own else None
    run = completed_group_run(workdir, name, group, want_hash or None, f"train.init_from={ref!r}")
    return workdir / "runs" / run["id"]


def resolve_init_from(ref: str, workdir: str | Path, run_id: str | None = None, group: str | None = None) -> Path:
    """The checkpoint folder (`step_*`) that `train.init_from` names; a UserError when there is none."""
    workdir = Path(workdir)
    folder = _group_run(ref, workdir, run_id, group) if ref.startswith(RUN_REF) else resolve_run_folder(ref, workdir)
    return _checkpoint_folder(folder)


def load_initial_weights(model: GPT, folder: Path, tokenizer, device) -> dict:
    """Copy the weights of checkpoint `folder` into `model` after checking tokenizer and shape; return
    {"path", "model"} of the source for the run's summary."""
    try:
        theirs = json.loads((folder / "model.json").read_text())
        their_tok = tk.load_spec(folder / "tokenizer.json")
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"train.init_from: {folder} is not a readable checkpoint ({e}); use another one") from None
    if their_tok.spec() != tokenizer.spec():
        raise UserError(
            f"train.init_from: {folder} was trained with a {their_tok.kind} tokenizer of {their_tok.vocab_size} "
            f"tokens, this run uses a {tokenizer.kind} tokenizer of {tokenizer.vocab_size}: weights transfer only "
            "with the same tokenizer; set data.tokenizer to the one of the source run"
        )
    ours = model.cfg.to_dict()
    theirs = GPTConfig(**theirs).to_dict()
    diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
    if diff:
        text = ", ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in sorted(diff.items()))
        raise UserError(f"train.init_from: the model in {folder} has another shape ({text}); "
                        "use the same model settings as the source run")  # fmt: skip
    load_weights(model, folder, device)
    return {"path": str(folder), "model": theirs}
