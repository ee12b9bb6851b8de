"""The run store: one SQLite file per work directory, the shared state between runs.

Tables:
- `runs`: id, name, group, full config (JSON), config hash, status, timestamps, git commit,
  host, world size, parameter counts, FLOPs per token, tokens, FLOPs, final losses, summary
  (JSON) and error;
- `metrics`: (run, step, tokens, flops, split, name, value), one row per logged number.

Every number in a report traces back to a run id here. Writes are short transactions in WAL
mode, so readers never see a half-written run.

Statuses are reported as they truly are (`scalelab.lease.effective_status`): a `running` run whose
owner process is gone (its lease on `runs/<id>/lock` is free) reads as `interrupted`, and a run
whose lease is held reads as `running` with its `holder` (pid, host); the stored value is left as
it is until the run is resumed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scalelab.errors import UserError
from scalelab.lease import effective_status

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grp TEXT,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    git_commit TEXT,
    host TEXT,
    world_size INTEGER DEFAULT 1,
    params INTEGER,
    params_nonembed INTEGER,
    flops_per_token REAL,
    tokens INTEGER,
    flops REAL,
    final_train_loss REAL,
    final_val_loss REAL,
    summary TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_hash ON runs (config_hash);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    tokens INTEGER,
    flops REAL,
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, split, name, step);
"""

STATUSES = ("created", "running", "completed", "failed", "interrupted")
RUN_COLUMNS = (
    "name", "grp", "status", "started_at", "finished_at", "git_commit", "host", "world_size", "params",
    "params_nonembed", "flops_per_token", "tokens", "flops", "final_train_loss", "final_val_loss",
    "summary", "error",
)  # fmt: skip


RUN_REF = "run:"
"""Prefix of a reference to another run of the same sweep group by name: ``run:NAME`` (a study's plan
names runs of earlier stages this way; the worker resolves the name when the run starts)."""


def completed_group_run(workdir: str | Path, name: str, group: str | None, config_hash: str | None = None,
                        what: str = "run") -> dict:  # fmt: skip
    """The newest completed run named `name` in sweep group `group` (with that config hash when one is
    given, so that a later stage never builds on a stale run of the same name). The store is only read;
    `what` names the reference in the error when there is no such run."""
    workdir = Path(workdir)
    if not (workdir / "scalelab.db").is_file():
        raise UserError(f"{what}: no run store in {workdir}; train run {name!r} first")
    store = RunStore.in_workdir(workdir, readonly=True)
    try:
        runs = [r for r in store.find_runs(group=group, status="completed")
                if r["name"] == name and config_hash in (None, "", r["config_hash"])]  # fmt: skip
    finally:
        store.close()
    if not runs:
        want = f" with config hash {config_hash}" if config_hash else ""
        raise UserError(f"{what}: no completed run named {name!r}{want} in group {group!r}; train it first "
                        "(a study plans it in an earlier stage)")  # fmt: skip
    return runs[-1]


def git_commit() -> str | None:
    """The commit of the scalelab checkout (or None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5,
        )  # fmt: skip
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def ensure_workdir(folder: Path) -> None:
    """Create the work directory, or say clearly why it cannot be (a file in the way, permissions)."""
    for p in (folder, *folder.parents):
        if p.exists() and not p.is_dir():
            raise UserError(f"{p} is a file, where the work directory {folder} should be; pass another --workdir")
        if p.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the work directory {folder} ({e.strerror}); pass another --workdir") from None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open without writing; in a read-only folder a WAL store cannot make its shared-memory file,
    so then open it as immutable (no other writer can be there: nobody can write the folder)."""
    if not path.is_file():
        raise UserError(f"no run store at {path}; train something first or pass --workdir")
    uri = path.resolve().as_uri()
    for mode in ("?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + mode, uri=True, timeout=60, isolation_level=None)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.OperationalError:
            conn.close()
            continue
        if "runs" not in tables or "metrics" not in tables:
            conn.close()
            raise sqlite3.DatabaseError("it holds no runs and metrics tables")
        return conn
    raise sqlite3.DatabaseError("it cannot be opened read-only")


class RunStore:
    """The SQLite run store. `readonly=True` opens it without writing anything (no schema, no journal
    change): what read-only commands use, also on a read-only work directory. With the default
    `readonly=False` a store that cannot be written (a read-only folder or file) is opened read-only
    too, and a write then raises a UserError saying so."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_file():
            raise UserError(f"{self.path} is a folder, where the run store file should be; move it away or "
                            "pass another --workdir")  # fmt: skip
        if not readonly:
            ensure_workdir(self.path.parent)
            can_write = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
            readonly = self.path.is_file() and not can_write
        self.readonly = readonly
        try:
            self.conn = _connect_readonly(self.path) if readonly else _connect(self.path)
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path} is not a usable scalelab run store ({e}); move it away to start a new "
                            "store, or pass another --workdir") from None  # fmt: skip
        self.conn.row_factory = sqlite3.Row

    @classmethod
    def in_workdir(cls, workdir: str | Path, readonly: bool = False) -> RunStore:
        return cls(Path(workdir) / "scalelab.db", readonly=readonly)

    def close(self) -> None:
        self.conn.close()

    def _writable(self) -> None:
        if self.readonly:
            raise UserError(f"the run store {self.path} is read-only here; run this in a work directory you can "
                            "write to (copy it, or pass another --workdir)")  # fmt: skip

    # ------------------------------------------------------------------ writing
    def create_run(self, name: str, config: dict, config_hash: str, group: str | None = None, **fields) -> str:
        self._writable()
        run_id = f"{time.strftime('%y%m%d')}-{uuid.uuid4().hex[:8]}"
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs (id, name, grp, config, config_hash, status, created_at, git_commit, host) "
                "VALUES (?, ?, ?, ?, ?, 'created', ?, ?, ?)",
                (run_id, name, group, json.dumps(config), config_hash, time.time(), git_commit(), socket.gethostname()),
            )
        if fields:
            self.update_run(run_id, **fields)
        return run_id

    def update_run(self, run_id: str, **fields: Any) -> None:
        self._writable()
        bad = [k for k in fields if k not in RUN_COLUMNS]
        if bad:
            raise KeyError(f"unknown run fields {bad}")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}")
        if "summary" in fields and not isinstance(fields["summary"], str):
            fields["summary"] = json.dumps(fields["summary"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.conn:
            self.conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def update_config(self, run_id: str, config: dict, config_hash: str) -> None:
        """Replace a run's config and hash (a run resumed with changed training settings)."""
        self._writable()
        with self.conn:
            self.conn.execute("UPDATE runs SET config = ?, config_hash = ? WHERE id = ?",
                              (json.dumps(config), config_hash, run_id))  # fmt: skip

    def log_metrics(self, run_id: str, rows: Iterable[tuple[int, int, float, str, str, float]]) -> None:
        """rows of (step, tokens, flops, split, name, value)."""
        self._writable()
        with self.conn:
            self.conn.executemany(
                "INSERT INTO metrics (run_id, step, tokens, flops, split, name, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, *r) for r in rows],
            )

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        """Drop metrics logged after a checkpoint's step (a resumed run logs them again)."""
        self._writable()
        with self.conn:
            self.conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, after_step))

    # ------------------------------------------------------------------ reading
    def get_run(self, run_id: str) -> dict | None:
        """A run by id or unique id prefix or name (the newest run of that name)."""
        if not run_id:
            return None
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:  # a literal prefix (not LIKE, where '%' and '_' would match any run)
            rows = self.conn.execute(
                "SELECT * FROM runs WHERE substr(id, 1, ?) = ?", (len(run_id), run_id)
            ).fetchall()
            if len(rows) > 1:
                raise UserError(f"run id prefix {run_id!r} is ambiguous: {[r['id'] for r in rows][:5]}")
            row = rows[0] if rows else None
        if row is None:
            row = self.conn.execute(
                "SELECT * FROM runs WHERE name = ? ORDER BY created_at DESC LIMIT 1", (run_id,)
            ).fetchone()
        return self._row_dict(row) if row is not None else None

    def find_runs(self, config_hash: str | None = None, status: str | None = None, group: str | None = None):
        sql, args = "SELECT * FROM runs WHERE 1=1", []
        for col, val in (("config_hash", config_hash), ("grp", group)):  # status: filtered as it truly is
            if val is not None:
                sql += f" AND {col} = ?"
                args.append(val)
        rows = [self._row_dict(r) for r in self.conn.execute(sql + " ORDER BY created_at", args)]
        return [r for r in rows if status is None or r["status"] == status]

    def list_runs(self, columns: list[str], group: str | None = None) -> list[dict]:
        """Selected columns of every run (or of one group), oldest first, as dicts."""
        bad = [c for c in columns if c not in ("id", "config_hash", "created_at", *RUN_COLUMNS)]
        if bad:
            raise KeyError(f"unknown run columns {bad}")
        cols = columns if "id" in columns or "status" not in columns else [*columns, "id"]
        sql = f"SELECT {', '.join(cols)} FROM runs" + (" WHERE grp = ?" if group else "") + " ORDER BY created_at"
        rows = [dict(r) for r in self.conn.execute(sql, (group,) if group else ())]
        if "status" in columns:
            for r in rows:
                r["status"] = effective_status(r["status"], self.run_dir(r["id"]))[0]
        return [{c: r[c] for c in columns} for r in rows]

    def metric_series(self, run_ids: Iterable[str], split: str, name: str) -> dict[str, list[tuple]]:
        """{run id: [(step, tokens, flops, value), ...]} for one metric, without pandas."""
        ids = list(run_ids)
        sql = (f"SELECT run_id, step, tokens, flops, value FROM metrics WHERE run_id IN ({','.join('?' * len(ids))}) "
               "AND split = ? AND name = ? ORDER BY run_id, step")
        out: dict[str, list[tuple]] = {}
        for r in self.conn.execute(sql, (*ids, split, name)):
            out.setdefault(r[0], []).append(tuple(r[1:]))
        return out

    def runs_df(self, group: str | None = None):
        import pandas as pd

        sql = "SELECT * FROM runs" + (" WHERE grp = ?" if group else "") + " ORDER BY created_at"
        df = pd.read_sql_query(sql, self.conn, params=(group,) if group else ())
        if len(df):
            df["status"] = [effective_status(s, self.run_dir(i))[0] for s, i in zip(df["status"], df["id"])]
        return df

    def metrics_df(self, run_ids: Iterable[str] | None = None, name: str | None = None):
        import pandas as pd

        sql, args = "SELECT * FROM metrics WHERE 1=1", []
        if run_ids is not None:
            ids = list(run_ids)
            sql += f" AND run_id IN ({','.join('?' * len(ids))})"
            args += ids
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        return pd.read_sql_query(sql + " ORDER BY run_id, step", self.conn, params=args)

    def run_dir(self, run_id: str) -> Path:
        """The run's folder (checkpoints, lease, progress) beside the store."""
        return self.path.parent / "runs" / run_id

    def _row_dict(self, row: sqlite3.Row) -> dict:
        d = dict(row)
        d["config"] = json.loads(d["config"])
        d["summary"] = json.loads(d["summary"]) if d.get("summary") else {}
        d["status"], d["holder"] = effective_status(d["status"], self.run_dir(d["id"]))
        return d
