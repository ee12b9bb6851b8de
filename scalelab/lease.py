"""One owner per run: an OS file lock on `<run_dir>/lock`, held for the life of training.

The trainer takes an exclusive, non-blocking `flock` on the file and writes its pid, host and
start time into it. The kernel drops the lock when the process ends, however it ends (SIGKILL,
power loss of the process, a crash), so a lock that can be taken means nobody trains the run.
That is how the store tells a live `running` run from one whose owner is gone (shown as
`interrupted`), and how a second `--resume` of a run in training is refused.

`flock` is advisory and local to one machine (and to NFS servers that support it): two hosts
training one run folder on a file system without lock support are not detected.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from scalelab.errors import RunBusy

LOCK_NAME = "lock"
_ACQUIRE_TRIES = 20  # a reader's probe holds a shared lock for microseconds: retry briefly before refusing
_ACQUIRE_PAUSE_S = 0.05


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def lease_holder(run_dir: str | Path) -> dict | None:
    """{pid, host, since} of the live process that holds the run's lease, or None when nobody does."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"pid": None, "host": None, "since": None} | _read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def effective_status(status: str, run_dir: str | Path) -> tuple[str, dict | None]:
    """(status as it truly is, lease holder): a `running` run without a live owner is `interrupted`;
    a `created` or `interrupted` run whose lease is held is being trained, so `running`."""
    if status not in ("created", "running", "interrupted"):
        return status, None
    holder = lease_holder(run_dir)
    if holder is not None:
        return "running", holder
    return ("interrupted" if status == "running" else status), None


class RunLease:
    """Exclusive ownership of a run folder: `with RunLease(run_dir, run_id): train...`."""

    def __init__(self, run_dir: str | Path, run_id: str):
        self.path = Path(run_dir) / LOCK_NAME
        self.run_id = run_id
        self.fd: int | None = None

    def acquire(self) -> RunLease:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for _ in range(_ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(_ACQUIRE_PAUSE_S)
        else:
            os.close(fd)
            h = _read_holder(self.path)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["since"])) if h.get("since") else "?"
            raise RunBusy(
                f"run {self.run_id} is being trained right now by pid {h.get('pid', '?')} on host "
                f"{h.get('host', '?')} (since {since}); wait for it to finish, or stop that process "
                "(Ctrl-C or SIGTERM checkpoints it) and resume then"
            )
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
