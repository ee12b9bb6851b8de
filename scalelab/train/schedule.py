"""Learning-rate schedules as a multiplier in [0, 1] of the peak rate, by step."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float, decay_fraction: float) -> float:
    """Multiplier of the peak lr at `step` (0-based).

    - warmup: linear from 1/(warmup+1) to 1 over the first `warmup` steps;
    - 'cosine': cosine from 1 down to `min_ratio` at `total`;
    - 'wsd' (warmup-stable-decay, Hu et al. 2024): flat, then linear to `min_ratio` over the last
      `decay_fraction` of the steps;
    - 'constant': flat after warmup.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)) * (1.0 - min_ratio)
    if schedule == "wsd":
        decay_start = total - int(decay_fraction * total)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total - decay_start))
        return 1.0 - progress * (1.0 - min_ratio)
    raise ValueError(f"unknown schedule {schedule!r}")
