"""All mechanism probes of Hernandez et al. 2022 (arXiv 2205.10487, section 5) on one model.

Two forward passes: one on Olsson's probe sequences (a start token, 25 random tokens repeated 4
times) gives the prefix-matching scores of every head through the pattern hooks *and* the
copying losses (the passage is the 25 random tokens; copy 1 cannot be predicted, copies 2-4 can
be copied); one on held-out real text gives the in-context learning score.

`run_probes` returns a plain dict for reports and the CLI; `make_probe_eval` wraps it as a cheap,
seeded training-time callback `(model, step) -> {name: float}` for `train(..., extra_evals=[...])`.
The probe batches are fixed by the seed, so successive evaluations differ only by the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scalelab.errors import UserError
from scalelab.evals.copying import copy_losses_from, icl_score
from scalelab.evals.induction import (
    N_RANDOM,
    N_REPEATS,
    fit_to_context,
    head_scores,
    probe_token_pool,
    repeated_random_tokens,
)


@dataclass(frozen=True)
class ProbeSettings:
    """What the probes feed the model (n_random shrinks to fit a short context: `fit_to_context`)."""

    pool: np.ndarray
    """Token ids the random sequences are drawn from (see `probe_token_pool`)."""
    bos: int
    """Start token put in front of every probe sequence (the tokenizer's eot id)."""
    batch_size: int = 8
    seed: int = 0
    n_random: int = N_RANDOM
    n_repeats: int = N_REPEATS
    """Repeats of the random tokens: the copies of the copying probe."""


def settings_for(tokenizer=None, *, vocab_size: int | None = None, eot_id: int | None = None, batch_size: int = 8,
                 seed: int = 0) -> ProbeSettings:  # fmt: skip
    """Probe settings from a tokenizer, or from vocab_size and eot_id when there is none."""
    eot = eot_id if eot_id is not None else getattr(tokenizer, "eot_id", None)
    if eot is None:
        raise UserError("the probes need a start token: pass a tokenizer or eot_id")
    return ProbeSettings(probe_token_pool(tokenizer, vocab_size, eot), int(eot), batch_size, seed)


def probe_sequences(settings: ProbeSettings, block_size: int) -> tuple[torch.Tensor, int]:
    """The seeded probe sequences (B, 1 + n_random n_repeats) for a context, and n_random."""
    s = settings
    n_random = fit_to_context(block_size, s.n_random, s.n_repeats)
    return repeated_random_tokens(s.pool, s.bos, s.batch_size, n_random, s.n_repeats, s.seed), n_random


def run_probes(model, settings: ProbeSettings, heldout: np.ndarray | None = None) -> dict:
    """Prefix-matching scores per head, copying losses and (with held-out windows) the ICL score.

    heldout: real text windows (..., S), e.g. `eval_windows(val_tokens, T, B, 1, seed)`; without
    them the ICL entries are None.
    """
    sequences, n_random = probe_sequences(settings, model.cfg.block_size)
    heads = head_scores(model, sequences, with_loss=True)
    prefix, detector = heads["prefix_matching"], heads["detector"]
    best = np.unravel_index(int(np.argmax(prefix)), prefix.shape)
    copying = copy_losses_from(heads["token_loss"], n_random, settings.n_repeats)
    out = {
        "prefix_matching": prefix.tolist(),
        "detector": detector.tolist(),
        "induction_max": float(prefix.max()),
        "induction_argmax": [int(best[0]), int(best[1])],
        "detector_max": float(detector.max()),
        "copy_losses": copying["per_copy"],
        "copy_loss_first": copying["copy_loss_first"],
        "copy_loss_later": copying["copy_loss_later"],
        "icl_score": None, "icl_loss_early": None, "icl_loss_late": None, "icl_positions": None,
        "settings": {"n_random": n_random, "n_repeats": settings.n_repeats, "batch_size": settings.batch_size,
                     "seed": settings.seed, "pool_size": int(settings.pool.size), "bos": settings.bos},
    }  # fmt: skip
    if heldout is not None:
        # every held-out window the caller gave: the ICL score is a difference of two noisy means
        rows = np.asarray(heldout).reshape(-1, np.asarray(heldout).shape[-1])
        icl = icl_score(model, rows)
        out.update(icl_score=icl["icl_score"], icl_loss_early=icl["loss_early"], icl_loss_late=icl["loss_late"],
                   icl_positions=[icl["early"], icl["late"], icl["band"]])  # fmt: skip
    return out


def make_probe_eval(tokenizer=None, *, vocab_size: int | None = None, eot_id: int | None = None,
                    heldout: np.ndarray | None = None, batch_size: int = 8, seed: int = 0,
                    per_head: bool = False) -> Callable[[torch.nn.Module, int], dict[str, float]]:  # fmt: skip
    """A training-time eval `(model, step) -> {name: float}` running every probe on a fixed small batch.

    Keys: induction_max, detector_max, copy_loss_first, copy_loss_later, and icl_score when
    `heldout` windows are given; with per_head=True also prefix_l{layer}_h{head} for every head.
    """
    settings = settings_for(tokenizer, vocab_size=vocab_size, eot_id=eot_id, batch_size=batch_size, seed=seed)

    def probe_eval(model, step: int) -> dict[str, float]:
        res = run_probes(model, settings, heldout)
        flat = {k: float(res[k]) for k in ("induction_max", "detector_max", "copy_loss_first", "copy_loss_later")}
        if res["icl_score"] is not None:
            flat["icl_score"] = float(res["icl_score"])
        if per_head:
            for i, row in enumerate(res["prefix_matching"]):
                flat.update({f"prefix_l{i}_h{h}": float(v) for h, v in enumerate(row)})
        return flat

    return probe_eval


def heldout_windows_for_checkpoint(ckpt: str | Path, block_size: int, batch_size: int, seed: int) -> np.ndarray | None:
    """Validation windows (batch_size, block_size + 1) of the run a checkpoint belongs to, or None.

    Finds the run's saved config.json above the checkpoint and reads its (cached) shards from the
    run's work directory; None when there is no config or the data cannot be read.
    """
    from scalelab.config import build_config
    from scalelab.data.batches import eval_windows
    from scalelab.data.shards import prepare_shards

    p = Path(ckpt).resolve()
    run_dir = next((d for d in (p, *p.parents[:3]) if (d / "config.json").is_file()), None)
    if run_dir is None:
        return None
    try:
        cfg = build_config(json.loads((run_dir / "config.json").read_text()), str(run_dir / "config.json"))
        shards = prepare_shards(cfg.data, run_dir.parent.parent / "cache", progress=False)
        return eval_windows(shards.tokens("val"), block_size, batch_size, 1, seed)[0]
    except (UserError, OSError, ValueError):
        return None


def text_windows(text: str, tokenizer, block_size: int, batch_size: int, seed: int) -> np.ndarray:
    """Held-out windows (<= batch_size, block_size + 1) from a text, for the ICL score."""
    from scalelab.data.batches import eval_windows

    ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
    if ids.size < block_size + 2:
        raise UserError(f"the held-out text holds {ids.size} tokens, fewer than one window of {block_size + 1}; "
                        "pass a longer text")  # fmt: skip
    return eval_windows(ids, block_size, batch_size, 1, seed)[0]
