"""The rich progress bar that long work draws on stderr (stdout keeps the results and `--json`).

One look wherever items are counted (training steps, distillation steps, documents tokenized, runs
exported): the label in bold, the bar, done/total, a free text field (`info`) and the elapsed time;
transient, so it is gone when the work ends. It lives below the faces because library code draws it
too (DESIGN: no module imports from `cli/`); `scalelab.cli.progress.count_bar` wraps it for commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def item_bar(label: str, total: int | None = None, completed: int = 0, info: str = "", *,
             enabled: bool = True) -> Progress:  # fmt: skip
    """A bar with one task, `label` (printed literally) at `completed` of `total` (None: unknown), on the
    stderr of this moment. Start it with `with` or `.start()`; update it through `bar.task_ids[0]` (the
    `info` field holds markup: escape user-given text). `enabled=False`: the same object, drawing nothing."""
    import sys

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=Console(file=sys.stderr),
                   transient=True, disable=not enabled)  # fmt: skip
    bar.add_task(escape(label), total=total, completed=completed, info=info)
    return bar
