"""A report is redrawn only when what it shows changed: a key from the store's content for one group.

`scalelab report` fits laws with bootstrap refits and renders figures, about two seconds of work
(SciPy and matplotlib imports included) that gives the same page as long as the group's runs and
metrics, the options and the code are unchanged. `content_key` hashes exactly those: each run of
the group (id, status as it truly is, config hash, sizes, tokens, FLOPs, final losses, summary,
finish time), per run the count, last step and sum of its logged metric values, the options, and
the size and modification time of every module of the packages that draw the page. A group with a
run still running has no key (its curves move), so it is always redrawn. The key is kept beside the
report (``.<stem>.key``); `cached_report` returns the report when the key matches and every file is there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scalelab.atomic import write_text
from scalelab.report.paths import report_path

_COLUMNS = ("id", "status", "config_hash", "params", "params_nonembed", "flops_per_token", "tokens", "flops",
            "final_train_loss", "final_val_loss", "summary", "finished_at")  # fmt: skip


def _code_stamp(packages: list[str]) -> list:
    """(file, size, mtime) of every module in the given scalelab sub-packages ('laws', 'studies/scaling')."""
    root = Path(__file__).resolve().parents[1]
    stamp = []
    for package in packages:
        for path in sorted((root / package).glob("*.py")):
            st = path.stat()
            stamp.append([f"{package}/{path.name}", st.st_size, st.st_mtime_ns])
    return stamp


def content_key(store, group: str, options: dict, packages: list[str]) -> str | None:
    """A hash of the group's runs, their metrics, ``options`` and the code of ``packages``; None while a run runs."""
    runs = store.list_runs(list(_COLUMNS), group=group)
    if any(r["status"] in ("running", "created") for r in runs):
        return None
    ids = [r["id"] for r in runs]
    metrics = []
    if ids:
        sql = (f"SELECT run_id, COUNT(*), MAX(step), TOTAL(value) FROM metrics WHERE run_id IN "
               f"({','.join('?' * len(ids))}) GROUP BY run_id ORDER BY run_id")  # fmt: skip
        metrics = [list(row) for row in store.conn.execute(sql, ids)]
    blob = json.dumps([runs, metrics, options, _code_stamp(packages)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _key_file(report: Path) -> Path:
    return report.with_name(f".{report.stem}.key")


def _files(report: Path) -> list[Path]:
    return [report, report.with_suffix(".md"), report.with_name(report.stem + "_figures")]


def cached_report(workdir: str | Path, group: str, key: str | None) -> Path | None:
    """The group's report if it was drawn from content with this ``key`` and all its files exist; else None."""
    if key is None:
        return None
    path = report_path(workdir, group)
    try:
        same = _key_file(path).read_text().strip() == key
    except OSError:
        return None
    return path if same and all(p.exists() for p in _files(path)) else None


def remember(report: Path, key: str | None) -> None:
    """Record the key of the content ``report`` was drawn from (atomically); nothing when there is no key."""
    target = _key_file(report)
    if key is None:
        target.unlink(missing_ok=True)
        return
    write_text(target, key + "\n")
