"""One preference-model run end to end: backbone, data, optional PMP, fine-tuning, evaluation, records.

`run_pm(spec, workdir)` is what ``scalelab pm train`` calls: it creates the run in the store and
records into it. `pm_worker(cfg_dict, workdir, run_id, threads)` is the same run as a worker of the
sweep executor (registered as kind "pm"): the driver created the run, the worker writes
``record.json`` / ``metrics.jsonl`` / ``progress.json`` in the run folder and the driver ingests
them. Either way the run builds the backbone (a scalelab checkpoint, a fresh ladder size, a saved
PM, a Hugging Face folder, or ``run:NAME``: the completed run of that name in the same group),
loads and splits the comparisons, runs preference-model pre-training when asked (Askell et al.
2021, arXiv 2112.00861, section 5: the ranked loss on a binarised automatic set, then fine-tuning
on the target comparisons), trains with the chosen objective, evaluates held-out accuracy and
calibration, and saves the PM under ``<workdir>/runs/<run_id>/pm/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from scalelab.align.backbones import fresh_gpt_backbone
from scalelab.align.objectives import OBJECTIVES
from scalelab.align.pm import PreferenceModel, encode_pairs, load_pm
from scalelab.align.pm_data import ComparisonSet, document_source, in_test_split, is_keyword, load_set, pmp_set
from scalelab.align.pm_data import split_set as split_comparisons
from scalelab.align.pm_train import PMTrainConfig, evaluate_pm, train_pm
from scalelab.atomic import write_json
from scalelab.config import stamp_input
from scalelab.data.synthetic_comparisons import binarize
from scalelab.errors import UserError
from scalelab.store import RUN_REF, RunStore, completed_group_run
from scalelab.train.loop import resolve_device
from scalelab.train.record import FileRecorder, StoreRecorder

PM_TRAINER_VERSION = 2
"""Bumped when the PM trainer computes other results for the same spec (v2: dropout off while training,
batches grouped by each pair's longer side): finished PM runs of the older trainer are not reused."""


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
    split_seed: int | None = None
    """Seed of the train/test split of `data` (default: the training seed). A set drawn from the train
    documents of another split must use another seed, or its test part would be empty."""
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
    """Context of a fresh model, or the cap of an hf: backbone (a scalelab checkpoint keeps its own)."""
    pmp: str | None = None
    """Preference-model pre-training set: a file or keyword; binarised unless pmp_binary is False."""
    pmp_binary: bool = True
    pmp_max: int | None = 4000
    """At most this many PMP comparisons before binarisation."""
    pmp_epochs: float = 1.0
    pmp_steps: int | None = None
    pmp_lr: float = 3e-4
    binarize: bool = False
    """Binarise `data` before the split: a PMP stage as a run of its own (Askell et al. 2021, section 5)."""
    zero_shot: bool = False
    """Evaluate the backbone as it is, without training: the LM choosing by log-probability (imitation)."""
    base_config_hash: str | None = None
    """With ``base = 'run:NAME'``: the config hash that run must have (a study's plan sets it)."""
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
        if self.zero_shot and (self.objective != "imitation" or self.pmp):
            raise UserError("a zero-shot evaluation scores by log-probability: use objective 'imitation' and no PMP")
        if self.base is None and self.size is None:
            raise UserError("give a backbone: --base RUN_OR_CHECKPOINT (or hf:FOLDER) or --size NAME (e.g. 'xs')")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PMRunSpec:
        """The spec of ``to_dict()``; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown PM run keys {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def config_hash(self) -> str:
        """Hash of what changes the result: the spec without name, group and threads; input files by content.

        A file is hashed by its content (not its path), so a study's work directory can move.
        """
        d = self.to_dict()
        for key in ("name", "group", "threads"):
            d.pop(key)
        for key in ("data", "test", "pmp", "base"):
            if d[key]:
                d[key] = stamp_input(d[key])
        d["trainer"] = PM_TRAINER_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_base(spec: PMRunSpec, workdir: Path) -> str | None:
    """The backbone path: ``run:NAME`` becomes the folder of the completed run of that name in the group.

    The store is only read. With ``base_config_hash`` the run must have that config hash (the plan's),
    so that a PM never trains on a stale backbone of the same name.
    """
    if spec.base is None or not spec.base.startswith(RUN_REF):
        return spec.base
    run = completed_group_run(workdir, spec.base[len(RUN_REF) :], spec.group, spec.base_config_hash,
                              f"base {spec.base!r}")  # fmt: skip
    return str(workdir / "runs" / run["id"])


def build_pm(spec: PMRunSpec, workdir: Path) -> PreferenceModel:
    """The untrained PM of a spec: head (zero) on the chosen backbone; a saved PM keeps its head."""
    torch.manual_seed(spec.train.seed)
    base = resolve_base(spec, workdir)
    if base is None:
        backbone, tokenizer = fresh_gpt_backbone(spec.size, spec.context, seed=spec.train.seed)
        return PreferenceModel(backbone, tokenizer, spec.objective)
    return load_pm(base, workdir, objective=spec.objective, context=spec.context)  # context: hf: backbones


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
    if spec.binarize:
        data.comparisons = binarize(data.comparisons)
    if spec.test:
        test_set = load_set(spec.test, format=spec.format, seed=seed + 1, max_pairs=spec.max_test,
                            fits=_fits(pm) if is_keyword(spec.test) else None)  # fmt: skip
        train, test = data.comparisons, test_set.comparisons
        data.n_skipped += test_set.n_skipped
    else:
        split_seed = seed if spec.split_seed is None else spec.split_seed
        train, test = split_comparisons(data.comparisons, spec.test_fraction, split_seed)
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
    seed = spec.train.seed if spec.split_seed is None else spec.split_seed
    return lambda i: not in_test_split(f"doc:{i}", spec.test_fraction, seed)


def _pmp_stage(spec: PMRunSpec, pm: PreferenceModel, run_dir: Path, rows: list, progress: bool,
               progress_file: Path | None) -> dict:  # fmt: skip
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
    stats = train_pm(pm, train_pairs, cfg, progress=progress, progress_file=progress_file,
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


def run_pm(spec: PMRunSpec, workdir: str | Path, *, progress: bool = False) -> dict:
    """Train, evaluate, save and record one PM in the store; returns the run summary (`scalelab pm train`)."""
    workdir = Path(workdir)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    pm = build_pm(spec, workdir)
    store = RunStore.in_workdir(workdir)
    counts = pm.param_counts()
    run_id = store.create_run(spec.name or f"pm-{spec.objective}", spec.to_dict(), spec.config_hash(),
                              group=spec.group, params=counts["params"],
                              params_nonembed=counts["params_nonembed"])  # fmt: skip
    return execute(spec, pm, workdir, run_id, StoreRecorder(store, run_id), progress=progress)


def pm_worker(cfg_dict: dict, workdir: str, run_id: str, threads: int | None) -> dict:
    """One PM run as a sweep worker (kind "pm"): records into files of the run folder and returns the run
    summary. `sweep.worker.run_worker` turns an exception into a "failed" (or "interrupted") result."""
    spec = PMRunSpec.from_dict(cfg_dict)
    if threads or spec.threads:
        torch.set_num_threads(threads or spec.threads)
    recorder = FileRecorder(Path(workdir) / "runs" / run_id)
    recorder.truncate(-1)  # a run started again (after a kill) records from scratch
    pm = build_pm(spec, Path(workdir))
    counts = pm.param_counts()
    recorder.update(params=counts["params"], params_nonembed=counts["params_nonembed"])
    return execute(spec, pm, Path(workdir), run_id, recorder, progress=False, progress_file=True)


def execute(spec: PMRunSpec, pm: PreferenceModel, workdir: Path, run_id: str, recorder, *, progress: bool = False,
            progress_file: bool = False) -> dict:  # fmt: skip
    """Train (unless zero-shot), evaluate, save the PM and record the run through ``recorder``."""
    device = resolve_device(spec.device)
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", spec.to_dict())
    data, train, test = load_data(spec, pm)
    train_pairs, test_pairs = encode_pairs(pm, train), encode_pairs(pm, test)
    counts = pm.param_counts()
    recorder.update(status="running", started_at=time.time(), error=None)
    rows: list[tuple] = []
    summary: dict = {"run_id": run_id, "name": spec.name, "objective": spec.objective, "params": counts["params"],
                     "params_nonembed": counts["params_nonembed"], "data": spec.data, "pmp": spec.pmp,
                     "base": spec.base, "base_path": resolve_base(spec, workdir), "size": spec.size}  # fmt: skip
    pfile = run_dir / "progress.json" if progress_file else None
    stats = {"steps": 0, "pairs_per_s": None, "tokens_per_s": None, "wall_s": 0.0, "final_loss": float("nan")}
    pm.to(device)
    try:
        if spec.pmp:
            summary.update(_pmp_stage(spec, pm, run_dir, rows, progress, pfile))
        step0 = summary.get("pmp_steps", 0)
        if not spec.zero_shot:
            stats = train_pm(pm, train_pairs, spec.train, progress=progress, step_offset=step0, progress_file=pfile,
                             log=lambda s, n, v: rows.append((s, 0, 0.0, "train", n, float(v))))  # fmt: skip
        ev = evaluate_pm(pm, test_pairs, batch_size=spec.train.eval_batch_size, seed=spec.train.seed)
    except BaseException as e:
        recorder.log(rows)
        recorder.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                        error=f"{type(e).__name__}: {e}"[:2000], finished_at=time.time())  # fmt: skip
        raise
    margin = torch.as_tensor(ev.scores_chosen - ev.scores_rejected)
    test_loss = float(torch.nn.functional.softplus(-margin).mean())  # the ranked loss on held-out pairs
    final_step = step0 + stats["steps"]
    for metric, value in (("accuracy", ev.accuracy.value), ("accuracy_lo", ev.accuracy.ci[0]),
                          ("accuracy_hi", ev.accuracy.ci[1]), ("ece", ev.calibration.ece), ("loss", test_loss)):
        rows.append((final_step, 0, 0.0, "test", metric, float(value)))  # fmt: skip
    summary.update(ev.summary())
    summary.update(
        n_train=0 if spec.zero_shot else len(train_pairs), n_skipped=data.n_skipped,
        skipped_lines=[f"line {n}: {why}" for n, why in (data.report.skipped[:5] if data.report else [])],
        n_filtered_long=data.n_filtered_long,
        n_truncated=train_pairs.counts.n_truncated + test_pairs.counts.n_truncated,
        n_response_truncated=train_pairs.counts.n_response_truncated + test_pairs.counts.n_response_truncated,
        n_sequences=train_pairs.counts.n_sequences + test_pairs.counts.n_sequences,
        steps=stats["steps"], pairs_per_s=stats["pairs_per_s"], tokens_per_s=stats["tokens_per_s"],
        train_wall_s=stats["wall_s"], final_train_loss=stats["final_loss"], test_loss=test_loss,
        scoring=pm.scoring, context=pm.context, device=str(device), config_hash=spec.config_hash(),
        pm_path=str(run_dir / "pm"), status="completed",
    )  # fmt: skip
    pm.meta = {"run_id": run_id, "spec": spec.to_dict(), "accuracy": ev.accuracy.value}
    pm.to("cpu").save(run_dir / "pm")
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "scores.json", {"chosen": ev.scores_chosen.tolist(), "rejected": ev.scores_rejected.tolist()})
    recorder.log(rows)
    final_train = stats["final_loss"] if math.isfinite(stats["final_loss"]) else None
    recorder.update(status="completed", summary=summary, final_val_loss=test_loss, finished_at=time.time(),
                    final_train_loss=final_train)  # fmt: skip
    return summary
