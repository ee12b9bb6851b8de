"""The feedback store: labellers, sessions, conversations, turns and comparisons in one SQLite file.

`<workdir>/feedback.db`, in WAL mode with ``synchronous=FULL``: a comparison is committed (and on
disk, fsync) before its request is answered. Comparisons that arrive together are committed together
(`add_comparisons`, driven by `group_commit.GroupCommitter`): one transaction and one fsync for the
batch, each comparison checked before anything is written (a refused one writes nothing), each
request answered only after that commit. Each thread has its own connection; writes go through one
process-wide lock, so concurrent writers queue in order instead of polling SQLite's busy handler.
Tokens and session ids are stored only as SHA-256 hashes (they are 256-bit random strings, so a
plain hash is enough: there is nothing to brute-force).

The tables and how a connection is opened are in `scalelab.feedback.schema` (a comparison row is
self-contained: an export needs no join); the HH text of a conversation in `scalelab.feedback.hh_format`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scalelab.errors import UserError
from scalelab.feedback.hh_format import transcript
from scalelab.feedback.schema import DB_NAME, SYNCHRONOUS, connect, create_tables

MODES = ("helpful", "red-team")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Conflict(Exception):
    """A request that does not fit the state: a turn already compared, a conversation awaiting a choice."""


class NotFound(Exception):
    """A conversation or turn that does not exist or belongs to another labeller."""


class Revoked(Exception):
    """The labeller's token was revoked (found when storing: a cached token is checked again there)."""


@dataclass(frozen=True)
class Labeller:
    id: int
    name: str


ComparisonItem = tuple[str, Labeller, str, int, str]
"""(turn id, labeller, choice 'a'|'b', strength 1-4, comment): one comparison to store."""


@dataclass(frozen=True)
class Turn:
    """Two responses to one human turn, as stored: `a` is shown left (first in the API)."""

    id: str
    conversation_id: str
    idx: int
    human: str
    context: str
    response_a: str
    response_b: str
    model_a: str
    model_b: str
    settings: dict
    swapped: bool
    chosen: str | None


class FeedbackDB:
    """All reads and writes of the feedback application (no SQL outside this class)."""

    def __init__(self, path: str | Path, synchronous: str = "FULL"):
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.synchronous = synchronous
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._write_lock:
            create_tables(self._conn())

    @classmethod
    def in_workdir(cls, workdir: str | Path) -> FeedbackDB:
        return cls(Path(workdir) / DB_NAME)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, self.synchronous)
        return conn

    def _write(self, fn, *args):
        """Run fn(conn, *args) in one IMMEDIATE transaction under the process-wide write lock."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

    # ------------------------------------------------------------------ secret and labellers
    def secret(self) -> bytes:
        """The key that signs pre-login CSRF tokens; made once per work directory."""

        def get_or_make(conn):
            row = conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if row is None:
                value = secrets.token_hex(32)
                conn.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (value,))
                return value
            return row[0]

        return bytes.fromhex(self._write(get_or_make))

    def add_labeller(self, name: str) -> str:
        """A new labeller; returns the token (shown once; only its hash is kept)."""
        token = secrets.token_urlsafe(32)

        def insert(conn):
            if conn.execute("SELECT 1 FROM labellers WHERE name = ?", (name,)).fetchone():
                raise UserError(f"a labeller named {name!r} exists; revoke it first or choose another name")
            conn.execute("INSERT INTO labellers (name, token_hash, created_at) VALUES (?, ?, ?)",
                         (name, token_hash(token), time.time()))  # fmt: skip

        self._write(insert)
        return token

    def revoke_labeller(self, name: str) -> None:
        """Revoke a labeller's token and end their sessions; their comparisons stay. The name is freed
        (renamed to `name~revoked~<time>`) so that a new token can be issued under it."""

        def revoke(conn):
            row = conn.execute("SELECT id FROM labellers WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone()
            if row is None:
                raise UserError(f"no active labeller named {name!r}; see `scalelab feedback labellers`")
            now = time.time()
            conn.execute("UPDATE labellers SET revoked_at = ?, name = ? WHERE id = ?",
                         (now, f"{name}~revoked~{now:.0f}", row[0]))  # fmt: skip
            conn.execute("DELETE FROM sessions WHERE labeller_id = ?", (row[0],))

        self._write(revoke)

    def labellers(self) -> list[dict]:
        rows = self._conn().execute(
            "SELECT l.name, l.created_at, l.revoked_at, COUNT(c.id) AS comparisons FROM labellers l "
            "LEFT JOIN comparisons c ON c.labeller_id = l.id GROUP BY l.id ORDER BY l.id"
        )
        return [dict(r) for r in rows]

    def labeller_for_token(self, token: str) -> Labeller | None:
        row = (
            self._conn()
            .execute("SELECT id, name FROM labellers WHERE token_hash = ? AND revoked_at IS NULL", (token_hash(token),))
            .fetchone()
        )
        return Labeller(row[0], row[1]) if row else None

    # ------------------------------------------------------------------ sessions
    def create_session(self, labeller: Labeller, lifetime_s: float) -> tuple[str, str]:
        """(session id for the cookie, CSRF token for the forms)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)

        def insert(conn):
            conn.execute("DELETE FROM sessions WHERE expires_at < ?", (time.time(),))
            conn.execute("INSERT INTO sessions (id_hash, labeller_id, csrf, expires_at) VALUES (?, ?, ?, ?)",
                         (token_hash(sid), labeller.id, csrf, time.time() + lifetime_s))  # fmt: skip

        self._write(insert)
        return sid, csrf

    def session(self, sid: str) -> tuple[Labeller, str] | None:
        """(labeller, CSRF token) of a live session of an active labeller, else None."""
        row = self._conn().execute(
            "SELECT l.id, l.name, s.csrf FROM sessions s JOIN labellers l ON l.id = s.labeller_id "
            "WHERE s.id_hash = ? AND s.expires_at > ? AND l.revoked_at IS NULL", (token_hash(sid), time.time())
        ).fetchone()  # fmt: skip
        return (Labeller(row[0], row[1]), row[2]) if row else None

    def end_session(self, sid: str) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM sessions WHERE id_hash = ?", (token_hash(sid),)))

    # ------------------------------------------------------------------ conversations and turns
    def conversation_context(self, conversation_id: str | None, labeller: Labeller,
                             mode: str) -> tuple[str, str, int]:  # fmt: skip
        """(conversation id, transcript so far, index of the next turn); a new conversation when None.

        The transcript is HH-formatted: each human turn and each chosen response after its marker.
        Raises `NotFound` for another labeller's conversation and `Conflict` while its last turn
        still awaits a choice.
        """
        conn = self._conn()
        if conversation_id is None:
            cid = uuid.uuid4().hex
            self._write(lambda c: c.execute(
                "INSERT INTO conversations (id, labeller_id, mode, created_at) VALUES (?, ?, ?, ?)",
                (cid, labeller.id, mode, time.time())))  # fmt: skip
            return cid, "", 0
        row = conn.execute("SELECT labeller_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None or row[0] != labeller.id:
            raise NotFound(conversation_id)
        turns = self.turns(conversation_id)
        if turns and turns[-1].chosen is None:
            raise Conflict("the last turn of this conversation awaits a comparison")
        return conversation_id, transcript(turns), len(turns)

    def add_turn(self, conversation_id: str, idx: int, human: str, context: str, responses: tuple[str, str],
                 models: tuple[str, str], settings: dict, swapped: bool) -> str:  # fmt: skip
        turn_id = uuid.uuid4().hex

        def insert(conn):
            try:
                conn.execute(
                    "INSERT INTO turns (id, conversation_id, idx, human, context, response_a, response_b, model_a, "
                    "model_b, settings, swapped, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (turn_id, conversation_id, idx, human, context, *responses, *models, json.dumps(settings),
                     int(swapped), time.time()),
                )  # fmt: skip
            except sqlite3.IntegrityError as e:  # two tabs raced for the same next turn
                raise Conflict("another turn was added to this conversation meanwhile") from e

        self._write(insert)
        return turn_id

    def turns(self, conversation_id: str) -> list[Turn]:
        rows = self._conn().execute("SELECT * FROM turns WHERE conversation_id = ? ORDER BY idx", (conversation_id,))
        return [_turn(r) for r in rows]

    def latest_conversation(self, labeller: Labeller) -> str | None:
        row = (
            self._conn()
            .execute(
                "SELECT id FROM conversations WHERE labeller_id = ? ORDER BY created_at DESC LIMIT 1", (labeller.id,)
            )
            .fetchone()
        )
        return row[0] if row else None

    # ------------------------------------------------------------------ comparisons
    def add_comparison(self, turn_id: str, labeller: Labeller, choice: str, strength: int, comment: str) -> int:
        """Store one comparison (one transaction) and mark the turn; `Conflict` if it was compared already."""
        (result,) = self.add_comparisons([(turn_id, labeller, choice, strength, comment)])
        if isinstance(result, Exception):
            raise result
        return result

    def add_comparisons(self, items: list[ComparisonItem]) -> list[int | NotFound | Conflict | Revoked]:
        """Store several comparisons in ONE transaction, a group commit: one fsync for all of them.

        Every check (the labeller still active, the turn theirs and not compared yet, also not earlier
        in this batch) comes before any write, so a refused comparison writes nothing and the others
        stand. A batch is a handful of statements, not five per comparison: the writer thread gives up
        the GIL at every statement, and each hand-over costs the event loop that serves the requests.
        Returns, per item, the new row id or the refusal; it returns only after the commit, so a caller
        that answers requests from it answers each only once its comparison is on disk. If the commit
        itself fails, it raises and nothing of the batch is stored.
        """

        def insert_all(conn):
            results: list[int | NotFound | Conflict | Revoked] = []
            for start in range(0, len(items), _CHUNK):
                results += _insert_comparisons(conn, items[start : start + _CHUNK])
            return results

        return self._write(insert_all)

    def comparisons(self) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT * FROM comparisons ORDER BY id")
        return [{**dict(r), "settings": json.loads(r["settings"])} for r in rows]

    def stats(self, labeller: Labeller | None = None) -> dict:
        conn = self._conn()
        out = {
            "comparisons": conn.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0],
            "conversations": conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0],
            "turns": conn.execute("SELECT COUNT(*) FROM turns").fetchone()[0],
            "labellers": conn.execute("SELECT COUNT(*) FROM labellers WHERE revoked_at IS NULL").fetchone()[0],
            "by_model_pair": [dict(r) for r in conn.execute(
                "SELECT model_a, model_b, COUNT(*) AS n FROM comparisons GROUP BY model_a, model_b ORDER BY n DESC")],
        }  # fmt: skip
        if labeller is not None:
            out["mine"] = conn.execute("SELECT COUNT(*) FROM comparisons WHERE labeller_id = ?",
                                       (labeller.id,)).fetchone()[0]  # fmt: skip
        return out

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


_CHUNK = 500  # comparisons per statement: 16 parameters each, under SQLite's 32,766
_COLUMNS = ("turn_id, conversation_id, labeller_id, labeller, created_at, mode, model_a, model_b, settings, context, "
            "human, response_a, response_b, choice, strength, comment, shown_left")  # fmt: skip


def _insert_comparisons(conn: sqlite3.Connection, items: list[ComparisonItem]) -> list[int | Exception]:
    """Check, then insert the accepted comparisons (copying their turns) and mark their turns chosen;
    inside the caller's transaction. Per item: the new row id, or `Revoked` / `NotFound` / `Conflict`."""
    turn_ids = list({item[0] for item in items})
    turns = {r["id"]: r for r in conn.execute(
        "SELECT t.*, c.mode, c.labeller_id FROM turns t JOIN conversations c ON c.id = t.conversation_id "
        f"WHERE t.id IN ({','.join('?' * len(turn_ids))})", turn_ids)}  # fmt: skip
    who = list({item[1].id for item in items})
    marks = ",".join("?" * len(who))
    revoked = {
        r[0] for r in conn.execute(f"SELECT id FROM labellers WHERE revoked_at IS NOT NULL AND id IN ({marks})", who)
    }
    results: list[int | Exception] = []
    rows: list[tuple] = []
    chosen: dict[str, str] = {}
    now = time.time()
    for turn_id, labeller, choice, strength, comment in items:
        t = turns.get(turn_id)
        if labeller.id in revoked:
            results.append(Revoked(labeller.name))
        elif t is None or t["labeller_id"] != labeller.id:
            results.append(NotFound(turn_id))
        elif t["chosen"] is not None or turn_id in chosen:
            results.append(Conflict("this turn has been compared already"))
        else:
            chosen[turn_id] = choice
            rows.append((turn_id, t["conversation_id"], labeller.id, labeller.name, now, t["mode"], t["model_a"],
                         t["model_b"], t["settings"], t["context"], t["human"], t["response_a"], t["response_b"],
                         choice, strength, comment, "a"))  # fmt: skip
            results.append(turn_id)  # replaced by the row id below
    if not rows:
        return results
    one = "(" + ",".join("?" * len(rows[0])) + ")"
    # RETURNING gives rows in no set order: match them back by turn id (unique in the table)
    ids = dict(conn.execute(f"INSERT INTO comparisons ({_COLUMNS}) VALUES {','.join([one] * len(rows))} "
                            "RETURNING turn_id, id", [v for row in rows for v in row]).fetchall())  # fmt: skip
    for pick in ("a", "b"):
        marked = [t for t, c in chosen.items() if c == pick]
        if marked:
            conn.execute(f"UPDATE turns SET chosen = ? WHERE id IN ({','.join('?' * len(marked))})", [pick, *marked])
    return [r if isinstance(r, Exception) else int(ids[r]) for r in results]


def _turn(r: sqlite3.Row) -> Turn:
    return Turn(r["id"], r["conversation_id"], r["idx"], r["human"], r["context"], r["response_a"], r["response_b"],
                r["model_a"], r["model_b"], json.loads(r["settings"]), bool(r["swapped"]), r["chosen"])  # fmt: skip
