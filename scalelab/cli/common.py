"""What every command shares: the common options, the two consoles, JSON output and number formatting.

Defined once here so that `--workdir`, `--json` and `--set` mean the same in every command, and so that
user-given text (run names, sweep names, prompts) is printed literally: never through rich markup.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scalelab.plain import to_plain

DEFAULT_WORKDIR = os.environ.get("SCALELAB_WORKDIR", "scalelab-work")

WorkdirOpt = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w", envvar="SCALELAB_WORKDIR",
                          help="Work directory: run store, caches, checkpoints, reports.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON object as the last stdout line (progress on stderr).")
SetOpt = typer.Option(None, "--set", "-s", help="Override a config key: --set train.lr=3e-4 (repeatable).")

# stdout carries results (tables, JSON); stderr carries progress, notes and errors
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def say(text: str, console: Console | None = None) -> None:
    """Print plain text literally (no markup, no highlighting): for anything that holds user-given names."""
    (console or out).print(text, markup=False, highlight=False, soft_wrap=True)


def note(text: str) -> None:
    """A line of progress or advice on stderr, printed literally."""
    say(text, err)


def show_progress() -> bool:
    """Progress bars go to stderr, so they are shown whenever stderr is a terminal, with or without --json;
    `TTY_COMPATIBLE=1` (rich's switch, which then draws on any stream) shows them on any stderr."""
    return sys.stderr.isatty() or os.environ.get("TTY_COMPATIBLE") == "1"


def print_json(obj: Any) -> None:
    """One JSON object on one stdout line (scripts read the last line)."""
    print(json.dumps(to_plain(obj), allow_nan=False, default=str), flush=True)


def fmt(value: Any, spec: str = ".4g", missing: str = "") -> str:
    """A float formatted with `spec` (4 significant figures by default), a list of floats likewise;
    None as `missing`; NaN as '-'; anything else as str."""
    if value is None:
        return missing
    if isinstance(value, float):
        return "-" if math.isnan(value) else format(value, spec)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(fmt(v, spec) for v in value) + "]"
    return str(value)


def key_value_table(obj: dict, keys: Iterable[str], title: str | None = None) -> Table:
    """A two-column table of `keys` of `obj` (missing keys shown as None); cells are escaped."""
    table = Table(title=escape(title) if title else None, show_header=False)
    for k in keys:
        table.add_row(k, escape(fmt(obj.get(k), missing="None")))
    return table


def rows_table(rows: list[dict], title: str | None = None, left: Iterable[str] = (), spec: str = ".4g") -> Table:
    """A table with one row per dict (columns from the first row), floats formatted with `spec`;
    cells are escaped; `left` columns left-aligned."""
    left = set(left)
    table = Table(title=escape(title) if title else None)
    for c in rows[0] if rows else []:
        table.add_column(c, justify="left" if c in left else "right", no_wrap=c == "id")
    for row in rows:
        table.add_row(*[escape(fmt(v, spec)) for v in row.values()])
    return table
