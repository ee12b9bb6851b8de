"""The runs of the repeated-data study: per size a baseline, then every (f, R), each over the seeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from scalelab.errors import UserError
from scalelab.studies.repetition.config import Config, Corpus
from scalelab.sweep.spec import PlannedRun, SweepSpec
from scalelab.sweep.spec import plan as plan_sweep


def _depth(size: str) -> int:
    from scalelab.model.sizes import shape_for_size

    return shape_for_size(size)[0]


def design_points(config: Config) -> list[dict[str, Any]]:
    """Sweep points (config key -> value): largest models first, so parallel workers end together."""
    d, base_seed, iters = config.design, config.base.train.seed, config.base.train.iters
    seeds = [base_seed + i for i in range(d.seeds)]
    extra = [base_seed + d.seeds + i for i in range(d.baseline_extra_seeds)]
    points: list[dict[str, Any]] = []
    treated = set(d.sizes)
    for size in sorted(dict.fromkeys(d.baseline_sizes + d.sizes), key=_depth, reverse=True):
        base = {"model.size": size, "data.repeat_fraction": 0.0}
        points += [base | {"train.seed": s} for s in seeds + extra]
        points += [base | {"train.seed": base_seed, "train.iters": max(1, round(fr * iters))}
                   for fr in d.baseline_token_fractions]  # fmt: skip
        if size in treated:
            points += [{"model.size": size, "data.repeat_fraction": f, "data.repeat_epochs": r, "train.seed": s}
                       for f in d.repeat_fractions for r in d.repeat_epochs for s in seeds]  # fmt: skip
    return points


def corpus_path(corpus: Corpus, workdir: str | Path) -> Path:
    """Where the generated corpus of these settings lives in the work directory (named by their hash)."""
    key = hashlib.sha256(json.dumps(corpus.model_dump(), sort_keys=True).encode()).hexdigest()[:12]
    return Path(workdir).resolve() / "data" / f"copy-corpus-{key}.jsonl"


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """The study's runs (`PlannedRun`s for the sweep executors); writes the generated corpus if one is asked for."""
    base = config.base.to_dict()
    base.pop("name", None)
    if config.corpus is not None:
        from scalelab.data.repetition import write_copy_corpus

        path = corpus_path(config.corpus, workdir)
        if not path.exists():
            write_copy_corpus(path, **config.corpus.model_dump())
        base["data"]["source"] = str(path)
    spec = SweepSpec(name=config.name, base=base, points=design_points(config), probes=config.probes,
                     evals_per_run=config.evals_per_run, warmup_fraction=config.warmup_fraction)  # fmt: skip
    runs, notes = plan_sweep(spec, workdir)
    if notes:  # a fixed budget drops nothing; anything else is a bug worth stopping for
        raise UserError(f"the repetition study's plan dropped runs: {'; '.join(notes)}")
    return runs
