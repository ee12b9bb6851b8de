"""Files replaced whole or not at all: write a temporary sibling, then rename it over the target.

A reader (another process, the sweep driver, a resumed run) sees the old file or the new one, never a
half-written one. The temporary name carries the process id, so two processes writing the same file
do not share a temporary.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
