"""A live progress line for training (rich), on stderr so that `--json` output stays clean."""

from __future__ import annotations

import sys


class TrainProgress:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.bar = None
        self.task = None
        self.val = float("nan")

    def start(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task("train", total=total, completed=done, info="")

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
