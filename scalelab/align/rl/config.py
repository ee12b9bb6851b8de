"""`RLRunSpec`: everything one RL run depends on; saved with the run and hashed to find finished runs.

Defaults follow Bai et al. 2022 (arXiv 2204.05862, section 4 and appendix B): lambda_KL = 0.001,
PPO clip 0.2, gamma 1, GAE lambda 0.95, no entropy bonus, 1-4 epochs per batch, lr 0.01x the
pre-training rate.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from scalelab.config import NonNegativeFloat, Positive, Rate, _Strict, stamp_input
from scalelab.store import RUN_REF  # noqa: F401  (re-exported: "run:NAME" references)

ALGOS = ("ppo", "rloo", "dpo", "best-of-n")
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class RLRunSpec(_Strict):
    """One policy-optimisation run: policy, reward, algorithm and budget."""

    name: str = "rl"
    """Run name in the store (a study names each planned run)."""
    group: str | None = None
    """Sweep group (a study's name); 'run:NAME' references resolve inside it."""
    policy: str
    """The starting policy: a run id / name, a run or checkpoint folder, or 'run:NAME' (completed run of the group)."""
    reference: str | None = None
    """The frozen model of the KL penalty (same forms as policy); None: the starting policy. Set it when a
    policy continues an earlier RL run, so that KL is still measured from the original model."""
    pm: str | None = None
    """The proxy preference model: a PM run id / folder or 'run:NAME'; None when optimising a gold reward."""
    gold: str | None = None
    """A gold reward name (scalelab.align.gold.GOLD_REWARDS), scored on every evaluation."""
    reward: Literal["pm", "gold"] = "pm"
    """What is optimised: the proxy PM's score or the gold reward."""
    eval_pms: list[str] = Field(default_factory=list)
    """Extra PMs (same forms as pm) scoring the eval samples, logged as pm_<i>: e.g. the test PM."""
    run_hashes: dict[str, str] = Field(default_factory=dict)
    """For 'run:NAME' references: the config hash that run must have (a study's plan sets it)."""
    algo: Literal["ppo", "rloo", "dpo", "best-of-n"] = "ppo"
    """Policy optimisation: PPO, RLOO, DPO on the PM's comparisons, or best-of-N sampling (no training)."""
    prompts: str = "builtin"
    """'builtin' (deterministic prompts from the embedded corpus) or a file: text lines or JSONL."""
    prompt_field: str = "prompt"
    """Field of a JSONL prompt file holding the prompt."""
    n_prompts: Positive = 256
    """At most this many builtin prompts (train and eval together)."""
    eval_prompts: Positive = 16
    """Prompts held out from training and sampled at every evaluation."""
    steps: Positive = 20
    """Policy updates (PPO/RLOO rollouts, DPO minibatches); best-of-N ignores it."""
    batch_size: Positive = 8
    """Responses per rollout (RLOO: prompts x rloo_k), or DPO pairs per step."""
    max_new_tokens: Positive = 24
    """Longest response in tokens."""
    temperature: Rate = 1.0
    top_k: Positive | None = None
    lambda_kl: NonNegativeFloat = 0.001
    """Initial KL coefficient lambda_KL of the reward r = r_PM - lambda_KL * KL (Bai et al. 2022)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-token KL estimator of the penalty (Schulman 2020)."""
    adaptive_kl: bool = False
    """Adapt lambda_KL towards kl_target (Ziegler et al. 2019)."""
    kl_target: Rate = 6.0
    """Target KL (nats per response) of the adaptive controller."""
    kl_horizon: Positive = 10000
    """Horizon (samples) of the adaptive controller."""
    kl_stop: Rate = 100.0
    """Stop the run when the mean KL per response exceeds this (a KL explosion)."""
    gamma: Unit = 1.0
    """Discount of GAE."""
    lam: Unit = 0.95
    """GAE lambda."""
    clip: Rate = 0.2
    """PPO ratio clip epsilon."""
    vf_clip: Rate = 0.2
    """Value clipping range around the rollout's values."""
    vf_coef: NonNegativeFloat = 0.1
    """Weight of the value loss (value head on the trunk shares the optimizer)."""
    epochs: Positive = 2
    """PPO epochs per rollout."""
    minibatches: Positive = 2
    """Minibatches per PPO epoch."""
    max_grad_norm: Rate = 1.0
    """Gradient clipping (global norm)."""
    whiten_advantages: bool = True
    lr: Rate | None = None
    """Learning rate; default 0.01x the policy run's pre-training lr (1e-5 when unknown)."""
    value: Literal["critic", "head"] = "head"
    """Value function: a separate critic (a copy of the policy with a scalar head) or a head on the policy trunk."""
    rloo_k: Positive = 4
    """RLOO samples per prompt (>= 2)."""
    bon_n: list[Positive] = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    """Best-of-N: the N evaluated (all from one draw of max(bon_n) samples per prompt)."""
    dpo_beta: Rate = 0.1
    """DPO temperature beta (Rafailov et al. 2023)."""
    dpo_data: str | None = None
    """DPO comparisons: a comparison file or keyword; default: the PM run's training data."""
    no_end_penalty: float = 0.0
    """Added to the reward of a response that produced no end token (e.g. -1)."""
    eval_every: Positive = 5
    """Evaluate (held-out prompts, proxy/gold/eval PMs, KL) every this many steps, and at the end."""
    ckpt_every: Positive = 10
    """Checkpoint every this many steps (and at the end)."""
    seed: int = 0
    device: str = "auto"
    threads: Positive | None = None

    @field_validator("bon_n")
    @classmethod
    def _sorted_n(cls, v: list[int]) -> list[int]:
        return sorted(set(v))

    @model_validator(mode="after")
    def _check(self) -> RLRunSpec:
        if self.reward == "pm" and not self.pm and self.algo != "dpo":
            raise ValueError("reward 'pm' needs a preference model: give pm (--pm PM_RUN), or set reward='gold' "
                             "with a gold reward name")  # fmt: skip
        if self.reward == "gold" and not self.gold:
            raise ValueError("reward 'gold' needs a gold reward name: set gold=NAME")
        if self.algo == "rloo" and self.rloo_k < 2:
            raise ValueError("RLOO needs rloo_k >= 2 samples per prompt for a leave-one-out baseline")
        if self.algo == "rloo" and self.batch_size % self.rloo_k:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of rloo_k ({self.rloo_k})")
        if self.minibatches > self.batch_size:
            raise ValueError(f"minibatches ({self.minibatches}) exceeds batch_size ({self.batch_size})")
        return self

    def to_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, d: dict) -> RLRunSpec:
        from scalelab.config import build_config

        return build_config(d, "RL run spec", cls=cls)

    def config_hash(self) -> str:
        """Hash of what changes the result: the spec without name, group, threads; input files by content."""
        d = self.to_dict()
        for key in ("name", "group", "threads"):
            d.pop(key)
        for key in ("policy", "pm", "prompts", "dpo_data"):
            if d[key]:
                d[key] = stamp_input(d[key])
        d["eval_pms"] = [stamp_input(p) for p in d["eval_pms"]]
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
