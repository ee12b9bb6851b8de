"""A report is redrawn only when what it shows changed: a key from the store's content for one group.

`scalelab report` fits laws with bootstrap refits and renders figures, about 1.3-1.5 s of work
(NumPy and matplotlib imports included) that gives the same page as long as the group's runs and
metrics, the options and the code are unchanged. `content_key` hashes exactly those: each run of
the group (id, status as it truly is, config hash, sizes, tokens, FLOPs, final losses, summary,
finish time), per run the count, last step and sum of its logged metric values, the options, and
the size and modification time of every module of the packages that draw the page. A group with a
run still running has no key (its curves move), so it is always redrawn. The key is kept beside the
report (``.<stem>.key``); `cached_report` returns the report when the key matches and every file is there.

The fits behind a report are kept too (``.<stem>.fits.json``, `load_results` / `save_results`), under a
narrower key: the numbers the fits read, the analysis options and the fitting code only. A report whose
figures or text changed (code of `report/`, a train-loss metric, a new summary) is redrawn from them
without refitting; the laws' bootstrap refits are about a third of a first report's time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scalelab.atomic import write_text
from scalelab.report.paths import report_path

_COLUMNS = ("id", "status", "config_hash", "params", "params_nonembed", "flops_per_token", "tokens", "flops",
            "final_train_loss", "final_val_loss", "summary", "finished_at")  # fmt: skip


def code_stamp(packages: list[str]) -> list:
    """(file, size, mtime) of every module in the given scalelab sub-packages ('laws', 'studies/scaling') or
    of the given modules ('studies/scaling/analyze.py')."""
    root = Path(__file__).resolve().parents[1]
    stamp = []
    for package in packages:
        where = root / package
        for path in [where] if where.suffix == ".py" else sorted(where.glob("*.py")):
            st = path.stat()
            stamp.append([str(path.relative_to(root)), st.st_size, st.st_mtime_ns])
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
    blob = json.dumps([runs, metrics, options, code_stamp(packages)], sort_keys=True, default=str)
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


def _results_file(workdir: str | Path, group: str, what: str) -> Path:
    path = report_path(workdir, group)
    return path.with_name(f".{path.stem}.{what}.json")


def load_results(workdir: str | Path, group: str, what: str, key: str | None) -> dict | None:
    """Results (fits) stored for `group` under `key` by `save_results`, or None (absent, other key, unreadable)."""
    if key is None:
        return None
    try:
        saved = json.loads(_results_file(workdir, group, what).read_text())
    except (OSError, ValueError):
        return None
    return saved.get("results") if isinstance(saved, dict) and saved.get("key") == key else None


def save_results(workdir: str | Path, group: str, what: str, key: str | None, results: dict) -> None:
    """Keep `results` (plain data, NumPy values as lists; floats round-trip exactly) for `load_results`."""
    if key is None:
        return
    text = json.dumps({"key": key, "results": results}, default=lambda v: v.tolist())  # NumPy scalars and arrays
    write_text(_results_file(workdir, group, what), text)
