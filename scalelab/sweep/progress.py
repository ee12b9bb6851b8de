"""A sweep's live progress line: runs done of planned, the running runs' step and loss, and an ETA.

Training processes write `<run folder>/progress.json` at every log step (replaced atomically); the
driver polls those files from a thread, so the same display works for runs trained in the driver,
in local processes and in Ray tasks on a shared file system. On a terminal the line is redrawn in
place; elsewhere (a log file, `--json` runs piped to a script) a line is printed every `every_s`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


class SweepProgress:
    """Polls the progress files of the running runs; `start(run_id, name, flops)` / `finish(run_id)`
    as runs begin and end. The ETA divides the FLOPs still to train by the FLOPs/s trained so far."""

    def __init__(self, workdir: Path, planned: int, done: int, flops_left: float, console: Console,
                 enabled: bool = True, every_s: float = 15.0):  # fmt: skip
        self.workdir, self.planned, self.done = Path(workdir), planned, done
        self.flops_left, self.flops_done = flops_left, 0.0
        self.console, self.enabled, self.every_s = console, enabled, every_s
        self.running: dict[str, tuple[str, float]] = {}
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._status = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ events from the driver
    def start(self, run_id: str, name: str, flops: float) -> None:
        with self._lock:
            self.running[run_id] = (name, flops)

    def skip(self, flops: float, count: int) -> None:
        """Runs found finished in the store: counted done, their compute not to be trained."""
        with self._lock:
            self.done += count
            self.flops_left = max(0.0, self.flops_left - flops)

    def finish(self, run_id: str, status: str) -> None:
        with self._lock:
            _, flops = self.running.pop(run_id, ("", 0.0))
            self.done += 1
            self.failed += status == "failed"
            self.flops_done += flops
            self.flops_left = max(0.0, self.flops_left - flops)

    # ------------------------------------------------------------------ the line
    def line(self) -> str:
        with self._lock:
            running = dict(self.running)
            done, failed = self.done, self.failed
        parts = [f"runs {done}/{self.planned} done" + (f" ({failed} failed)" if failed else "")]
        running_flops, waiting = 0.0, 0
        for run_id, (name, flops) in running.items():
            p = _read(self.workdir / "runs" / run_id / "progress.json")
            if not p:  # queued for a worker, or still preparing (tokenizing, building sets, loading a backbone)
                waiting += 1
                continue
            step, iters = p.get("step"), p.get("iters")
            frac = step / iters if step is not None and iters else 0.0
            running_flops += frac * flops
            text = f"{name}: step {step or 0}/{iters or '?'}"
            if p.get("loss") is not None:
                text += f" loss {p['loss']:.3f}"
            if p.get("val_loss") is not None:
                text += f" val {p['val_loss']:.3f}"
            if p.get("eta_s") is not None:
                text += f" ETA {_duration(p['eta_s'])}"
            parts.append(text)
        if waiting:
            parts.append(f"{waiting} starting or queued")
        elapsed = time.perf_counter() - self._t0
        trained = self.flops_done + running_flops
        if trained > 0 and self.flops_left > 0 and elapsed > 5:
            parts.append(f"all ETA ~{_duration((self.flops_left - running_flops) * elapsed / trained)}")
        return " | ".join(parts)

    # ------------------------------------------------------------------ the polling thread
    def __enter__(self) -> SweepProgress:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._status is not None:
            self._status.stop()

    def _loop(self) -> None:
        live = self.console.is_terminal
        if live:
            self._status = self.console.status("")
            self._status.start()
        last_print = 0.0
        while not self._stop.wait(1.0):
            text = self.line()
            if live:
                self._status.update(escape(text))
            elif time.perf_counter() - last_print >= self.every_s:
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
                last_print = time.perf_counter()
