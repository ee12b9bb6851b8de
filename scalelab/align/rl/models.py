"""The models of an RL run: the policy (and its frozen reference), the proxy PM, the eval PMs, a gold reward.

Each is named like a PM run's base: a run id / name in the work directory's store, a run or
checkpoint folder, or ``run:NAME`` (the completed run of that name in the same sweep group, with
the config hash the plan expects when ``run_hashes`` gives one). Every PM must share the policy's
tokenizer, and must be a PM: a language-model run in its place is an error naming the fix.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from scalelab.align.pm import PreferenceModel, find_pm_folder
from scalelab.align.rl.config import RUN_REF, RLRunSpec
from scalelab.align.rl.rewards import RewardFn, check_same_tokenizer
from scalelab.errors import UserError
from scalelab.model.gpt import GPT
from scalelab.store import completed_group_run
from scalelab.train.checkpoint import load_for_inference, resolve_run_folder

DEFAULT_LR = 1e-5


def resolve_ref(ref: str, spec: RLRunSpec, workdir: Path) -> Path:
    """A folder for a model reference; ``run:NAME`` is looked up (read-only) in the spec's group."""
    if not ref.startswith(RUN_REF):
        return resolve_run_folder(ref, workdir)
    name = ref[len(RUN_REF) :]
    want = spec.run_hashes.get(ref) or spec.run_hashes.get(name)
    return workdir / "runs" / completed_group_run(workdir, name, spec.group, want, repr(ref))["id"]


def _pretraining_lr(folder: Path) -> float | None:
    """The learning rate the policy was trained with, from its run's config.json (LM or RL run)."""
    for run_dir in (folder, folder.parent, folder.parent.parent):
        path = run_dir / "config.json"
        if path.is_file():
            try:
                cfg = json.loads(path.read_text())
            except ValueError:
                return None
            lr = cfg.get("train", {}).get("lr") if isinstance(cfg.get("train"), dict) else cfg.get("lr")
            return float(lr) if isinstance(lr, (int, float)) else None
    return None


def load_policy(spec: RLRunSpec, workdir: Path) -> tuple[GPT, GPT, object, dict]:
    """(policy in train mode, frozen reference copy, tokenizer, info with 'path', 'lr', 'pretrain_lr')."""
    folder = resolve_ref(spec.policy, spec, workdir)
    if find_pm_folder(folder) is not None:
        raise UserError(f"policy {spec.policy!r} is a preference model, not a language model; give an LM run "
                        "(scalelab train) as --policy")  # fmt: skip
    model, tokenizer, info = load_for_inference(folder, workdir, "cpu")
    pre_lr = _pretraining_lr(Path(info["path"]))
    lr = spec.lr if spec.lr is not None else (0.01 * pre_lr if pre_lr else DEFAULT_LR)
    if spec.reference is None:
        reference = copy.deepcopy(model)
    else:
        reference, ref_tokenizer, _ = load_for_inference(resolve_ref(spec.reference, spec, workdir), workdir, "cpu")
        check_same_tokenizer(tokenizer, ref_tokenizer, f"reference {spec.reference!r}")
    reference = reference.eval().requires_grad_(False)
    return model.train(), reference, tokenizer, {**info, "lr": lr, "pretrain_lr": pre_lr}


def load_scorer(ref: str, spec: RLRunSpec, workdir: Path, policy_tokenizer, what: str) -> PreferenceModel:
    """A saved PM (frozen, eval mode) sharing the policy's tokenizer; `what` names it in errors."""
    folder = resolve_ref(ref, spec, workdir)
    pm_folder = find_pm_folder(folder)
    if pm_folder is None:
        raise UserError(f"{what} {ref!r} ({folder}) is not a preference-model run (no pm.json): train one with "
                        "`scalelab pm train --base POLICY_RUN --data ...` and pass that run")  # fmt: skip
    pm = PreferenceModel.load(pm_folder)
    check_same_tokenizer(policy_tokenizer, pm.tokenizer, f"{what} {ref!r}")
    return pm.eval().requires_grad_(False)


def gold_reward_fn(name: str) -> RewardFn:
    """The gold reward of that name (scalelab.align.gold, imported only when a spec names one)."""
    try:
        from scalelab.align.gold import gold_reward
    except ImportError as e:
        raise UserError(f"gold reward {name!r} needs scalelab.align.gold, which is not available here ({e})") from None
    return gold_reward(name)
