"""The training metrics logger: its own cadence (`log_every`, plus step 1 and every evaluation or
checkpoint step), throughput over the steps since the last log, the live progress line and the
`progress.json` file; rows are buffered and written to the run's record when flushed."""

from __future__ import annotations

import math
import time

import torch

from scalelab.errors import RunDiverged
from scalelab.train.progress import ProgressFile, TrainProgress
from scalelab.train.state import TrainState


class MetricLogger:
    def __init__(self, rec, log_every: int, iters: int, tokens_per_step: int, flops_per_token: int,
                 device: torch.device, bar: TrainProgress, progress_file: ProgressFile):  # fmt: skip
        self.rec, self.every, self.iters, self.tokens_per_step = rec, log_every, iters, tokens_per_step
        self.fpt, self.device, self.bar, self.file = flops_per_token, device, bar, progress_file
        self.rows: list[tuple] = []
        self.window_tokens, self.window_time = 0, 0.0
        self.mark = time.perf_counter()
        self.loss: float | None = None
        self.val: float | None = None
        self._published: tuple | None = None

    def due(self, step: int, also: bool = False) -> bool:
        return step % self.every == 0 or step == 1 or also

    def log(self, state: TrainState, split: str, name: str, value: float) -> None:
        self.rows.append((state.step, state.tokens, state.tokens * self.fpt, split, name, float(value)))

    def step_done(self, state: TrainState, loss: torch.Tensor, gnorm: torch.Tensor, lr: float, log_now: bool,
                  elapsed_s: float, eta_s: float | None) -> None:  # fmt: skip
        """Account a finished step; check the loss is finite (every step on CPU, where it is free);
        at log steps add the loss, lr and tokens/s rows and refresh the progress line and file."""
        self.window_tokens += self.tokens_per_step
        if not (log_now or self.device.type == "cpu"):
            return
        self.loss = loss.item()
        if not (math.isfinite(self.loss) and math.isfinite(float(gnorm))):
            raise RunDiverged(f"loss became {self.loss} (grad norm {float(gnorm)}) at step {state.step}")
        if not log_now:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.window_time += now - self.mark
        state.train_time += now - self.mark
        tps = self.window_tokens / self.window_time if self.window_time > 0 else 0.0
        self.log(state, "train", "loss", self.loss)
        self.log(state, "train", "lr", lr)
        self.log(state, "train", "tokens_per_s", tps)
        self.bar.update(state.step, self.loss, tps)
        self._published = (state.step, self.iters, self.loss, tps, elapsed_s, eta_s)
        self._publish()
        self.window_tokens, self.window_time = 0, 0.0

    def _publish(self) -> None:
        if self._published is not None:
            step, iters, loss, tps, elapsed_s, eta_s = self._published
            self.file.write(step, iters, loss, self.val, tps, elapsed_s, eta_s)

    def eval_done(self, val: float) -> None:
        self.val = val
        self.bar.eval(val)
        self._publish()

    def restart_clock(self) -> None:
        """Time after this point counts as training (evaluation and checkpoints before it do not)."""
        self.mark = time.perf_counter()

    def flush(self) -> None:
        if self.rec is not None and self.rows:
            self.rec.log(self.rows)
        self.rows.clear()
