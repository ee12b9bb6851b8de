"""The preference study's config: one typed model, read from a preset TOML and `--set` overrides."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from scalelab.studies.resources import Resources

Objective = Literal["ranked", "binary", "imitation"]
PMPFormat = Literal["binary", "ranked"]


class Config(Resources):
    """What the study runs (presets: quick.toml, full.toml beside this file)."""

    name: str = "preference-quick"
    """The sweep group of the study's runs in the store."""
    sizes: list[str] = Field(default_factory=lambda: ["3xs", "2xs", "xs"], min_length=1)
    """Backbone sizes (the model ladder), smallest first; PMP and sample-efficiency runs use the last."""
    context: int = Field(128, ge=8)
    """Context of the backbones in tokens (byte tokenizer)."""
    corpus: str = "stdlib"
    """Pre-training corpus of the backbones."""
    corpus_max_documents: int | None = Field(None, ge=1)
    """Read at most this many documents of the corpus, for the backbones and the comparison sets (tiny tests)."""
    pretrain_iters: int = Field(300, ge=1)
    """Optimizer steps of each backbone's pre-training."""
    pretrain_batch: int = Field(16, ge=1)
    """Sequences per pre-training step."""
    target: str = "code:stdlib"
    """The target comparison set: a file or an automatic set keyword (code:, corruptions:, arith)."""
    data_max: int = Field(3000, ge=2)
    """Build at most this many target comparisons (before the train/test split)."""
    test_fraction: float = Field(0.25, gt=0, lt=1)
    """Fraction of the target's source documents held out for testing."""
    n_train: int = Field(1024, ge=1)
    """Training comparisons of the size grid."""
    n_test: int = Field(400, ge=1)
    """Held-out comparisons every PM is evaluated on."""
    efficiency_n: list[int] = Field(default_factory=lambda: [32, 128, 1024], min_length=1)
    """Training-set sizes of the sample-efficiency curves (largest backbone)."""
    objectives: list[Objective] = Field(default_factory=lambda: ["ranked", "binary", "imitation"], min_length=1)
    """PM objectives compared (Askell et al. 2021, section 4)."""
    pmp: str | None = "corruptions:stdlib"
    """Preference-model pre-training set (drawn from the train documents only); none to skip PMP."""
    pmp_max: int = Field(1000, ge=2)
    """At most this many PMP comparisons (before binarisation)."""
    pmp_lr: float = Field(1e-3, gt=0)
    """Learning rate of the PMP stage."""
    pmp_formats: list[PMPFormat] = Field(default_factory=lambda: ["binary", "ranked"])
    """PMP variants: 'binary' (the paper's binarised set) and/or 'ranked' (the automatic pairs as they are)."""
    lr: float = Field(3e-4, gt=0)
    """Peak learning rate of PM fine-tuning."""
    batch_size: int = Field(16, ge=1)
    """Comparisons per PM step."""
    min_steps: int = Field(16, ge=1)
    """At least this many PM steps however small the training set."""

    @field_validator("efficiency_n")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("every efficiency_n must be >= 1")
        return v
