"""Plain data for JSON: numbers as Python floats and ints (non-finite floats as None), containers
recursively, anything else as it is. Studies return plain data; the CLI prints it."""

from __future__ import annotations

import math
from typing import Any


def to_plain(x: Any) -> Any:
    """NumPy scalars and arrays, tuples and dicts become JSON-safe Python values."""
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if hasattr(x, "tolist") and hasattr(x, "dtype"):  # numpy arrays and scalars
        return to_plain(x.tolist())
    if isinstance(x, bool):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x
