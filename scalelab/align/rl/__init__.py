"""Policy optimisation against a preference model: RLHF as in Bai et al. 2022 (arXiv 2204.05862).

One idea per module, readable like CleanRL's single-file PPO:

- `rollout`: batched sampling with the KV cache (`sample_responses` -> `Rollout`);
- `kl`: per-token KL estimators k1 / k3 and the adaptive KL controller;
- `rewards`: PM score at the real end of each response, no-end penalty, KL penalty; text rewards;
- `ppo`, `rloo`, `dpo`: the three optimisers; `best_of_n`: the sampling baseline and its KL;
- `fits`: reward vs sqrt(KL) (Bai et al.) and the gold over-optimisation curve (Gao et al. 2022);
- `config`: `RLRunSpec`; `prompts`: builtin prompts and prompt files; `models`: loading the policy,
  its frozen reference, PMs and gold rewards; `trainer`: one step, evaluation and resumable state;
  `run`: one RL run in the store (`run_rl`, and `rl_worker` = run kind "rl" of the sweep executor).
"""

from scalelab.align.rl.best_of_n import best_of_n_kl, best_of_n_select
from scalelab.align.rl.config import RLRunSpec
from scalelab.align.rl.fits import gold_curve_fit, sqrt_kl_fit
from scalelab.align.rl.kl import AdaptiveKLController, kl_k1, kl_k3
from scalelab.align.rl.rollout import Rollout, sample_responses

__all__ = [
    "AdaptiveKLController",
    "RLRunSpec",
    "Rollout",
    "best_of_n_kl",
    "best_of_n_select",
    "gold_curve_fit",
    "kl_k1",
    "kl_k3",
    "sample_responses",
    "sqrt_kl_fit",
]
