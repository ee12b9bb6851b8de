"""Training progress: a live line (rich) on stderr, so that `--json` output stays clean, and a
`progress.json` file in the run folder for other processes to read."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from scalelab.plain import to_plain


class TrainProgress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None
        self.task = None
        self.val = float("nan")

    def start(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        from scalelab.progress_bar import item_bar

        self.bar = item_bar("train", total, done)
        self.bar.start()
        self.task = self.bar.task_ids[0]

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self.bar is not None:
            info = f"loss {loss:.4f}  val {self.val:.4f}  {tokens_per_s:,.0f} tok/s"
            self.bar.update(self.task, completed=step, info=info)

    def eval(self, val: float) -> None:
        self.val = val

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class ProgressFile:
    """`<run_dir>/progress.json`, replaced atomically at every log step, for drivers that poll a run
    (study runners, sweeps): {"step", "iters", "loss", "val_loss", "tokens_per_s", "elapsed_s",
    "eta_s", "pid", "host", "time"}; numbers are floats or null (steps are integers)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.pid, self.host = os.getpid(), socket.gethostname()

    def write(self, step: int, iters: int, loss: float | None, val_loss: float | None, tokens_per_s: float | None,
              elapsed_s: float, eta_s: float | None) -> None:  # fmt: skip
        if self.path is None:
            return
        record = {"step": step, "iters": iters, "loss": loss, "val_loss": val_loss, "tokens_per_s": tokens_per_s,
                  "elapsed_s": elapsed_s, "eta_s": eta_s, "pid": self.pid, "host": self.host,
                  "time": time.time()}  # fmt: skip
        tmp = self.path.with_name(f".{self.path.name}.tmp{self.pid}")
        tmp.write_text(json.dumps(to_plain(record)))
        tmp.replace(self.path)
