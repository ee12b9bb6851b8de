"""One preference-model run end to end: backbone, data, optional PMP, fine-tuning, evaluation, records.

`run_pm(spec, workdir)` is what ``scalelab pm train`` and the preference study call. It builds the
backbone (a scalelab checkpoint, a fresh ladder size, a saved PM or a Hugging Face folder), loads and
splits the comparisons, runs preference-model pre-training when asked (Askell et al. 2021, arXiv
2112.00861, section 5: the ranked loss on a binarised automatic set, then fine-tuning on the target
comparisons), trains with the chosen objective, evaluates held-out accuracy and calibration, saves
the PM under ``<workdir>/runs/<run_id>/pm/`` and records config, metrics and summary in the run store.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from scalelab.align.backbones import GPTBackbone, fresh_gpt_backbone, is_hf_folder, load_hf_backbone
from scalelab.align.objectives import OBJECTIVES
from scalelab.align.pm import PreferenceModel, encode_pairs, find_pm_folder
from scalelab.align.pm_data import ComparisonSet, document_source, in_test_split, is_keyword, load_set, pmp_set
from scalelab.align.pm_data import split_set as split_comparisons
from scalelab.align.pm_train import PMTrainConfig, evaluate_pm, train_pm
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.train.loop import resolve_device


@dataclass
class PMRunSpec:
    """Everything one PM run depends on; saved with the run and hashed to find finished runs."""

    data: str
    """A comparison file or an automatic set keyword (code:stdlib, corruptions:stdlib, arith[:N])."""
    objective: str = "ranked"
    format: str = "auto"
    """Comparison file format: hh, generic or auto."""
    test: str | None = None
    """A separate test file or keyword; default: split `test_fraction` of `data` off by group."""
    test_fraction: float = 0.1
    data_max: int | None = None
    """Build or read at most this many comparisons from `data` (before the split)."""
    max_train: int | None = None
    """Use only the first N training comparisons (after the split): sample-efficiency curves."""
    max_test: int | None = None
    base: str | None = None
    """A scalelab run id / checkpoint, a saved PM folder, or 'hf:FOLDER' (a Hugging Face causal LM)."""
    size: str | None = None
    """A fresh ladder model ('3xs' ... ) when no base is given."""
    context: int = 256
    """Context of a fresh model (a checkpoint keeps its own)."""
    pmp: str | None = None
    """Preference-model pre-training set: a file or keyword; binarised unless pmp_binary is False."""
    pmp_binary: bool = True
    pmp_max: int | None = 4000
    """At most this many PMP comparisons before binarisation."""
    pmp_epochs: float = 1.0
    pmp_steps: int | None = None
    pmp_lr: float = 3e-4
    train: PMTrainConfig | None = None
    device: str = "auto"
    threads: int | None = None
    name: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.train is None:
            self.train = PMTrainConfig(objective=self.objective)
        elif isinstance(self.train, dict):
            self.train = PMTrainConfig(**self.train)
        self.train.objective = self.objective
        if self.objective not in OBJECTIVES:
            raise UserError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if self.pmp and self.objective == "imitation":
            raise UserError("PMP trains the scalar head, which imitation does not use; drop --pmp or choose "
                            "--objective ranked or binary")
        if self.base is None and self.size is None:
            raise UserError("give a backbone: --base RUN_OR_CHECKPOINT (or hf:FOLDER) or --size NAME (e.g. 'xs')")

    def to_dict(self) -> dict:
        return asdict(self)

    def config_hash(self) -> str:
        """Hash of what changes the result: the spec without its name, group and threads, plus data stamps."""
        d = self.to_dict()
        for key in ("name", "group", "threads"):
            d.pop(key)
        d["stamps"] = [_stamp(s) for s in (self.data, self.test, self.pmp, self.base) if s]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stamp(spec: str) -> str:
    """What identifies an input: a file's content hash, a folder's path and mtime, else the string itself."""
    p = Path(spec.removeprefix("hf:"))
    if p.is_file():
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:16]
    if p.exists():
        return f"{p.resolve()}:{int(p.stat().st_mtime)}"
    return spec


def build_pm(spec: PMRunSpec, workdir: Path) -> PreferenceModel:
    """The untrained PM of a spec: head (zero) on the chosen backbone; a saved PM keeps its head."""
    torch.manual_seed(spec.train.seed)
    if spec.base is None:
        backbone, tokenizer = fresh_gpt_backbone(spec.size, spec.context, seed=spec.train.seed)
        return PreferenceModel(backbone, tokenizer, spec.objective)
    if spec.base.startswith("hf:") or is_hf_folder(Path(spec.base)):
        backbone, tokenizer = load_hf_backbone(spec.base.removeprefix("hf:"))
        return PreferenceModel(backbone, tokenizer, spec.objective)
    from scalelab.sampling import resolve_checkpoint
    from scalelab.train.checkpoint import load_model_from_checkpoint

    path = resolve_checkpoint(spec.base, workdir)
    if find_pm_folder(path) is not None:
        pm = PreferenceModel.load(path)
        pm.objective = spec.objective
        return pm
    model, tokenizer, _ = load_model_from_checkpoint(path)
    return PreferenceModel(GPTBackbone(model), tokenizer, spec.objective)


def _fits(pm: PreferenceModel):
    def fits(c) -> bool:
        return not any(pm.encode(c.prompt, r).truncated for r in (c.chosen, c.rejected))

    return fits


def _chars_in_context(pm: PreferenceModel) -> int:
    """About how many characters of passage fit the context: corruption passages are cut to this."""
    sample = "def score(self, text: str) -> float:\n    return the preference of the model for this text.\n"
    chars_per_token = len(sample) / max(1, len(pm.tokenizer.encode(sample)))
    return max(16, int(0.9 * (pm.context - 2) * chars_per_token))


def load_data(spec: PMRunSpec, pm: PreferenceModel) -> tuple[ComparisonSet, list, list]:
    """(the loaded set, train comparisons, test comparisons)."""
    seed = spec.train.seed
    data = load_set(spec.data, format=spec.format, seed=seed, max_pairs=spec.data_max,
                    fits=_fits(pm) if is_keyword(spec.data) else None)
    if spec.test:
        test_set = load_set(spec.test, format=spec.format, seed=seed + 1, max_pairs=spec.max_test,
                            fits=_fits(pm) if is_keyword(spec.test) else None)  # fmt: skip
        train, test = data.comparisons, test_set.comparisons
        data.n_skipped += test_set.n_skipped
    else:
        train, test = split_comparisons(data.comparisons, spec.test_fraction, seed)
    if spec.max_train is not None:
        train = train[: spec.max_train]
    if spec.max_test is not None:
        test = test[: spec.max_test]
    return data, train, test


def _pmp_keep_doc(spec: PMRunSpec):
    """Keep the documents of the target's test split out of a PMP set drawn from the same source."""
    if spec.test or not spec.pmp or document_source(spec.pmp) is None:
        return None
    if document_source(spec.pmp) != document_source(spec.data):
        return None
    return lambda i: not in_test_split(f"doc:{i}", spec.test_fraction, spec.train.seed)


def _pmp_stage(spec: PMRunSpec, pm: PreferenceModel, run_dir: Path, rows: list, progress: bool) -> dict:
    """Preference-model pre-training (Askell et al. 2021, section 5): the ranked loss on a (binarised)
    automatic set at ``pmp_lr``; evaluated on a held-out tenth of that set and saved to ``run_dir/pmp``."""
    fits = _fits(pm) if is_keyword(spec.pmp) else None
    pmp = pmp_set(spec.pmp, binary=spec.pmp_binary, format="auto", seed=spec.train.seed + 7, max_pairs=spec.pmp_max,
                  fits=fits, max_chars=_chars_in_context(pm), keep_doc=_pmp_keep_doc(spec))  # fmt: skip
    train, held_out = split_comparisons(pmp.comparisons, 0.1, spec.train.seed + 1)
    train_pairs, held_pairs = encode_pairs(pm, train), encode_pairs(pm, held_out[:500])
    cfg = PMTrainConfig(**{**spec.train.to_dict(), "objective": "ranked", "epochs": spec.pmp_epochs,
                           "steps": spec.pmp_steps, "lr": spec.pmp_lr, "min_steps": 0})  # fmt: skip
    objective, pm.objective = pm.objective, "ranked"
    stats = train_pm(pm, train_pairs, cfg, progress=progress,
                     log=lambda s, n, v: rows.append((s, 0, 0.0, "pmp", n, float(v))))  # fmt: skip
    ev = evaluate_pm(pm, held_pairs, batch_size=cfg.eval_batch_size, seed=cfg.seed)
    rows.append((stats["steps"], 0, 0.0, "pmp_test", "accuracy", ev.accuracy.value))
    pm.meta = {"stage": "pmp", "spec": spec.to_dict(), "pmp_accuracy": ev.accuracy.value}
    device = pm.device
    pm.to("cpu").save(run_dir / "pmp")
    pm.to(device)
    pm.objective = objective
    return {"n_pmp": len(train_pairs), "n_pmp_truncated": train_pairs.counts.n_truncated, "pmp_steps": stats["steps"],
            "pmp_wall_s": stats["wall_s"], "pmp_accuracy": ev.accuracy.value, "pmp_accuracy_ci": list(ev.accuracy.ci),
            "pmp_notes": pmp.notes, "pmp_path": str(run_dir / "pmp")}  # fmt: skip


def run_pm(spec: PMRunSpec, workdir: str | Path, *, progress: bool = False, reuse: bool = False) -> dict:
    """Train, evaluate, save and record one PM; returns the run summary (see `scalelab pm train`).

    With ``reuse``, a completed run of the same config hash whose PM folder exists is returned as is.
    """
    workdir = Path(workdir)
    store = RunStore.in_workdir(workdir)
    config_hash = spec.config_hash()
    if reuse:
        for run in reversed(store.find_runs(config_hash=config_hash, status="completed")):
            if find_pm_folder(workdir / "runs" / run["id"]) is not None:
                return {**run["summary"], "reused": True}
    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = resolve_device(spec.device)
    pm = build_pm(spec, workdir)
    data, train, test = load_data(spec, pm)
    train_pairs, test_pairs = encode_pairs(pm, train), encode_pairs(pm, test)
    counts = pm.param_counts()
    run_id = store.create_run(spec.name or f"pm-{spec.objective}", spec.to_dict(), config_hash, group=spec.group,
                              params=counts["params"], params_nonembed=counts["params_nonembed"])  # fmt: skip
    store.update_run(run_id, status="running", started_at=time.time())
    run_dir = workdir / "runs" / run_id
    rows: list[tuple] = []
    summary: dict = {"run_id": run_id, "objective": spec.objective, "params": counts["params"],
                     "params_nonembed": counts["params_nonembed"], "data": spec.data, "pmp": spec.pmp,
                     "base": spec.base, "size": spec.size}  # fmt: skip
    pm.to(device)
    try:
        if spec.pmp:
            summary.update(_pmp_stage(spec, pm, run_dir, rows, progress))
        step0 = summary.get("pmp_steps", 0)
        stats = train_pm(pm, train_pairs, spec.train, progress=progress, step_offset=step0,
                         log=lambda s, n, v: rows.append((s, 0, 0.0, "train", n, float(v))))  # fmt: skip
        ev = evaluate_pm(pm, test_pairs, batch_size=spec.train.eval_batch_size, seed=spec.train.seed)
    except BaseException as e:
        store.log_metrics(run_id, rows)
        store.update_run(run_id, status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                         error=str(e)[:2000], finished_at=time.time())  # fmt: skip
        raise
    margin = torch.as_tensor(ev.scores_chosen - ev.scores_rejected)
    test_loss = float(torch.nn.functional.softplus(-margin).mean())  # the ranked loss on held-out pairs
    final_step = step0 + stats["steps"]
    for metric, value in (("accuracy", ev.accuracy.value), ("accuracy_lo", ev.accuracy.ci[0]),
                          ("accuracy_hi", ev.accuracy.ci[1]), ("ece", ev.calibration.ece), ("loss", test_loss)):
        rows.append((final_step, 0, 0.0, "test", metric, float(value)))  # fmt: skip
    summary.update(ev.summary())
    summary.update(
        n_train=len(train_pairs), n_skipped=data.n_skipped, n_filtered_long=data.n_filtered_long,
        n_truncated=train_pairs.counts.n_truncated + test_pairs.counts.n_truncated,
        n_response_truncated=train_pairs.counts.n_response_truncated + test_pairs.counts.n_response_truncated,
        n_sequences=train_pairs.counts.n_sequences + test_pairs.counts.n_sequences,
        steps=stats["steps"], pairs_per_s=stats["pairs_per_s"], tokens_per_s=stats["tokens_per_s"],
        train_wall_s=stats["wall_s"], final_train_loss=stats["final_loss"], test_loss=test_loss,
        scoring=pm.scoring, context=pm.context, device=str(device), config_hash=config_hash,
        pm_path=str(run_dir / "pm"),
    )  # fmt: skip
    pm.meta = {"run_id": run_id, "spec": spec.to_dict(), "accuracy": ev.accuracy.value}
    pm.to("cpu").save(run_dir / "pm")
    _write_json(run_dir / "summary.json", summary)
    _write_json(run_dir / "scores.json", {"chosen": ev.scores_chosen.tolist(), "rejected": ev.scores_rejected.tolist()})
    store.log_metrics(run_id, rows)
    store.update_run(run_id, status="completed", summary=summary, final_val_loss=test_loss, finished_at=time.time(),
                     final_train_loss=stats["final_loss"] if math.isfinite(stats["final_loss"]) else None)  # fmt: skip
    return summary


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, default=str))
    tmp.replace(path)
