"""Evaluation on fixed windows, at its own cadence: every `eval_every` steps and at the last step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from scalelab.config import TrainConfig
from scalelab.data.batches import eval_windows
from scalelab.model.gpt import GPT
from scalelab.train import distributed as dd
from scalelab.train.state import TrainState

Log = Callable[[TrainState, str, str, float], None]


@torch.no_grad()
def evaluate(model: GPT, windows, device: torch.device, ctx, d: dd.Dist) -> float:
    """Mean loss over fixed windows (n_batches, B, T + 1), split across processes."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in windows[d.rank :: d.world]:
        t = torch.from_numpy(batch).to(device)
        with ctx:
            _, loss = model(t[:, :-1], t[:, 1:])
        total += loss.item()
        count += 1
    model.train(was)
    if d.enabled:
        return dd.all_mean(total, d, device) / max(dd.all_mean(count, d, device), 1e-9)
    return total / max(count, 1)


class Evaluator:
    """Validation loss, the loss on fixed training windows (an estimate of the training loss without
    dropout noise), the repeated subset's loss when there is one, and any extra evaluations.

    The windows are drawn once with `eval_seed`, apart from the training seed, so that every
    evaluation of every seed replicate scores the same tokens.
    """

    def __init__(self, val_tokens, train_tokens, tc: TrainConfig, block_size: int, repeated_windows,
                 extra_evals: list, device: torch.device, ctx, d: dd.Dist, target: float | None):  # fmt: skip
        self.tc, self.T, self.device, self.ctx, self.d, self.target = tc, block_size, device, ctx, d, target
        self.val_tokens, self.train_tokens = val_tokens, train_tokens
        self.val_w = eval_windows(val_tokens, block_size, tc.batch_size, tc.eval_batches, tc.eval_seed)
        self.train_w = eval_windows(train_tokens, block_size, tc.batch_size, tc.eval_batches, tc.eval_seed + 1)
        self.repeated_w, self.extra_evals = repeated_windows, extra_evals

    def due(self, step: int, iters: int) -> bool:
        return step % self.tc.eval_every == 0 or step == iters

    def patience_spent(self, state: TrainState) -> bool:
        """Early stopping: `early_stop_patience` evaluations in a row without a new best validation loss."""
        patience = self.tc.early_stop_patience
        return patience is not None and state.evals_since_best >= patience

    def _windows(self, n_batches: int):
        if n_batches == self.tc.eval_batches:
            return self.val_w, self.train_w
        B, seed = self.tc.batch_size, self.tc.eval_seed
        return (eval_windows(self.val_tokens, self.T, B, n_batches, seed),
                eval_windows(self.train_tokens, self.T, B, n_batches, seed + 1))  # fmt: skip

    def run(self, model: GPT, state: TrainState, iters: int, log: Log, elapsed_s: Callable[[], float]) -> float:
        """Evaluate, log, update the state's best/last losses and time to target; return the val loss."""
        last = state.step == iters
        n_batches = (self.tc.final_eval_batches or self.tc.eval_batches) if last else self.tc.eval_batches
        vw, tw = self._windows(n_batches)
        val = evaluate(model, vw, self.device, self.ctx, self.d)
        est = evaluate(model, tw, self.device, self.ctx, self.d)
        state.last_val, state.last_train_est = val, est
        log(state, "val", "loss", val)
        log(state, "train", "loss_est", est)
        if self.repeated_w is not None:
            log(state, "repeated", "loss", evaluate(model, self.repeated_w, self.device, self.ctx, self.d))
        for fn in self.extra_evals:
            for name, value in fn(model, state.step).items():
                log(state, "eval", name, value)
        if state.best_val is None or val < state.best_val:
            state.best_val, state.best_step, state.best_tokens = val, state.step, state.tokens
            state.evals_since_best = 0
        else:
            state.evals_since_best += 1
        if self.target is not None and state.time_to_target is None and val <= self.target:
            state.time_to_target = elapsed_s()
        return val
