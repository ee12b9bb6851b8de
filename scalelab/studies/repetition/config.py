"""The repeated-data study's typed config: one TOML preset, `--set` overrides, validated here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from scalelab.config import RunConfig, _Strict


class Design(_Strict):
    """Which runs are trained: Hernandez et al. 2022, Section 2, at any scale."""

    sizes: list[str] = Field(default_factory=lambda: ["L1", "L2"])
    """Model sizes trained with and without repetition (ladder names 'L1', 's', ... or counts '1e6')."""
    baseline_sizes: list[str] = Field(default_factory=list)
    """Extra sizes trained without repetition only: more points for the baseline law L(N)."""
    repeat_fractions: list[float] = Field(default_factory=lambda: [0.5])
    """Shares f of the training tokens drawn from the repeated subset, in (0, 1]."""
    repeat_epochs: list[int] = Field(default_factory=lambda: [4, 64])
    """Repeat counts R >= 2 of the subset (it holds f D / R tokens, exact to the token)."""
    seeds: int = 1
    """Seeds of every cell, baselines and treatments (base seed, base seed + 1, ...): intervals over seeds."""
    baseline_extra_seeds: int = 0
    """Further seeds of the baselines only, to measure seed noise more cheaply."""
    baseline_token_fractions: list[float] = Field(default_factory=list)
    """Extra baselines at these fractions of the token budget: the data-constrained law's base L(N, D)."""

    @model_validator(mode="after")
    def _check(self) -> Design:
        if not self.sizes:
            raise ValueError("design.sizes needs at least one model size, e.g. ['L1', 'L2']")
        if not self.repeat_fractions or any(not 0 < f <= 1 for f in self.repeat_fractions):
            raise ValueError("design.repeat_fractions must be non-empty and lie in (0, 1], e.g. [0.5]")
        if not self.repeat_epochs or any(r < 2 for r in self.repeat_epochs):
            raise ValueError("design.repeat_epochs must be non-empty and >= 2, e.g. [4, 16, 64]")
        if self.seeds < 1 or self.baseline_extra_seeds < 0:
            raise ValueError("design.seeds must be >= 1 and design.baseline_extra_seeds >= 0")
        if any(not 0 < x < 1 for x in self.baseline_token_fractions):
            raise ValueError("design.baseline_token_fractions must lie in (0, 1), e.g. [0.25, 0.5]")
        return self


class Corpus(_Strict):
    """A training corpus in which copying pays (`data.repetition.write_copy_corpus`).

    Induction heads form in small models only when the data rewards copying strongly and early
    (Olsson et al. 2022 see them after billions of natural-text tokens); documents of a random span
    repeated back to back make them form within minutes on a CPU, so that the study can ask whether
    repetition damages them.
    """

    chars: int = 8_000_000
    """Characters of the corpus (about the number of byte tokens)."""
    span_share: float = 1.0
    """Share of documents that are a random span repeated; the others are pieces of the stdlib text."""
    span_min: int = 8
    """Shortest random span (printable non-space ASCII, no character twice)."""
    span_max: int = 25
    """Longest random span."""
    copies_min: int = 3
    """Fewest copies of the span in its document."""
    copies_max: int = 5
    """Most copies of the span in its document."""
    piece_chars: int = 1024
    """Characters of each stdlib text document."""
    seed: int = 0
    """Seed of the spans."""


class Analysis(_Strict):
    """How the runs are turned into numbers."""

    noise_z: float = 3.0
    """Rises, degradations and peaks count when above noise_z standard errors."""
    noise_floor: float = 0.0
    """A lower bound on the eval noise sigma (nats), e.g. a seed-to-seed spread measured separately."""
    law_bootstrap: Literal["auto", "cases", "parametric"] = "auto"
    """Bootstrap of L(N): resample runs ('cases', >= 5 sizes), redraw losses with the noise, or auto."""
    bootstrap: int = 200
    """Refits of the baseline law."""
    fit_params: Literal["nonembed", "total"] = "nonembed"
    """Which N the baseline law uses (Kaplan et al. 2020: non-embedding)."""
    seed: int = 0
    """Seed of the bootstrap and noise draws of the analysis."""


class Config(_Strict):
    """The study: its name (the store group of its runs), the design, the base run, the analysis."""

    name: str = "repetition"
    """Group of the study's runs in the store, and its report's file name."""
    design: Design = Design()
    base: RunConfig = RunConfig()
    """Every run's config before the design sets model.size, data.repeat_* and train.seed."""
    corpus: Corpus | None = None
    """If set, train on a generated corpus with repeated random spans (written into the work directory)."""
    evals_per_run: int = 16
    """Evaluations spread over each run: the test-loss curves of the double descent during training."""
    warmup_fraction: float = 0.05
    """train.warmup_iters = this fraction of each run's steps."""
    probes: bool = True
    """Run the mechanism probes (prefix matching, copying, in-context learning) at every evaluation."""
    workers: int = 1
    """Runs trained at once by local processes (each gets cores / workers threads)."""
    analysis: Analysis = Analysis()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.base.train.iters is None:
            raise ValueError("base.train.iters must be set: every run of the study trains for the same steps")
        return self
