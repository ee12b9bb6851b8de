"""The preference study's runs: backbones (stage 0), PMP stages, PMs and zero-shot scorers (stage 1),
PMs fine-tuned from a PMP stage (stage 2).

Every run is a `PlannedRun` executed by the sweep machinery, so an interrupted study resumes and
finished runs are reused by config hash. A PM names its backbone ``run:<planned name>`` together
with that run's config hash; the PM worker (`scalelab.align.pm_run.pm_worker`) resolves it to the
completed run in the same group.

The comparison sets are built here, once per data design, into ``<workdir>/studies/preference/``:
the target split by source document into train and test, and the PMP set drawn from the train
documents only, so that PMP never sees a test function.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scalelab.studies.preference.config import Config
from scalelab.sweep.spec import PlannedRun, run_counts

SET_KEYS = ("context", "corpus", "corpus_max_documents", "target", "data_max", "test_fraction", "pmp", "pmp_max",
            "seed")  # fmt: skip


def backbone_config(config: Config, size: str):
    """The LM pre-training run of one backbone (the alignment studies' shared recipe, `studies.pretrain`)."""
    from scalelab.studies.pretrain import small_lm_config

    return small_lm_config(f"backbone-{size}", size, config.corpus, context=config.context,
                           iters=config.pretrain_iters, batch=config.pretrain_batch, seed=config.seed,
                           device=config.device, threads=config.threads,
                           max_documents=config.corpus_max_documents)  # fmt: skip


def sets_folder(config: Config, workdir: Path) -> Path:
    key = {k: getattr(config, k) for k in SET_KEYS}
    return Path(workdir) / "studies" / "preference" / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]


def set_paths(config: Config, workdir: Path) -> dict[str, Path]:
    """Where the comparison sets of this data design live (the plan names them; `build_sets` writes them)."""
    folder = sets_folder(config, workdir)
    return {"train": folder / "target_train.jsonl", "test": folder / "target_test.jsonl", "pmp": folder / "pmp.jsonl",
            "info": folder / "sets.json"}  # fmt: skip


def build_sets(config: Config, workdir: Path) -> dict[str, Path]:
    """Target train/test files and the PMP file, built once per data design (files never rewritten).

    Documents are split by a hash (`in_test_split`); the target's test pairs come from test
    documents only and the PMP set from train documents only. This is the study's `prepare` step:
    the runner calls it before training, never for a dry run (building the sets takes a minute).
    """
    from scalelab.align.backbones import fresh_gpt_backbone
    from scalelab.align.pm import PreferenceModel
    from scalelab.align.pm_data import build_automatic, in_test_split, split_set
    from scalelab.data.comparisons import save_comparisons

    paths = set_paths(config, Path(workdir))
    folder = paths["info"].parent
    if paths["info"].exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    backbone, tokenizer = fresh_gpt_backbone("3xs", config.context)
    encoder = PreferenceModel(backbone, tokenizer)

    def fits(c) -> bool:
        return not any(encoder.encode(c.prompt, r).truncated for r in (c.chosen, c.rejected))

    docs = config.corpus_max_documents
    target = build_automatic(config.target, seed=config.seed, max_pairs=config.data_max, fits=fits, max_documents=docs)
    train, test = split_set(target.comparisons, config.test_fraction, config.seed)
    info: dict = {}
    if config.pmp is not None:
        keep = lambda i: not in_test_split(f"doc:{i}", config.test_fraction, config.seed)  # noqa: E731
        pmp = build_automatic(config.pmp, seed=config.seed + 7, max_pairs=config.pmp_max, fits=fits,
                              max_chars=int(0.9 * config.context), keep_doc=keep, max_documents=docs)  # fmt: skip
        _save_once(pmp.comparisons, paths["pmp"], save_comparisons)
        info.update(n_pmp=len(pmp.comparisons), n_pmp_filtered_long=pmp.n_filtered_long)
    _save_once(train, paths["train"], save_comparisons)
    _save_once(test, paths["test"], save_comparisons)
    info.update(n_target=len(target.comparisons), n_target_filtered_long=target.n_filtered_long,
                n_target_train=len(train), n_target_test=len(test))  # fmt: skip
    _save_once(info, paths["info"], lambda obj, path: Path(path).write_text(json.dumps(obj)))
    return paths


def _save_once(obj, path: Path, save) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save(obj, tmp)
    tmp.replace(path)


def _train(config: Config, objective: str, lr: float, min_steps: int):
    from scalelab.align.pm_train import PMTrainConfig

    return PMTrainConfig(objective=objective, epochs=1.0, min_steps=min_steps, batch_size=config.batch_size, lr=lr,
                         seed=config.seed, warmup_steps=min(10, config.min_steps // 2))  # fmt: skip


def pm_name(size: str, objective: str, n: int, pmp: str | None) -> str:
    return f"pm-{size}-{objective}{f'-{pmp}pmp' if pmp else ''}-n{n}"


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """Every run of the study: the size grid, the PMP stages, the sample-efficiency curves, zero-shot LMs."""
    from scalelab.align.pm_run import PMRunSpec

    workdir = Path(workdir)
    sets = set_paths(config, workdir)
    largest = config.sizes[-1]
    variants = list(config.pmp_formats) if config.pmp and "ranked" in config.objectives else []
    runs: dict[str, PlannedRun] = {}
    counts: dict[str, tuple[int, int, int]] = {}
    common = {"group": config.name, "device": config.device, "threads": config.threads}

    def add(name: str, cfg, axes: dict, size: str, kind: str, stage: int, iters: int) -> PlannedRun:
        if name in runs:
            runs[name].axes["grid"] |= axes.get("grid", False)
            return runs[name]
        params, nonembed, fpt = counts[size]
        tokens = iters * config.pretrain_batch * config.context if kind == "lm" else 0
        runs[name] = PlannedRun(name, cfg, {"grid": False, **axes}, params, nonembed, fpt, tokens, iters, kind=kind,
                                stage=stage)  # fmt: skip
        return runs[name]

    for size in config.sizes:
        cfg = backbone_config(config, size)
        counts[size] = run_counts(cfg, 257)  # byte tokenizer
        add(cfg.name, cfg, {"role": "backbone", "size": size}, size, "lm", 0, config.pretrain_iters)

    def base(name: str) -> dict:
        return {"base": f"run:{name}", "base_config_hash": runs[name].config_hash}

    def finetune(size: str, objective: str, n: int, pmp: str | None, grid: bool = False) -> None:
        parent = f"pmp-{pmp}-{size}" if pmp else f"backbone-{size}"
        train = _train(config, objective, config.lr, config.min_steps)
        spec = PMRunSpec(data=str(sets["train"]), objective=objective, format="generic", test=str(sets["test"]),
                         max_train=n, max_test=config.n_test, train=train, name=pm_name(size, objective, n, pmp),
                         **base(parent), **common)  # fmt: skip
        axes = {"role": "pm", "size": size, "objective": objective, "pmp": pmp, "n_train": n, "grid": grid}
        add(spec.name, spec, axes, size, "pm", 2 if pmp else 1, spec.train.total_steps(n))

    for size in config.sizes:
        spec = PMRunSpec(data=str(sets["train"]), objective="imitation", format="generic", test=str(sets["test"]),
                         max_train=0, max_test=config.n_test, zero_shot=True, name=f"zeroshot-{size}",
                         **base(f"backbone-{size}"), **common)  # fmt: skip
        add(spec.name, spec, {"role": "zero_shot", "size": size}, size, "pm", 1, 0)
        for v in variants if size == largest else variants[:1]:
            # its documents are the target's train split: split them again with another seed
            spec = PMRunSpec(data=str(sets["pmp"]), objective="ranked", format="generic", test_fraction=0.1,
                             split_seed=config.seed + 1, max_test=500, binarize=v == "binary",
                             train=_train(config, "ranked", config.pmp_lr, 0), name=f"pmp-{v}-{size}",
                             **base(f"backbone-{size}"), **common)  # fmt: skip
            add(spec.name, spec, {"role": "pmp", "size": size, "pmp": v}, size, "pm", 1, 0)
    for size in config.sizes:
        for objective in config.objectives:
            finetune(size, objective, config.n_train, None, grid=True)
        if variants:
            finetune(size, "ranked", config.n_train, variants[0], grid=True)
    for v in variants[1:]:
        finetune(largest, "ranked", config.n_train, v)
    for n in config.efficiency_n:
        for objective in config.objectives:
            finetune(largest, objective, n, None)
            for v in variants if objective != "imitation" else []:
                finetune(largest, objective, n, v)
    return list(runs.values())
