"""Preference models and (later) RLHF: the science of learning from comparisons.

- `PreferenceModel` (pm.py): a backbone with a scalar head read at an appended end token;
  ``score(texts)``, ``score(prompts, responses)``, ``reward(prompt_ids, response_ids)``,
  ``save(path)`` / ``PreferenceModel.load(path)``.
- objectives.py: the ranked, binary-discrimination and imitation losses of Askell et al. 2021.
- pm_train.py: `train_pm`, `evaluate_pm` (accuracy with bootstrap CI, calibration).
- pm_data.py: comparison files and automatic sets (code:, corruptions:, arith), splits, PMP sets.
- pm_run.py: `run_pm(PMRunSpec, workdir)`, one recorded run (PMP, fine-tuning, evaluation, checkpoint).
"""

from scalelab.align.objectives import OBJECTIVES, binary_loss, imitation_loss, ranked_loss
from scalelab.align.pm import PreferenceModel, encode_pairs
from scalelab.align.pm_run import PMRunSpec, run_pm
from scalelab.align.pm_train import PMTrainConfig, evaluate_pm, train_pm

__all__ = [
    "OBJECTIVES",
    "PMRunSpec",
    "PMTrainConfig",
    "PreferenceModel",
    "binary_loss",
    "encode_pairs",
    "evaluate_pm",
    "imitation_loss",
    "ranked_loss",
    "run_pm",
    "train_pm",
]
