"""The tables of the feedback store and how a connection to it is opened.

`<workdir>/feedback.db`, in WAL mode with ``synchronous=FULL`` by default: a comparison is committed
(and on disk, fsync) before its request is answered. The queries live in `scalelab.feedback.db`; this
module is the layout they read and write, in one place.

A comparison row is self-contained: it repeats the labeller, models, sampling settings, the full
context and both responses of its turn, so an export needs no join and a row means the same thing
however the turn table changes later. Tokens and session ids are stored only as SHA-256 hashes.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

DB_NAME = "feedback.db"
SYNCHRONOUS = ("FULL", "NORMAL")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labellers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    labeller_id INTEGER NOT NULL REFERENCES labellers (id),
    csrf TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    labeller_id INTEGER NOT NULL REFERENCES labellers (id),
    mode TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    idx INTEGER NOT NULL,
    human TEXT NOT NULL,
    context TEXT NOT NULL,
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    settings TEXT NOT NULL,
    swapped INTEGER NOT NULL,
    created_at REAL NOT NULL,
    chosen TEXT,
    UNIQUE (conversation_id, idx)
);
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY,
    turn_id TEXT NOT NULL UNIQUE REFERENCES turns (id),
    conversation_id TEXT NOT NULL,
    labeller_id INTEGER NOT NULL,
    labeller TEXT NOT NULL,
    created_at REAL NOT NULL,
    mode TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    settings TEXT NOT NULL,
    context TEXT NOT NULL,
    human TEXT NOT NULL,
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b')),
    strength INTEGER NOT NULL CHECK (strength BETWEEN 1 AND 4),
    comment TEXT NOT NULL DEFAULT '',
    shown_left TEXT NOT NULL DEFAULT 'a'
);
"""


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows by name, foreign keys on.

    FULL: a comparison acknowledged is on disk (fsync per commit); NORMAL survives a crash of the server
    but not of the machine (benchmarks compare the two)."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_tables(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (readers do not block the writer) and create any missing table."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
