"""Sampling text from a run or checkpoint, by id or path."""

from __future__ import annotations

from pathlib import Path

import torch

from scalelab.errors import UserError
from scalelab.model.generate import generate
from scalelab.train.checkpoint import load_model_from_checkpoint


def resolve_checkpoint(run_or_path: str, workdir: str | Path) -> Path:
    """A checkpoint folder from a run id / name in the store, a run folder or a checkpoint folder."""
    p = Path(run_or_path)
    if p.exists():
        return p
    db = Path(workdir) / "scalelab.db"
    if db.exists():
        from scalelab.store import RunStore

        run = RunStore(db).get_run(run_or_path)
        if run is not None:
            return Path(workdir) / "runs" / run["id"]
    raise UserError(f"{run_or_path!r} is neither a checkpoint path nor a run in {workdir}; see `scalelab runs`")


def sample_text(run: str, prompt: str, tokens: int, temperature: float, top_k: int | None, seed: int,
                workdir: str | Path) -> str:  # fmt: skip
    model, tokenizer, _ = load_model_from_checkpoint(resolve_checkpoint(run, workdir))
    ids = list(tokenizer.encode(prompt)) if prompt else [tokenizer.eot_id]
    idx = torch.tensor([ids], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    outp = generate(model, idx, tokens, temperature=temperature, top_k=top_k, generator=gen)
    return tokenizer.decode(outp[0, len(ids) :].tolist())
