"""The typed state of a training run: what it has done so far, saved in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainState:
    """Counters and results of a run; `state.pt` holds `to_dict()` under the key "state"."""

    step: int = 0
    """Optimizer steps done."""
    tokens: int = 0
    """Training tokens consumed (all processes)."""
    elapsed: float = 0.0
    """Wall seconds of all earlier sessions (the running session's time is added at checkpoints)."""
    train_time: float = 0.0
    """Seconds spent in training steps, evaluation and checkpoints excluded: the tokens/s denominator."""
    best_val: float | None = None
    best_step: int | None = None
    """Step of the evaluation that gave `best_val`."""
    best_tokens: int | None = None
    """Training tokens consumed by then."""
    evals_since_best: int = 0
    """Evaluations since the last new best validation loss (early stopping counts these)."""
    time_to_target: float | None = None
    """Wall seconds until the validation loss first reached the target, if one was given."""
    last_val: float | None = None
    last_train_est: float | None = None
    """Loss on the fixed training windows at the last evaluation."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})
