"""Files and folders published whole or not at all: write a temporary sibling, then rename it into place.

A reader (another process, the sweep driver, a resumed run) sees the old file or the new one, never a
half-written one. The temporary name carries the process id, so two processes writing the same file
do not share a temporary.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace `path` with `text` atomically (parent folders made as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def write_json(path: str | os.PathLike[str], obj: Any, **dumps) -> Path:
    """Replace `path` with the JSON of `obj` atomically (values JSON does not know are written as text)."""
    return write_text(path, json.dumps(obj, default=str, **dumps))


@contextmanager
def writing(path: str | os.PathLike[str], encoding: str = "utf-8") -> Iterator[IO[str]]:
    """Yield a text file to stream into; when the block ends it replaces `path` whole. On any error the
    temporary file is removed and the error raised, and `path` keeps its old content (if any)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding=encoding) as fh:
            yield fh
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def building_dir(final: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary sibling of folder `final` to fill; when the block ends it is renamed to
    `final`. On any error the temporary folder is removed and the error raised (a cache is never left
    half-written). If `final` already exists: with `replace=False` (a cache: any complete copy will do)
    the existing copy is kept and this one dropped; with `replace=True` (a save) the new folder takes its
    place, the old one moved aside first and deleted after."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if replace and final.exists():
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        tmp.rename(final)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
