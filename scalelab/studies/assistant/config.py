"""The assistant study's config: one typed model, read from a preset TOML and `--set` overrides."""

from __future__ import annotations

from pydantic import Field

from scalelab.studies.resources import Resources


class Config(Resources):
    """What the study runs (presets: quick.toml, full.toml beside this file)."""

    name: str = "assistant-quick"
    """The sweep group of the study's runs in the store."""
    sizes: list[str] = Field(default_factory=lambda: ["3xs", "2xs"], min_length=1)
    """Model sizes (the ladder), smallest first."""
    context: int = Field(256, ge=16)
    """Context of the models in tokens (byte tokenizer); the prompt takes part of it."""
    corpus: str = "stdlib"
    """Source of the documents; a share `upper_fraction` of them is written in capitals (the format)."""
    corpus_documents: int = Field(400, ge=10)
    """Documents read from the corpus."""
    upper_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of documents written in capital letters: the format a prompt can ask for."""
    prompt: str = "upper"
    """The prompt: a file or a shipped prompt ('upper': a few capitalised lines, 'assistant')."""
    pretrain_iters: int = Field(400, ge=1)
    pretrain_batch: int = Field(16, ge=1)
    top_k: int = Field(32, ge=1)
    """Teacher log-probs kept per position (plus the remainder bucket)."""
    distill_steps: int = Field(150, ge=1)
    distill_windows: int = Field(256, ge=1)
    """Windows of the corpus in the teacher cache."""
    distill_window: int = Field(64, ge=2)
    """Text tokens per window."""
    distill_lr: float = Field(1e-3, gt=0)
    pm_target: str = "code:stdlib"
    """The PM comparison set (automatic: code:, corruptions:, arith), texts short enough to fit beside the prompt."""
    pm_pairs: int = Field(800, ge=4)
    """Comparisons built (before the train/test split)."""
    pm_documents: int = Field(1000, ge=10)
    """Documents of the corpus source the comparisons are drawn from (as written, not capitalised)."""
    pm_epochs: float = Field(2.0, gt=0)
    """Passes over the training comparisons."""
    pm_test_fraction: float = Field(0.25, gt=0, lt=1)
    pm_lr: float = Field(1e-3, gt=0)
    pm_batch: int = Field(16, ge=1)
    pm_min_steps: int = Field(16, ge=1)
    n_choice: int = Field(100, ge=4)
    """Binary-choice items (format: the capitalised continuation vs the same text as written)."""
    n_loss_windows: int = Field(48, ge=4)
    """Held-out windows of the loss (alignment-tax) evaluation."""
    n_samples: int = Field(24, ge=2)
    """Samples per model for the format probe (share of capital letters written)."""
    ood_n: int = Field(200, ge=8)
    """Prompts per OOD set (in-fit, in-test, out-test each about n/2 .. n)."""
    ood_benchmark: str = "near"
    """'near' or 'far' (scalelab.data.ood_sets.benchmark)."""
