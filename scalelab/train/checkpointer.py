"""Checkpointing at its own cadence: every `ckpt_every` steps, at the last step, and on a stop."""

from __future__ import annotations

from pathlib import Path

import torch

from scalelab.errors import RunDiverged
from scalelab.model.gpt import GPT
from scalelab.train.checkpoint import load_state, load_weights, rng_state, save_checkpoint, set_rng_state
from scalelab.train.state import TrainState


class Checkpointer:
    """Saves and restores everything a bit-exact resume needs: weights, optimizers, the sampler's
    position, every RNG and the train state (see checkpoint.py for the folder format)."""

    def __init__(self, ckpt_dir: Path, every: int, tokenizer, config: dict, enabled: bool = True):
        self.dir, self.every, self.tokenizer, self.config, self.enabled = ckpt_dir, every, tokenizer, config, enabled

    def due(self, step: int, iters: int) -> bool:
        return step % self.every == 0 or step == iters

    def save(self, model: GPT, opts: list, sampler, state: TrainState, elapsed_s: float) -> None:
        """Write a checkpoint of `state.step` (only the main process writes); refuse non-finite weights."""
        if not self.enabled:
            return
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise RunDiverged(f"weights became non-finite by step {state.step}")
        st = state.to_dict() | {"elapsed": elapsed_s}
        full = {"state": st, "optimizers": [o.state_dict() for o in opts], "sampler": sampler.state_dict(),
                "rng": rng_state(), "config": self.config}  # fmt: skip
        save_checkpoint(self.dir, state.step, model, self.tokenizer, full)

    @staticmethod
    def load(path: Path, model: GPT, opts: list, sampler, device: torch.device) -> TrainState:
        """Restore a checkpoint folder into the model, optimizers, sampler and RNGs; return its state."""
        load_weights(model, path, device)
        full = load_state(path / "state.pt", device)
        for opt, sd in zip(opts, full["optimizers"]):
            opt.load_state_dict(sd)
        sampler.load_state_dict(full["sampler"])
        set_rng_state(full["rng"])
        return TrainState.from_dict(full["state"])
