"""Group commit of comparisons: one transaction for a batch, refusals isolated, answers only after the commit."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from scalelab.feedback.db import Conflict, FeedbackDB, Labeller, NotFound
from scalelab.feedback.group_commit import GroupCommitter
from scalelab.feedback.load import plan_turns


def _rows(db: FeedbackDB) -> int:
    with sqlite3.connect(db.path) as fresh:  # a new connection: what is committed, not what one connection sees
        return fresh.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0]


def test_a_batch_stores_the_good_and_isolates_the_refused(tmp_path):
    db = FeedbackDB.in_workdir(tmp_path)
    plan = plan_turns(db, 2, 3)
    (tok_a, turns_a), (tok_b, turns_b) = plan.labellers
    who_a, who_b = db.labeller_for_token(tok_a), db.labeller_for_token(tok_b)
    db.add_comparison(turns_a[0], who_a, "a", 2, "")
    out = db.add_comparisons([
        (turns_a[1], who_a, "b", 4, "fine"),
        (turns_a[0], who_a, "a", 1, ""),  # compared already
        (turns_b[0], who_a, "a", 1, ""),  # another labeller's turn
        (turns_b[0], who_b, "b", 3, ""),
        (turns_b[1], who_b, "a", 1, ""),
        (turns_b[1], who_b, "b", 1, ""),  # the same turn twice in one batch: the second is refused
    ])  # fmt: skip
    kinds = [type(r).__name__ if isinstance(r, Exception) else "id" for r in out]
    assert kinds == ["id", "Conflict", "NotFound", "id", "id", "Conflict"]
    assert _rows(db) == 4
    assert {r["turn_id"]: r["choice"] for r in db.comparisons()}[turns_b[1]] == "a"


def test_group_committer_batches_and_answers_only_after_the_commit(tmp_path):
    db = FeedbackDB.in_workdir(tmp_path)
    plan = plan_turns(db, 4, 10)
    committer = GroupCommitter(db)
    items = [(t, db.labeller_for_token(tok), "a", 2, "") for tok, turns in plan.labellers for t in turns]
    with db._write_lock:  # hold the writer: every submit queues behind the first, none may be answered
        futures = [committer.submit(item) for item in items]
        time.sleep(0.2)
        assert not any(f.done() for f in futures) and _rows(db) == 0
    ids = [f.result(timeout=30) for f in futures]
    assert len(set(ids)) == 40 and _rows(db) == 40
    assert committer.committed == 40 and committer.batches <= 2  # the queued 39+ went in one commit
    with pytest.raises(Conflict):
        committer.submit(items[0]).result(timeout=30)
    with pytest.raises(NotFound):
        committer.submit(("0" * 32, Labeller(1, "x"), "a", 1, "")).result(timeout=30)
    committer.close()


def test_a_failed_commit_fails_every_request_of_its_batch_and_the_writer_goes_on(tmp_path, monkeypatch):
    db = FeedbackDB.in_workdir(tmp_path)
    plan = plan_turns(db, 1, 4)
    tok, turns = plan.labellers[0]
    who = db.labeller_for_token(tok)
    committer = GroupCommitter(db)
    real = db.add_comparisons
    monkeypatch.setattr(db, "add_comparisons", lambda items: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        committer.submit((turns[0], who, "a", 1, "")).result(timeout=30)
    monkeypatch.setattr(db, "add_comparisons", real)
    assert committer.submit((turns[0], who, "a", 1, "")).result(timeout=30) > 0
    # many threads at once: all stored once
    results: list[int] = []
    threads = [threading.Thread(target=lambda t=t: results.append(committer.submit((t, who, "b", 1, "")).result(30)))
               for t in turns[1:]]  # fmt: skip
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(results)) == 3 and _rows(db) == 4
    committer.close()


def test_the_light_load_client_stores_every_comparison_once(tmp_path):
    import asyncio
    import random

    pytest.importorskip("fastapi", reason="the feedback extra is not installed")
    pytest.importorskip("uvicorn", reason="the feedback extra is not installed")
    from scalelab.feedback.app import Settings, create_app
    from scalelab.feedback.load import run_load_raw
    from scalelab.feedback.responder import Responder
    from scalelab.feedback.server import serve_in_thread

    db = FeedbackDB.in_workdir(tmp_path)
    plan = plan_turns(db, 4, 5)
    app = create_app(db, Responder([], rng=random.Random(0)), Settings(comparisons_per_minute=1e6))
    with serve_in_thread(app) as url:
        result = asyncio.run(run_load_raw(url, plan, timeout_s=60))
        again = asyncio.run(run_load_raw(url, type(plan)(plan.labellers[:1]), timeout_s=60))
    assert result.statuses == {200: 20} and len(set(result.ids)) == 20 and _rows(db) == 20
    assert again.statuses == {409: 5}
