"""The transfer study's config: one typed model, read from a preset TOML and `--set` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from scalelab.studies.resources import Resources


class Config(Resources):
    """What the study runs (presets: quick.toml, full.toml beside this file)."""

    name: str = "transfer-quick"
    """The sweep group of the study's runs in the store."""
    sizes: list[str] = Field(default_factory=lambda: ["3xs", "2xs"], min_length=1)
    """Model sizes (ladder names or explicit 'L<depth>'), smallest first; >= 2 to fit beta."""
    source_a: str = "stdlib:prose"
    """Pre-training distribution A (any data.source: 'stdlib:prose' = the embedded corpus's English)."""
    source_b: str = "stdlib:code"
    """Target distribution B, fine-tuned on and trained from scratch on ('stdlib:code' = its bare code)."""
    max_documents: int | None = Field(300, ge=1)
    """Read at most this many documents of each source (None: all)."""
    tokenizer: str = "byte"
    """One tokenizer for A and B: 'byte' or a folder holding tokenizer.json (not one trained per corpus)."""
    recipe: Literal["gpt2", "modern"] = "modern"
    block_size: int = Field(64, ge=8)
    """Context in tokens."""
    batch_size: int = Field(8, ge=1)
    """Sequences per step, every run."""
    pretrain_iters: int = Field(400, ge=1)
    """Optimizer steps of pre-training on A (all of A's training split, randomly windowed)."""
    pretrain_lr: float = Field(3e-3, gt=0)
    finetune_tokens: list[int] = Field(default_factory=lambda: [256, 2048, 16384, 131072], min_length=2)
    """D_F: unique tokens of B each pre-trained model is fine-tuned on (span >= 3 orders of magnitude)."""
    scratch_tokens: list[int] = Field(default_factory=lambda: [256, 1024, 4096, 16384, 65536, 262144], min_length=2)
    """D: unique tokens of B each size is trained on from scratch (wide enough to invert at every D_F)."""
    lr: float = Field(2e-3, gt=0)
    """Learning rate of fine-tuning and from-scratch runs alike (constant after a short warmup)."""
    max_iters: int = Field(400, ge=1)
    """Cap on the steps of a fine-tuning or from-scratch run; early stopping usually ends it sooner."""
    eval_every: int = Field(20, ge=1)
    eval_batches: int = Field(4, ge=1)
    patience: int = Field(3, ge=1)
    """Early stopping: evaluations without a new best validation loss on B (Hernandez et al. 2021)."""
    bootstrap: int = Field(1000, ge=10)
    """Case-bootstrap resamples of the D_T fit."""
    threads: int | None = Field(1, ge=1)
    """torch threads per run."""
    workers: int = Field(2, ge=1)
    """Runs trained at once (the default of --workers)."""

    @field_validator("tokenizer")
    @classmethod
    def _one_tokenizer(cls, v: str) -> str:
        if v in ("char", "bpe"):
            raise ValueError(f"tokenizer={v!r} is trained per corpus, so A and B would get different vocabularies; "
                             "use 'byte' or a tokenizer folder (tokenizer.json)")  # fmt: skip
        if v != "byte" and not Path(v).expanduser().exists():
            raise ValueError(f"tokenizer {v!r} is neither 'byte' nor an existing tokenizer folder")
        return v

    @field_validator("finetune_tokens", "scratch_tokens")
    @classmethod
    def _at_least_a_window(cls, v: list[int], info: ValidationInfo) -> list[int]:
        block = info.data.get("block_size", 0)
        small = [d for d in v if d < block + 2]
        if small:
            raise ValueError(f"token counts {small} hold less than one window of block_size + 1 = {block + 1} "
                             "tokens; raise them or lower block_size")  # fmt: skip
        return v
