"""Checks that a run can be resumed with the config given now, and the record of what changed.

A run may be continued with other training settings (`--set train.lr=... --set train.iters=...`);
the store then holds the config that ran last, and the summary's `config_history` lists every
change: `[{"at": unix time, "step": resumed from, "changes": {"train.lr": [old, new]},
"config_hash": [old, new]}, ...]`.
"""

from __future__ import annotations

import time

from scalelab.config import RunConfig
from scalelab.errors import UserError
from scalelab.model.gpt import GPTConfig
from scalelab.model.sizes import resolve

# what may never change when a run is continued: the tokens and the model's shape
FROZEN_DATA = ("source", "text_field", "tokenizer", "vocab_size", "split", "val_fraction", "test_fraction",
               "max_documents", "repeat_fraction", "repeat_epochs", "repeat_unit", "train_tokens", "tasks")  # fmt: skip


def check_resumable(prior_config: dict, cfg: RunConfig, gpt_cfg: GPTConfig) -> None:
    """Refuse, naming each difference, when the tokenizer, data or model shape would change."""
    prior = RunConfig.model_validate(prior_config)
    diffs = []
    for key in FROZEN_DATA:
        a, b = getattr(prior.data, key), getattr(cfg.data, key)
        if a != b:
            diffs.append(f"data.{key}: {a!r} -> {b!r}")
    before = resolve(prior.model, gpt_cfg.vocab_size if prior.model.vocab_size is None else prior.model.vocab_size)
    for key, a in before.to_dict().items():
        b = getattr(gpt_cfg, key)
        if a != b and not (key == "vocab_size" and prior.model.vocab_size is None):
            diffs.append(f"model.{key}: {a!r} -> {b!r}")
    if diffs:
        raise UserError(
            "cannot resume: the tokenizer, data or model shape differs from the run's:\n  "
            + "\n  ".join(diffs)
            + "\nstart a new run instead, or resume with the original config"
        )


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_change(prior_config: dict, cfg: RunConfig, step: int) -> dict | None:
    """The `config_history` entry of resuming with `cfg` at `step`, or None when nothing changed."""
    prior = RunConfig.model_validate(prior_config)
    before, after = _flat(prior.to_dict()), _flat(cfg.to_dict())
    keys = sorted(set(before) | set(after))
    changes = {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}
    if not changes:
        return None
    hashes = [prior.config_hash(), cfg.config_hash()]
    return {"at": time.time(), "step": step, "changes": changes, "config_hash": hashes}
