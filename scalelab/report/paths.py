"""Where a report goes: `<workdir>/reports/<name>.html`, for a name that cannot leave that folder.

Sweep and study names come from users (a TOML file, `--set name=...`, a shared store), so a name is
checked before it becomes a path: a sweep named `../../tmp/x` must not write outside the work directory.
"""

from __future__ import annotations

from pathlib import Path

from scalelab.errors import UserError
from scalelab.names import check_name


def report_stem(name: str) -> str:
    """A file name stem for `name`: refuses separators and `..`, replaces other unusual characters by '-'."""
    if not name or not name.strip():
        raise UserError("an empty name cannot name a report; give the sweep or study a name such as 'scaling-quick'")
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") or any(ord(c) < 32 for c in name):
        raise UserError(f"the name {name!r} looks like a path (it has '/', '\\', '..', a leading '.' or a control "
                        "character); use letters, digits, '-', '_' and '.' only")  # fmt: skip
    return check_name(name, "a sweep or study name")


def report_path(workdir: str | Path, name: str, suffix: str = ".html") -> Path:
    """`<workdir>/reports/<stem><suffix>`, checked to lie inside `<workdir>/reports`."""
    reports = Path(workdir) / "reports"
    path = reports / f"{report_stem(name)}{suffix}"
    if path.resolve().parent != reports.resolve():  # belt and braces: the stem has no separators
        raise UserError(f"the name {name!r} would put its report outside {reports}; rename it")
    return path
