"""The predictability study: Ganguli et al. 2022 ("Predictability and surprise in large generative models",
arXiv 2202.07785).

Question: the loss of a model family falls smoothly and predictably with compute, yet specific
capabilities can appear abruptly (3-digit addition with GPT-3). Is that so here, and how much worse is a
forecast of a capability than a forecast of the loss?

Design: a ladder of model sizes on one corpus (the embedded standard library by default), with
capability tasks mixed into the training data (`base.data.tasks`, e.g. 2-digit addition as a share of
the training tokens, so that a capability can emerge at small scale) and scored at every evaluation
(`base.data.eval_tasks`): exact match of the greedy completion (thresholded) and the log-probability of
the answer (continuous); the tasks are in `scalelab/data/task_mix.py`, the scoring in `evals/tasks.py`.
Evaluation examples come from another seed stream than training examples, and training skips their
prompts (except in tasks too small to avoid them, such as 1-digit addition).

Outputs (`analyze`):
- `sizes`: per run, compute, final validation loss and each task's exact match (Wilson 95% interval)
  and answer log-prob; `loss_curves` and `task_curves` over training;
- `abrupt` {task: bool} by the rule of `scalelab.laws.abrupt` (exact match jumps between adjacent sizes
  beyond what the log-prob trend predicts), with the z-scores in `abrupt_detail`;
- the forecast of the largest run from the smaller ones: `loss_forecast_error` (relative error of
  L(C) = E + A C^-alpha) and `task_forecast_errors` {task: {exact_abs_error, logprob_abs_error,
  logprob_rel_error}} (straight lines in log C), the paper's contrast.
Presets: quick (2 CPU cores, <= 15 min), full (one GPU).
"""

from scalelab.studies.predictability.analyze import analyze, summary
from scalelab.studies.predictability.config import Config
from scalelab.studies.predictability.figures import figures
from scalelab.studies.predictability.plan import plan

__all__ = ["Config", "analyze", "figures", "plan", "summary"]
