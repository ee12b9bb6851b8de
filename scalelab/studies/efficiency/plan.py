"""The efficiency study's runs: every recipe x size x seed, each evaluated `evals` times."""

from __future__ import annotations

from pathlib import Path

from scalelab.config import build_config
from scalelab.studies.efficiency.config import Config
from scalelab.sweep.spec import PlannedRun, copy_tree, run_counts, set_key, vocab_size_of


def run_name(config: Config, recipe: str, size: str, seed_index: int) -> str:
    return f"{config.name}-{recipe}-{size}-s{seed_index}"


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """One planned run per (recipe, size, seed); none for `paper_table` (the paper's numbers, no training).

    Recipe overrides come after the base and the size, so a recipe may change anything, but the
    study sets the budget, the evaluation cadence, the seed and the name last.
    """
    if config.paper_table:
        return []
    base_seed = int(config.base.get("train", {}).get("seed", 1337))
    every = max(1, config.iters // config.evals)
    runs, vocab_cache = [], {}
    for recipe in config.recipes:
        for size in config.sizes:
            for i in range(config.seeds):
                raw = copy_tree(config.base)
                set_key(raw, "model.size", size)
                for key, value in recipe.set.items():
                    set_key(raw, key, value)
                name = run_name(config, recipe.name, size, i)
                for key, value in (("name", name), ("train.iters", config.iters), ("train.tokens", None),
                                   ("train.eval_every", every), ("train.ckpt_every", config.iters),
                                   ("train.seed", base_seed + i)):
                    set_key(raw, key, value)
                cfg = build_config(raw, origin=f"efficiency run {name}")
                params, nonembed, fpt = run_counts(cfg, vocab_size_of(cfg, Path(workdir), vocab_cache))
                tokens = config.iters * cfg.train.batch_size * cfg.model.block_size * cfg.train.grad_accum
                axes = {"recipe": recipe.name, "size": size, "seed": i}
                runs.append(PlannedRun(name, cfg, axes, params, nonembed, fpt, tokens, config.iters))
    return runs
