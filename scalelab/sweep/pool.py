"""Persistent sweep workers: one process per executor slot, training planned runs one after another.

A tiny run (a 1-layer model, a few hundred steps) trains in seconds; a fresh process for it would pay
Python's start-up and the torch import (~2 s of CPU) every time. `WorkerPool` keeps one process per
slot for the whole sweep, every stage included, so that imports are paid once per slot. It keeps
what the sweep guarantees:

- failure isolation: a job that raises returns a failed result (the job function never raises, and
  the serve loop catches what escapes it); a job that kills its process (a segfault, the OOM killer,
  `os._exit`) is reported failed with the exit code, and the slot gets a fresh process;
- numbers: a run is trained by the same function with the same thread count as before, so its
  losses are those of an unpacked run, to the bit (tests/test_pack.py);
- interruption: Ctrl-C reaches every process of the group and a SIGTERM to the driver is forwarded
  (`pids()`); busy slots checkpoint and answer, their results are still collected.

A slot is `python -m scalelab.sweep.pool <read fd> <write fd>`: a plain interpreter that receives
(function, arguments) pickled by the driver over a pipe and sends the result back. It does not
re-run the driver's `__main__` (multiprocessing's spawn imports the whole CLI again in every worker).
Only the driver's own children write to those pipes, so the pickles are trusted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

Job = tuple[Any, Callable, tuple]
"""(key, function, arguments): `function(*arguments)` returns a result dict and should never raise."""


def _death(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        with suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _child_env() -> dict:
    """The environment with this scalelab's folder first on PYTHONPATH: the worker imports the driver's code,
    even when the driver found it through its own sys.path (a script run from a source checkout)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


class _Slot:
    """One worker process and the two pipe ends the driver keeps."""

    def __init__(self):
        down_r, down_w = os.pipe()  # driver -> worker
        up_r, up_w = os.pipe()  # worker -> driver
        self.proc = subprocess.Popen([sys.executable, "-m", "scalelab.sweep.pool", str(down_r), str(up_w)],
                                     pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL, env=_child_env())  # fmt: skip
        os.close(down_r)
        os.close(up_w)
        self.send_conn = Connection(down_w, readable=False)
        self.recv_conn = Connection(up_r, writable=False)
        self.key: Any = None
        self.busy = False
        with suppress(OSError):  # a process that died at start shows as EOF on its first job
            self.send_conn.send(list(sys.path))  # the driver's import path (tests, editable installs)

    def submit(self, key: Any, fn: Callable, args: tuple) -> None:
        self.key, self.busy = key, True
        with suppress(OSError):  # died meanwhile: `receive` sees EOF and the job is reported failed
            self.send_conn.send((fn, args))

    def receive(self) -> dict | None:
        """The answer of the busy job, or None when the process died first."""
        try:
            result = self.recv_conn.recv()
        except (EOFError, OSError):
            return None
        self.busy = False
        return result

    def close(self, timeout: float = 10.0) -> None:
        with suppress(OSError):
            self.send_conn.send(None)
        for conn in (self.send_conn, self.recv_conn):
            with suppress(OSError):
                conn.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class WorkerPool:
    """`slots` worker processes, started as jobs need them and kept until `close()` (or the `with` ends)."""

    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self._live: list[_Slot] = []
        self.started = 0
        """Processes started so far (replacements included)."""

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._live if s.proc.poll() is None]

    def close(self) -> None:
        """Stop every worker. A worker still busy here (the driver stopped on an error) gets a SIGTERM, so that
        its run checkpoints and stays resumable, and up to 300 s to do it; an idle one stops at once."""
        for slot in self._live:
            if slot.busy and slot.proc.poll() is None:
                with suppress(OSError):
                    os.kill(slot.proc.pid, signal.SIGTERM)
            slot.close(timeout=300.0 if slot.busy else 10.0)
        self._live = []

    def _idle_slot(self) -> _Slot | None:
        for slot in [s for s in self._live if not s.busy and s.proc.poll() is not None]:
            self._drop(slot)  # died while idle (a signal meant for the sweep): replaced when needed
        for slot in self._live:
            if not slot.busy:
                return slot
        if len(self._live) < self.slots:
            slot = _Slot()
            self.started += 1
            self._live.append(slot)
            return slot
        return None

    def _drop(self, slot: _Slot) -> None:
        slot.close(timeout=1.0)
        self._live.remove(slot)

    def _collect(self, slot: _Slot) -> tuple[Any, dict]:
        """(key, result) of a slot whose pipe is readable; a dead process gives a failed result and is dropped."""
        key = slot.key
        result = slot.receive()
        if result is None:
            code = slot.proc.wait()
            self._drop(slot)
            result = {"status": "failed", "error": f"the worker process {_death(code)} during this run (the other "
                      "runs went on in a fresh process); fix the cause and rerun with --retry-failed"}  # fmt: skip
        return key, result

    def run(self, jobs: list[Job]) -> Iterator[tuple[Any, dict]]:
        """Yield (key, result) as jobs finish, in the order given as slots free up.

        On KeyboardInterrupt (Ctrl-C, or a SIGTERM the driver turned into one) no further job starts;
        the busy slots, told too, checkpoint and answer, and their results are yielded before the
        generator ends (a slot that does not answer within 300 s leaves its run resumable).
        """
        queue = deque(jobs)
        try:
            while queue or any(s.busy for s in self._live):
                while queue:
                    slot = self._idle_slot()
                    if slot is None:
                        break
                    key, fn, args = queue.popleft()
                    slot.submit(key, fn, args)
                busy = [s for s in self._live if s.busy]
                ready = wait([s.recv_conn for s in busy])
                for slot in busy:
                    if slot.recv_conn in ready:
                        yield self._collect(slot)
        except KeyboardInterrupt:
            deadline = time.monotonic() + 300
            for slot in [s for s in self._live if s.busy]:
                if wait([slot.recv_conn], timeout=max(0.0, deadline - time.monotonic())):
                    result = slot.receive()
                    if result is not None:  # a slot killed before it answered leaves its run resumable
                        yield slot.key, result


def serve(read_fd: int, write_fd: int) -> None:
    """The worker's loop: take (function, arguments), run it, send its result; stop on None or EOF."""
    recv, send = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        sys.path[:] = recv.recv()
        while True:
            msg = recv.recv()
            if msg is None:
                return
            fn, args = msg
            try:
                result = fn(*args)
            except BaseException as e:  # the job function should not raise; if it does, the slot survives
                result = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            send.send(result)
    except (EOFError, OSError, KeyboardInterrupt):  # the driver is gone or stopped the sweep while we were idle
        return


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
