"""The small language model the alignment studies pre-train first (preference, rlhf, assistant).

One recipe for all of them, the demo's: the `modern` recipe with Muon, a warmup-stable-decay
schedule, byte tokens, one evaluation and one checkpoint at the end. A study's PMs, policies and
students start from these runs (`run:NAME` in a later stage), so the same overrides give the same
config hash in every study.
"""

from __future__ import annotations

from scalelab.config import RunConfig, load_config


def small_lm_config(
    name: str, size: str, source: str, *, context: int, iters: int, batch: int, seed: int, device: str,
    threads: int | None = None, max_documents: int | None = None,
) -> RunConfig:  # fmt: skip
    """The pre-training run `name` of a ladder model `size` on `source`, `iters` steps of `batch` x `context`."""
    return load_config(None, [
        f"name='{name}'", f"data.source='{source}'", "data.tokenizer='byte'",
        f"model.size='{size}'", "model.recipe='modern'", f"model.block_size={context}",
        f"train.iters={iters}", f"train.batch_size={batch}", "train.optimizer='muon'", "train.lr=3e-3",
        "train.muon_lr=0.02", "train.min_lr=1e-4", f"train.warmup_iters={min(30, iters // 5)}",
        "train.weight_decay=0.0", "train.schedule='wsd'", f"train.eval_every={iters}", "train.eval_batches=10",
        f"train.ckpt_every={iters}", f"train.log_every={max(1, iters // 10)}", f"train.seed={seed + 1337}",
        f"train.device='{device}'",
        *([f"train.threads={threads}"] if threads else []),
        *([f"data.max_documents={max_documents}"] if max_documents else []),
    ])  # fmt: skip
