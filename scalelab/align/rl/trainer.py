"""The RL loop's parts: one training step per algorithm, the evaluation, and the state that resumes exactly.

`RLTrainer.step()` does one rollout and update (PPO, RLOO) or one DPO minibatch and returns the
step's metrics; `evaluate()` samples the held-out prompts with a fixed seed and scores them with the
proxy PM, the gold reward and the eval PMs; `best_of_n()` is the whole best-of-N baseline.
`state_dict()` holds everything a resumed run needs besides the policy weights: optimizer, value
function, KL controller, both random generators, counters and the eval history (plain data only).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from scalelab.align.rl.best_of_n import best_of_n_kl, best_of_n_subsets
from scalelab.align.rl.config import RLRunSpec
from scalelab.align.rl.dpo import dpo_step, sequence_logprobs
from scalelab.align.rl.kl import AdaptiveKLController, FixedKLController
from scalelab.align.rl.ppo import ValueFunction, evaluate, ppo_update
from scalelab.align.rl.rewards import RewardFn, kl_per_token, pm_scores, shape_rewards, text_scores
from scalelab.align.rl.rloo import repeat_prompts, rloo_update
from scalelab.align.rl.rollout import Rollout, policy_logprobs, rollout_from_ids, sample_responses
from scalelab.errors import UserError

EVAL_SEED = 10_007  # every evaluation samples the held-out prompts with the same seed


class RLStopped(UserError):
    """NaN rewards or a KL explosion: the run stops; its last good checkpoint is kept."""


@dataclass
class Models:
    """What a trainer optimises and scores with."""

    policy: torch.nn.Module
    reference: torch.nn.Module
    tokenizer: object
    pm: object | None = None
    eval_pms: list = field(default_factory=list)
    gold: RewardFn | None = None


class RLTrainer:
    def __init__(self, spec: RLRunSpec, models: Models, prompts: tuple[list[str], list[str]],
                 prompt_ids: tuple[list[list[int]], list[list[int]]], device: torch.device, lr: float,
                 dpo_pairs: list[tuple[list[int], list[int], list[int]]] | None = None):  # fmt: skip
        self.spec, self.m, self.device = spec, models, device
        self.train_texts, self.eval_texts = prompts
        self.train_ids, self.eval_ids = prompt_ids
        self.eot = models.tokenizer.eot_id
        self.value_fn = ValueFunction(models.policy, spec.value).to(device) if spec.algo == "ppo" else None
        params = list(models.policy.parameters()) + (list(self.value_fn.parameters()) if self.value_fn else [])
        params = list({id(p): p for p in params}.values())  # the critic copy never shares, the head never
        self.optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.0)
        self.kl_ctl = (AdaptiveKLController(spec.lambda_kl, spec.kl_target, spec.kl_horizon) if spec.adaptive_kl
                       else FixedKLController(spec.lambda_kl))  # fmt: skip
        self.gen = torch.Generator(device=device).manual_seed(spec.seed)  # sampling
        self.shuffle = torch.Generator().manual_seed(spec.seed + 1)  # minibatch order
        self.dpo_pairs = dpo_pairs or []
        self.step_no, self.samples, self.tokens = 0, 0, 0
        self.evals: list[dict] = []

    # ------------------------------------------------------------------ scoring
    def score(self, rollout: Rollout, texts: list[str]) -> torch.Tensor:
        """(B,) the optimised score: the proxy PM at each response's real end, or the gold reward."""
        if self.spec.reward == "pm":
            return pm_scores(self.m.pm, rollout, self.eot).to(self.device)
        return text_scores(self.m.gold, texts, rollout.decode(self.m.tokenizer)).to(self.device)

    def _ref_logp(self, rollout: Rollout) -> torch.Tensor:
        with torch.inference_mode():  # the frozen reference: no autograd bookkeeping at all
            logp = policy_logprobs(self.m.reference, rollout)[0]
        return logp.clone()  # a normal tensor again, usable next to autograd

    # ------------------------------------------------------------------ one step
    def _prompt_batch(self, n: int) -> list[int]:
        rng = np.random.default_rng([self.spec.seed, self.step_no])
        pool = len(self.train_ids)
        return rng.choice(pool, size=n, replace=n > pool).tolist()

    def step(self) -> dict:
        """One policy update; returns the step's train metrics."""
        t0 = time.perf_counter()
        if self.spec.algo == "dpo":
            out = self._dpo_step()
        else:
            out = self._rl_step()
        self.step_no += 1
        out["samples_per_s"] = out.pop("_n") / max(time.perf_counter() - t0, 1e-9)
        return out

    def _rl_step(self) -> dict:
        spec = self.spec
        k = spec.rloo_k if spec.algo == "rloo" else 1
        rows = self._prompt_batch(spec.batch_size // k)
        ids = repeat_prompts([self.train_ids[i] for i in rows], k)
        texts = [self.train_texts[i] for i in rows for _ in range(k)]
        ro = sample_responses(self.m.policy, ids, max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                              top_k=spec.top_k, eot_id=self.eot, generator=self.gen)  # fmt: skip
        scores = self.score(ro, texts)
        if not torch.isfinite(scores).all():
            raise RLStopped(f"the reward is NaN or infinite for {int((~torch.isfinite(scores)).sum())} responses at "
                            f"step {self.step_no + 1}; check the PM / reward function")  # fmt: skip
        mask = ro.response_mask.float()
        with torch.no_grad():
            ref_logp = self._ref_logp(ro)
            if self.value_fn is not None:
                old_logp, _, old_values = evaluate(self.m.policy, self.value_fn, ro)
            else:  # the sampling log-probs are the policy's (to float rounding): no second forward
                old_logp = ro.logprobs
        kl_tok = kl_per_token(old_logp, ref_logp, mask, spec.kl_estimator)
        lam = self.kl_ctl.value
        rew = shape_rewards(scores, kl_tok, mask, ro.ended, lambda_kl=lam, no_end_penalty=spec.no_end_penalty)
        kl_k1 = float(((old_logp - ref_logp) * mask).sum(1).mean())
        if not math.isfinite(kl_k1) or kl_k1 > spec.kl_stop:
            raise RLStopped(f"KL explosion at step {self.step_no + 1}: KL = {kl_k1:.3g} nats per response exceeds "
                            f"kl_stop={spec.kl_stop:g}; lower lr, raise lambda_kl or use adaptive_kl")  # fmt: skip
        if spec.algo == "ppo":
            stats = ppo_update(self.m.policy, self.value_fn, self.optimizer, ro, old_logp, old_values, rew.tokens,
                               spec, self.shuffle)  # fmt: skip
        else:
            stats = rloo_update(self.m.policy, self.optimizer, ro, old_logp, rew.sequence, spec, self.shuffle)
        if not math.isfinite(stats.get("loss", 0.0)):
            raise RLStopped(f"the loss became NaN at step {self.step_no + 1}; lower lr")
        self.kl_ctl.update(kl_k1, len(ro))
        n_tok = int(mask.sum())
        self.samples += len(ro)
        self.tokens += n_tok
        stats.pop("loss", None)
        return {"reward": float(scores.mean()), "reward_total": float(rew.sequence.mean()), "kl": kl_k1,
                "sqrt_kl": math.sqrt(max(kl_k1, 0.0)), "resp_len": n_tok / len(ro), "lambda_kl": lam,
                "ended": sum(ro.ended) / len(ro), **stats, "_n": len(ro)}  # fmt: skip

    def _dpo_step(self) -> dict:
        spec = self.spec
        if not self.dpo_pairs:
            raise UserError("DPO has no comparisons to train on; give dpo_data (a comparison file)")
        n = len(self.dpo_pairs)
        start = (self.step_no * spec.batch_size) % n
        batch = [self.dpo_pairs[(start + i) % n] for i in range(min(spec.batch_size, n))]
        chosen = rollout_from_ids([p for p, _, _ in batch], [c for _, c, _ in batch], eot_id=self.eot,
                                  device=self.device)  # fmt: skip
        rejected = rollout_from_ids([p for p, _, _ in batch], [r for _, _, r in batch], eot_id=self.eot,
                                    device=self.device)  # fmt: skip
        with torch.no_grad():
            ref_c, ref_r = sequence_logprobs(self.m.reference, chosen), sequence_logprobs(self.m.reference, rejected)
        stats = dpo_step(self.m.policy, self.optimizer, chosen, rejected, ref_c, ref_r, spec)
        if not math.isfinite(stats["loss"]):
            raise RLStopped(f"the DPO loss became NaN at step {self.step_no + 1}; lower lr")
        self.samples += 2 * len(batch)
        return {**stats, "_n": 2 * len(batch)}

    # ------------------------------------------------------------------ evaluation
    def _sample_eval(self, ids: list[list[int]], seed: int) -> Rollout:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return sample_responses(self.m.policy, ids, max_new_tokens=self.spec.max_new_tokens,
                                temperature=self.spec.temperature, top_k=self.spec.top_k, eot_id=self.eot,
                                generator=gen)  # fmt: skip

    def _all_scores(self, ro: Rollout, texts: list[str]) -> dict[str, torch.Tensor]:
        """(B,) scores of every scorer the spec names: 'reward' (proxy PM, else the optimised), 'gold', 'pm_i'."""
        out: dict[str, torch.Tensor] = {}
        responses = ro.decode(self.m.tokenizer)
        if self.m.pm is not None:
            out["reward"] = pm_scores(self.m.pm, ro, self.eot)
        if self.m.gold is not None:
            out["gold"] = text_scores(self.m.gold, texts, responses)
        if "reward" not in out:
            out["reward"] = out["gold"]
        for i, pm in enumerate(self.m.eval_pms):
            out[f"pm_{i}"] = pm_scores(pm, ro, self.eot)
        return out

    def evaluate(self) -> dict:
        """Held-out prompts, same seed every time: mean scores, KL(policy || reference) and sqrt(KL)."""
        ro = self._sample_eval(self.eval_ids, self.spec.seed + EVAL_SEED)
        with torch.no_grad():
            logp = policy_logprobs(self.m.policy, ro)[0]
            kl = float(((logp - self._ref_logp(ro)) * ro.response_mask).sum(1).mean())
        out = {k: float(v.float().mean()) for k, v in self._all_scores(ro, self.eval_texts).items()}
        out.update(kl=kl, sqrt_kl=math.sqrt(max(kl, 0.0)), resp_len=float(ro.response_lengths.float().mean()),
                   ended=sum(ro.ended) / len(ro))  # fmt: skip
        self.evals.append({"step": self.step_no, **out})
        return out

    def best_of_n(self) -> list[dict]:
        """Best-of-N for every N of bon_n from one draw of max(bon_n) samples per held-out prompt.

        The selection uses the optimised score; each point reports the selected samples' proxy,
        gold and eval-PM scores and the analytic KL = log N - (N - 1) / N.
        """
        m = max(self.spec.bon_n)
        ids = repeat_prompts(self.eval_ids, m)
        texts = [t for t in self.eval_texts for _ in range(m)]
        ro = self._sample_eval(ids, self.spec.seed + EVAL_SEED)
        scores = self._all_scores(ro, texts)
        chooser = (scores["reward"] if self.spec.reward == "pm" else scores["gold"]).view(-1, m)  # (P, M)
        points = []
        for n in self.spec.bon_n:
            pick = best_of_n_subsets(chooser, n)  # (P,)
            point = {k: float(v.view(-1, m).gather(1, pick[:, None]).mean()) for k, v in scores.items()}
            kl = best_of_n_kl(n)
            point.update(n=n, kl=kl, sqrt_kl=math.sqrt(kl))
            points.append(point)
            self.evals.append({"step": n, **point})
        self.samples += len(ro)
        return points

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "value": self.value_fn.state_dict() if self.value_fn is not None else None,
                "kl_ctl": self.kl_ctl.state_dict(), "gen": self.gen.get_state(), "shuffle": self.shuffle.get_state(),
                "counters": {"step": self.step_no, "samples": self.samples, "tokens": self.tokens},
                "evals": [dict(e) for e in self.evals]}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value_fn is not None and state.get("value") is not None:
            self.value_fn.load_state_dict(state["value"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.gen.set_state(state["gen"])
        self.shuffle.set_state(state["shuffle"])
        c = state["counters"]
        self.step_no, self.samples, self.tokens = int(c["step"]), int(c["samples"]), int(c["tokens"])
        self.evals = [dict(e) for e in state["evals"]]
