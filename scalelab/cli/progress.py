"""Progress on stderr for commands that run for seconds: a live line (phase + elapsed time) or a bar.

Shown when stderr is a terminal (`common.show_progress`), with or without `--json` (stdout keeps the
results). `TTY_COMPATIBLE=1` (rich's own switch) shows them on a non-terminal stderr too, as escape
sequences: for logs that a terminal replays, and for the tests.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

from scalelab.cli.common import show_progress
from scalelab.progress_bar import item_bar


def _stderr() -> Console:
    """A console on the stderr of this moment (a test runner swaps the stream per command)."""
    return Console(file=sys.stderr)


@contextmanager
def live_line(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner with `label`, the current phase and the elapsed time; yields `phase(text)` to update it
    (a no-op when progress is off). `label` and phases are printed literally."""
    if not show_progress():
        yield lambda text: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TextColumn("{task.fields[phase]}"),
                   TimeElapsedColumn(), console=_stderr(), transient=True)  # fmt: skip
    with bar:
        task = bar.add_task(escape(label), total=None, phase="")
        yield lambda text: bar.update(task, phase=escape(text))


@contextmanager
def count_bar(label: str, total: int | None = None) -> Iterator[Callable[[int, int, str], None]]:
    """A bar of items (`scalelab.progress_bar.item_bar`); yields `update(done, total, text)` (a no-op when
    progress is off)."""
    if not show_progress():
        yield lambda done, total, text="": None
        return
    with item_bar(label, total) as bar:
        task = bar.task_ids[0]
        yield lambda done, total, text="": bar.update(task, completed=done, total=total, info=escape(text))


@contextmanager
def eta_bar(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A bar of like steps with the percentage done and the time remaining (rich's default columns), for
    loops where an estimate means something (bootstrap refits, batches of texts); yields the
    `progress(done, total)` callback that `scalelab.laws.bootstrap` and `scalelab.evals.ood` take (a
    no-op when progress is off)."""
    if not show_progress():
        yield lambda done, total: None
        return
    from rich.progress import Progress

    with Progress(console=_stderr(), transient=True) as bar:
        task = bar.add_task(escape(label), total=total)
        yield lambda done, total: bar.update(task, completed=done)
