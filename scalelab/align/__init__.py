"""Preference models and (later) RLHF: the science of learning from comparisons.

- `PreferenceModel` (pm.py): a backbone with a scalar head read at an appended end token;
  ``score(texts)``, ``score(prompts, responses)``, ``reward(prompt_ids, response_ids)``,
  ``save(path)`` / ``PreferenceModel.load(path)``; `load_pm(path_or_run, workdir, device)` loads
  any scorer (a saved PM, a scalelab LM checkpoint, a Hugging Face folder).
- objectives.py: the ranked, binary-discrimination and imitation losses of Askell et al. 2021.
- pm_train.py: `train_pm`, `evaluate_pm` (accuracy with bootstrap CI, calibration).
- pm_data.py: comparison files and automatic sets (code:, corruptions:, arith), splits, PMP sets.
- pm_run.py: `run_pm(PMRunSpec, workdir)`, one recorded run (PMP, fine-tuning, evaluation,
  checkpoint), and `pm_worker`, the same run as a sweep worker.

Names are imported lazily: ``import scalelab.align`` does not load torch or the training stack.
"""

from importlib import import_module

_HOMES = {
    "OBJECTIVES": "objectives", "binary_loss": "objectives", "imitation_loss": "objectives",
    "ranked_loss": "objectives", "PreferenceModel": "pm", "encode_pairs": "pm", "load_pm": "pm",
    "PMRunSpec": "pm_run", "run_pm": "pm_run", "pm_worker": "pm_run", "PMTrainConfig": "pm_train",
    "evaluate_pm": "pm_train", "train_pm": "pm_train",
}  # fmt: skip

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'scalelab.align' has no attribute {name!r}")
    return getattr(import_module(f"scalelab.align.{_HOMES[name]}"), name)
