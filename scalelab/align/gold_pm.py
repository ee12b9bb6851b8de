"""A proxy preference model trained on gold-labelled samples of a policy: one run of kind "gold-pm".

The gold-known setting of Gao et al. 2022 (arXiv 2210.10760): sample two responses per prompt
from a policy, let a noisy Bradley-Terry labeller on a gold reward (`scalelab.align.gold`) choose
between them, and train a proxy PM on those labels. Iterated online training (Bai et al. 2022,
arXiv 2204.05862, section 4.5) samples again from the RL policy of the last round and trains the
next PM on all labels so far, so a run takes a list of label sources.

Why a run kind and not a plan-time step: the samples come from policies that the same study trains
in an earlier stage (the pre-trained LM, then RL policies), which do not exist when the study is
planned. Labels are cached in ``<workdir>/labels/<key>.jsonl`` by what determines them (the
source's run id and config hash, sampling settings, gold reward, labeller, seed), so the train PM
and the test PM (two halves of one labelled set) and later online rounds sample each set once.

`gold_pm_worker(cfg_dict, workdir, run_id, threads)` (registered as kind "gold-pm") builds the
comparison file ``<run>/comparisons.jsonl`` and then trains an ordinary PM run on it
(`scalelab.align.pm_run.execute`), so the run folder is a PM run folder: RL runs take it as
``pm = "run:NAME"`` and DPO reads its comparisons from the saved PM's spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from scalelab.config import _Strict
from scalelab.data.comparisons import Comparison, load_comparisons, save_comparisons
from scalelab.errors import UserError
from scalelab.store import RUN_REF


class LabelSource(_Strict):
    """Comparisons sampled from one policy and labelled by the gold labeller."""

    policy: str
    """The policy sampled: 'run:NAME' (completed LM or RL run of the group), a run id or a checkpoint folder."""
    policy_hash: str | None = None
    """With 'run:NAME': the config hash that run must have (the study's plan sets it)."""
    n_pairs: int = Field(512, ge=1)
    """Pairs sampled (before identical pairs and ties are dropped)."""
    seed: int = 0
    """Seed of sampling and labelling."""
    half: Literal[0, 1] | None = None
    """Keep the even (0) or odd (1) pairs only: the train PM / test PM halves of one set (Bai et al. 2022)."""
    max_offered: int | None = Field(None, ge=1)
    """Keep only pairs among the first N offered to the labeller (the label budget; ties count as offered)."""


class GoldPMSpec(_Strict):
    """Everything one gold-labelled PM run depends on; hashed (without name, group, threads) to reuse it."""

    name: str = "gold-pm"
    group: str | None = None
    sources: list[LabelSource] = Field(min_length=1)
    """Where the labels come from, concatenated in order (online rounds: every round so far)."""
    gold: str = "balanced"
    """Gold reward name (scalelab.align.gold.GOLD_REWARDS)."""
    label_temperature: float = Field(0.1, ge=0)
    """Bradley-Terry labeller temperature: P(A > B) = sigmoid((g_A - g_B) / T); 0 = noiseless."""
    drop_ties: bool = True
    """Drop pairs of equal gold score instead of labelling them by a coin flip."""
    prompts: str = "builtin"
    """Prompts (as an RL run's `prompts`); the RL eval prompts are never sampled for labels."""
    n_prompts: int = Field(256, ge=1)
    eval_prompts: int = Field(16, ge=1)
    """Held-out RL eval prompts, kept out of the labelled set (the same split as the RL runs)."""
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = None
    pm: dict = Field(default_factory=dict)
    """The PM run (scalelab.align.pm_run.PMRunSpec fields except data/name/group), e.g. base, train."""
    threads: int | None = None

    def to_dict(self) -> dict:
        return self.model_dump()

    def config_hash(self) -> str:
        d = self.to_dict()
        for key in ("name", "group", "threads"):
            d.pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_policy(ref: str, want_hash: str | None, group: str | None, workdir: Path) -> tuple[Path, str]:
    """(folder, identity) of a policy reference; 'run:NAME' is the completed run of that name in the group."""
    from scalelab.store import completed_group_run
    from scalelab.train.checkpoint import resolve_run_folder

    if not ref.startswith(RUN_REF):
        folder = resolve_run_folder(ref, workdir)
        return folder, str(folder.resolve())
    run = completed_group_run(workdir, ref[len(RUN_REF) :], group, want_hash, f"label source {ref!r}")
    return workdir / "runs" / run["id"], f"{run['id']}:{run['config_hash']}"


def label_prompts(spec: GoldPMSpec) -> list[str]:
    """The RL training prompts (the eval prompts held out exactly as the RL runs hold them out)."""
    from scalelab.align.rl.prompts import load_prompts, split_prompts

    train, _ = split_prompts(load_prompts(spec.prompts, n_builtin=spec.n_prompts), spec.eval_prompts)
    return train


@torch.no_grad()
def sample_pairs(folder: Path, workdir: Path, prompts: list[str], n_pairs: int, spec: GoldPMSpec,
                 seed: int, batch: int = 64) -> tuple[list[str], list[str], list[str]]:  # fmt: skip
    """(prompts, responses A, responses B): two independent samples of the policy per prompt, prompts cycled."""
    from scalelab.align.rl import sample_responses
    from scalelab.train.checkpoint import load_for_inference

    model, tokenizer, _ = load_for_inference(folder, workdir, "cpu")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    chosen = [prompts[order[i % len(order)]] for i in range(n_pairs)]
    g = torch.Generator().manual_seed(seed)
    texts: list[str] = []
    rows = [p for p in chosen for _ in (0, 1)]  # A and B of a pair side by side
    for i in range(0, len(rows), batch):
        part = rows[i : i + batch]
        ids = [[int(t) for t in tokenizer.encode(p)] or [tokenizer.eot_id] for p in part]
        rollout = sample_responses(model, ids, max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                                   top_k=spec.top_k, eot_id=tokenizer.eot_id, generator=g)  # fmt: skip
        texts += rollout.decode(tokenizer)
    return chosen, texts[0::2], texts[1::2]


def _cache_key(spec: GoldPMSpec, source: LabelSource, identity: str) -> str:
    key = {"policy": identity, "n_pairs": source.n_pairs, "seed": source.seed, "gold": spec.gold,
           "label_temperature": spec.label_temperature, "drop_ties": spec.drop_ties, "prompts": spec.prompts,
           "n_prompts": spec.n_prompts, "eval_prompts": spec.eval_prompts, "max_new_tokens": spec.max_new_tokens,
           "temperature": spec.temperature, "top_k": spec.top_k}  # fmt: skip
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def labelled_source(spec: GoldPMSpec, source: LabelSource, workdir: Path) -> tuple[list[Comparison], dict]:
    """The gold-labelled comparisons of one source, sampled once and cached in ``<workdir>/labels``."""
    from scalelab.align.gold import label_pairs

    folder, identity = resolve_policy(source.policy, source.policy_hash, spec.group, workdir)
    key = _cache_key(spec, source, identity)
    path, info_path = workdir / "labels" / f"{key}.jsonl", workdir / "labels" / f"{key}.json"
    if info_path.is_file():
        comparisons, _ = load_comparisons(path, format="generic")
        return comparisons, json.loads(info_path.read_text())
    prompts, a, b = sample_pairs(folder, workdir, label_prompts(spec), source.n_pairs, spec, source.seed)
    comparisons, stats = label_pairs(prompts, a, b, spec.gold, temperature=spec.label_temperature,
                                     drop_ties=spec.drop_ties, seed=source.seed + 1)  # fmt: skip
    if not comparisons:
        raise UserError(f"labelling {source.n_pairs} pairs of {source.policy} with gold {spec.gold!r} kept none "
                        f"({stats.ties} ties, {stats.identical} identical); sample more pairs or set "
                        "drop_ties=false")  # fmt: skip
    info = {"source": source.policy, "identity": identity, "key": key, **stats.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in ((path, lambda p: save_comparisons(comparisons, p)),
                          (info_path, lambda p: p.write_text(json.dumps(info)))):  # fmt: skip
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        write(tmp)
        tmp.replace(target)  # the info file last: its presence means the set is complete
    return load_comparisons(path, format="generic")[0], info


def select(comparisons: list[Comparison], source: LabelSource) -> list[Comparison]:
    """The pairs of a source's half among its first ``max_offered`` offered pairs (by ``meta["pair"]``)."""
    out = []
    for c in comparisons:
        i = int(c.meta["pair"])
        if (source.half is None or i % 2 == source.half) and (source.max_offered is None or i < source.max_offered):
            out.append(c)
    return out


def offered(source: LabelSource) -> int:
    """Labeller queries a source's selection stands for: the label budget it spends."""
    n = min(source.n_pairs, source.max_offered or source.n_pairs)
    return n if source.half is None else (n + 1 - source.half) // 2


def build_comparisons(spec: GoldPMSpec, workdir: Path, run_dir: Path) -> tuple[Path, list[dict]]:
    """Write the run's comparison file (every source labelled, selected, concatenated); return it and the infos."""
    comparisons, infos = [], []
    for source in spec.sources:
        got, info = labelled_source(spec, source, workdir)
        mine = select(got, source)
        comparisons += mine
        infos.append({**info, "half": source.half, "offered": offered(source), "kept": len(mine)})
    if len(comparisons) < 4:
        raise UserError(f"only {len(comparisons)} gold-labelled comparisons for {spec.name!r}; sample more pairs")
    path = run_dir / "comparisons.jsonl"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_comparisons(comparisons, path)
    return path, infos


def gold_pm_worker(cfg_dict: dict, workdir: str, run_id: str, threads: int | None) -> dict:
    """One gold-labelled PM run as a sweep worker (kind "gold-pm"; `sweep.worker.run_worker` catches)."""
    from scalelab.align.pm_run import PMRunSpec, build_pm, execute
    from scalelab.config import build_config
    from scalelab.train.record import FileRecorder

    spec = build_config(cfg_dict, "gold-pm run spec", cls=GoldPMSpec)
    if threads or spec.threads:
        torch.set_num_threads(threads or spec.threads)
    work, run_dir = Path(workdir), Path(workdir) / "runs" / run_id
    recorder = FileRecorder(run_dir)
    recorder.truncate(-1)
    path, infos = build_comparisons(spec, work, run_dir)
    pm_spec = PMRunSpec(**{**spec.pm, "data": str(path), "format": "generic", "name": spec.name,
                           "group": spec.group, "threads": spec.threads})  # fmt: skip
    pm = build_pm(pm_spec, work)
    counts = pm.param_counts()
    recorder.update(params=counts["params"], params_nonembed=counts["params_nonembed"])
    summary = execute(pm_spec, pm, work, run_id, recorder, progress=False, progress_file=True)
    summary.update(labels=infos, n_offered=sum(i["offered"] for i in infos),
                   n_comparisons=sum(i["kept"] for i in infos), gold=spec.gold)  # fmt: skip
    (run_dir / "labels.json").write_text(json.dumps(infos))
    recorder.update(summary=summary)
    return summary
