"""Names that become paths, store keys or printed labels: one check for all of them.

A run, sweep or study name is used as a folder or file name (reports, run groups) and printed
by the CLI, so it may hold only letters, digits and `._-` (plus `=` and `+`, which sweep run names
such as `scaling-size=L2-C=1e+13` use): no path separators, no leading dot, no markup brackets,
no spaces or quotes.
"""

from __future__ import annotations

import re

from scalelab.errors import UserError

MAX_LEN = 100
_ALLOWED = re.compile(r"[A-Za-z0-9._=+-]+")


def check_name(name: str, what: str) -> str:
    """Return `name` unchanged when it is a safe slug, else raise a UserError saying what to change."""
    if not isinstance(name, str) or not name:
        raise UserError(f"{what} must be a non-empty name of letters, digits and '._-'")
    if len(name) > MAX_LEN:
        raise UserError(f"{what} {name[:40]!r}... is {len(name)} characters long; use at most {MAX_LEN}")
    bad = sorted({c for c in name if not _ALLOWED.fullmatch(c)})
    if bad:
        fixed = re.sub(r"[^A-Za-z0-9._=+-]+", "-", name).strip("-") or "run"
        raise UserError(
            f"{what} {name!r} contains {', '.join(repr(c) for c in bad)}; names may hold only letters, digits "
            f"and '._-' (they become folder names), for example {fixed.lstrip('.')!r}"
        )
    if name.startswith("."):
        raise UserError(f"{what} {name!r} starts with '.'; names become folder names: drop the leading dot")
    return name
