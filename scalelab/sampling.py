"""Sampling text from a run or checkpoint, by id or path."""

from __future__ import annotations

from pathlib import Path

import torch

from scalelab.model.generate import generate
from scalelab.train.checkpoint import load_for_inference, resolve_run_folder


def resolve_checkpoint(run_or_path: str, workdir: str | Path) -> Path:
    """A folder from a run id / name in the store, a run folder or a checkpoint folder (kept for callers)."""
    return resolve_run_folder(run_or_path, workdir)


def sample_text(run: str, prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int,
                workdir: str | Path) -> str:  # fmt: skip
    model, tokenizer, _ = load_for_inference(run, workdir, "cpu")
    ids = list(tokenizer.encode(prompt)) if prompt else [tokenizer.eot_id]
    idx = torch.tensor([ids], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    outp = generate(model, idx, tokens, temperature=temperature, top_k=top_k, generator=gen)
    return tokenizer.decode(outp[0, len(ids) :].tolist())
