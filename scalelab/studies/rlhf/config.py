"""The RLHF study's config: one typed model, read from a preset TOML and `--set` overrides."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from scalelab.studies.resources import Resources

Algo = Literal["ppo", "rloo", "dpo", "best-of-n"]


class Config(Resources):
    """What the study runs (presets: quick.toml, full.toml beside this file)."""

    name: str = "rlhf-quick"
    """The sweep group of the study's runs in the store."""
    policy_sizes: list[str] = Field(default_factory=lambda: ["3xs", "2xs"], min_length=1)
    """Policy sizes (the model ladder), smallest first; the last is the policy of every other comparison."""
    pm_sizes: list[str] = Field(default_factory=lambda: ["3xs", "2xs"], min_length=1)
    """Proxy PM backbone sizes, smallest first; the last is the train PM / test PM pair's size."""
    context: int = Field(128, ge=16)
    """Context of the pre-trained LMs in tokens (byte tokenizer)."""
    corpus: str = "stdlib"
    """Pre-training corpus of policies and PM backbones."""
    corpus_max_documents: int | None = Field(None, ge=1)
    """Read at most this many documents of the corpus (tiny tests)."""
    pretrain_iters: int = Field(300, ge=1)
    """Optimizer steps of each LM's pre-training (stage 0)."""
    pretrain_batch: int = Field(16, ge=1)
    """Sequences per pre-training step."""
    gold: str = "spacing"
    """Gold reward (scalelab.align.gold.GOLD_REWARDS): labels every comparison and scores every policy."""
    label_temperature: float = Field(0.1, ge=0)
    """Noisy Bradley-Terry labeller: P(A > B) = sigmoid((g_A - g_B) / T); 0 = noiseless."""
    n_labels: int = Field(512, ge=8)
    """Labeller queries (pairs of policy samples) of the train PM; the test PM gets as many others."""
    data_amounts: list[int] = Field(default_factory=lambda: [128], min_length=0)
    """Smaller label budgets of extra proxy PMs (largest PM size), each optimised by PPO: the data axis."""
    pm_lr: float = Field(3e-4, gt=0)
    """Learning rate of PM training."""
    pm_batch: int = Field(16, ge=1)
    """Comparisons per PM step."""
    pm_epochs: float = Field(3.0, gt=0)
    """Epochs over each PM's comparisons."""
    pm_min_steps: int = Field(20, ge=1)
    """At least this many PM steps however few the comparisons."""
    algos: list[Algo] = Field(default_factory=lambda: ["ppo", "rloo", "dpo", "best-of-n"], min_length=1)
    """Optimisers compared on the train PM (gold vs proxy); 'ppo' also runs the size and data axes."""
    steps: int = Field(16, ge=1)
    """Policy updates of each RL run (DPO: minibatches)."""
    batch_size: int = Field(16, ge=2)
    """Responses per rollout (RLOO: prompts x rloo_k), or DPO pairs per step."""
    max_new_tokens: int = Field(32, ge=1)
    """Longest response in tokens (bytes)."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of rollouts, labels and evaluations."""
    lr: float = Field(3e-4, gt=0)
    """RL learning rate (the paper's 0.01x pre-training lr is too slow for a few dozen steps of a tiny model)."""
    dpo_lr: float = Field(3e-4, gt=0)
    """DPO learning rate."""
    lambda_kl: float = Field(0.001, ge=0)
    """KL coefficient of the reward r = r_PM - lambda_KL KL (Bai et al. 2022)."""
    rloo_k: int = Field(4, ge=2)
    """RLOO samples per prompt."""
    bon_n: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    """Best-of-N: the N evaluated."""
    n_prompts: int = Field(256, ge=4)
    """Builtin prompts (function headers of the standard library), train and eval together."""
    eval_prompts: int = Field(32, ge=2)
    """Held-out prompts of every evaluation (never labelled, never trained on)."""
    eval_every: int = Field(1, ge=1)
    """Evaluate every this many RL steps (the points of the sqrt(KL) fits)."""
    online_rounds: int = Field(2, ge=0)
    """Rounds of iterated online training (sample, label, retrain the PM, continue RL); 0 or 1 to skip."""
    n_samples_shown: int = Field(6, ge=0)
    """Prompts shown with samples before and after RL in the report."""

    @field_validator("data_amounts", "bon_n")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("every value must be >= 1")
        return sorted(set(v))

    @field_validator("gold")
    @classmethod
    def _known_gold(cls, v: str) -> str:
        from scalelab.align.gold import GOLD_REWARDS

        if v not in GOLD_REWARDS:
            raise ValueError(f"no gold reward {v!r}; the gold rewards are: {', '.join(GOLD_REWARDS)}")
        return v

    @field_validator("bon_n")
    @classmethod
    def _with_one(cls, v: list[int]) -> list[int]:
        """N = 1 is the starting policy: the KL-0 point of best-of-N's gold curve."""
        return sorted({1, *v})

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.online_rounds > 1 and self.n_labels < 4 * self.online_rounds:
            raise ValueError(f"n_labels={self.n_labels} is too few for {self.online_rounds} online rounds")
        if "rloo" in self.algos and self.batch_size % self.rloo_k:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of rloo_k ({self.rloo_k})")
        return self
