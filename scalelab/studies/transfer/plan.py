"""The transfer study's runs: pre-training on A (stage 0); fine-tuning on D_F tokens of B and training
from scratch on D tokens of B (stage 1), for every size.

A fine-tune names its pre-trained model as ``run:pretrain-<size>@<config hash>`` (`train.init_from`),
so the training loop starts it from the completed run with exactly that config, and a changed
pre-training changes the fine-tune's own config hash (it is never reused stale). Fine-tuning and
from-scratch runs share one recipe (constant learning rate, early stopping on B's validation loss),
so that they differ only by the starting weights.
"""

from __future__ import annotations

from pathlib import Path

from scalelab.config import RunConfig, build_config
from scalelab.studies.transfer.config import Config
from scalelab.sweep.spec import PlannedRun, run_counts


def _run(config: Config, name: str, source: str, size: str, train: dict, data: dict | None = None) -> RunConfig:
    raw = {
        "name": name,
        "data": {"source": source, "tokenizer": config.tokenizer, "max_documents": config.max_documents,
                 **(data or {})},
        "model": {"size": size, "recipe": config.recipe, "block_size": config.block_size},
        "train": {"batch_size": config.batch_size, "optimizer": "adamw", "weight_decay": 0.0,
                  "eval_batches": config.eval_batches, "seed": config.seed, "eval_seed": config.seed + 1,
                  "device": config.device, "log_every": config.eval_every,
                  **({"threads": config.threads} if config.threads else {}), **train},
    }  # fmt: skip
    return build_config(raw, origin=f"transfer study run {name}")


def pretrain_config(config: Config, size: str) -> RunConfig:
    it = config.pretrain_iters
    train = {"iters": it, "lr": config.pretrain_lr, "min_lr": config.pretrain_lr / 10, "schedule": "cosine",
             "warmup_iters": min(50, it // 10), "eval_every": max(1, it // 4), "ckpt_every": it}  # fmt: skip
    return _run(config, f"pretrain-{size}", config.source_a, size, train)


def stage1_config(config: Config, size: str, tokens: int, parent: RunConfig | None) -> RunConfig:
    """A fine-tune (parent: the pre-trained run) or a from-scratch run (parent None) on `tokens` of B.

    A small D is seen many times per `eval_every` steps: it is evaluated at least once an epoch, so that
    early stopping catches its best point before it overfits."""
    epoch_steps = tokens // (config.batch_size * config.block_size)
    train = {"iters": config.max_iters, "lr": config.lr, "min_lr": config.lr, "schedule": "constant",
             "warmup_iters": min(10, config.max_iters // 10), "eval_every": max(1, min(config.eval_every, epoch_steps)),
             "ckpt_every": config.max_iters, "early_stop_patience": config.patience}  # fmt: skip
    if parent is not None:
        train["init_from"] = f"run:{parent.name}@{parent.config_hash()}"
    name = f"{'finetune' if parent is not None else 'scratch'}-{size}-D{tokens}"
    return _run(config, name, config.source_b, size, train, {"train_tokens": tokens})


def _vocab_size(config: Config, cfg: RunConfig, workdir: Path) -> int:
    if config.tokenizer == "byte":
        from scalelab.data.tokenizers import ByteTokenizer

        return ByteTokenizer().vocab_size
    from scalelab.data.shards import prepare_shards

    return prepare_shards(cfg.data, workdir / "cache", progress=False).vocab_size


def plan(config: Config, workdir: str | Path) -> list[PlannedRun]:
    """Every run: one pre-training per size, then its fine-tunes and from-scratch runs."""
    workdir = Path(workdir)
    runs: list[PlannedRun] = []
    tokens_per_step = config.batch_size * config.block_size
    for size in config.sizes:
        pre = pretrain_config(config, size)
        counts = run_counts(pre, _vocab_size(config, pre, workdir))
        axes = {"role": "pretrain", "size": size}
        runs.append(PlannedRun(pre.name, pre, axes, *counts, config.pretrain_iters * tokens_per_step,
                               config.pretrain_iters, kind="lm", stage=0))  # fmt: skip
        for role, parent, amounts in (("finetune", pre, config.finetune_tokens),
                                      ("scratch", None, config.scratch_tokens)):  # fmt: skip
            for d in sorted(set(amounts)):
                cfg = stage1_config(config, size, d, parent)
                axes = {"role": role, "size": size, "D": d}
                runs.append(PlannedRun(cfg.name, cfg, axes, *counts, config.max_iters * tokens_per_step,
                                       config.max_iters, kind="lm", stage=1))  # fmt: skip
    return runs
