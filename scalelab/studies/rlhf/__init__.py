"""Bai et al. 2022 (arXiv 2204.05862) in the gold-known setting of Gao et al. 2022 (arXiv 2210.10760).

Question: does the proxy reward of RLHF grow linearly in sqrt(KL(policy || initial policy)); when
does a policy over-fit the PM it optimises (train PM vs test PM); how far does the *true* reward
follow the proxy before over-optimisation sets in, for PPO, RLOO, best-of-N and DPO; and does
iterated online training (sample, label, retrain the PM, continue) beat one offline round at equal
labels?

Design (all runs in one sweep group, matched to the plan by config hash):

1. Stage 0: pre-train tiny byte-level GPTs on the embedded corpus (Python standard-library source):
   the policies (`policy_sizes`) and the PM backbones (`pm_sizes`).
2. Stage 1 (kind "gold-pm", `scalelab.align.gold_pm`): sample two responses per prompt (function
   headers of the standard library; the policy writes the body) from the largest policy; a noisy
   Bradley-Terry labeller on a gold reward (`scalelab.align.gold`; the quick preset's ``spacing`` has
   an interior optimum above what the initial policy writes, so the proxy learns a trend that holds
   only near the initial policy) chooses; proxy PMs are trained on those labels: the train PM and
   the test PM on the two halves, smaller PM sizes, smaller label budgets.
3. Stage 2 (kind "rl", `scalelab.align.rl`): PPO of every policy size against the train PM, PPO of
   the largest policy against every proxy PM, RLOO, DPO (on the train PM's comparisons) and
   best-of-N; each run evaluates held-out prompts with the proxy, the test PM and the gold reward.
4. Stages 3+: online rounds: a PM on every label so far plus labels of the last round's policy, PPO
   continued from that policy; as many labels and PPO steps in total as the offline run.

Outputs: `sqrt_kl_fit` (a, b, R^2, 95% bootstrap CI of b) per policy size, PM size and label budget;
`train_pm_vs_test_pm` (per-KL series, where they separate); `gold_vs_proxy` per algorithm (series,
R_gold(d) = d (alpha - beta d), the KL of the gold peak); `gold_peak_by_run` (the gold peak of PPO
against every proxy PM); `online_vs_offline`; samples before and after RL. The report draws the papers' figures.

    scalelab study rlhf --preset quick [--set gold=balanced] [--dry-run] [--json]
"""

from scalelab.studies.rlhf.analyze import analyze, summary
from scalelab.studies.rlhf.config import Config
from scalelab.studies.rlhf.figures import figures, sections
from scalelab.studies.rlhf.plan import plan

__all__ = ["Config", "analyze", "figures", "plan", "sections", "summary"]
