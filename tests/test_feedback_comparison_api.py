"""The comparison endpoint as plain ASGI: cached tokens still honour revocation, FastAPI's answers kept,
and the server keeps idle connections longer than a client does."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("fastapi", reason="the feedback extra is not installed")
httpx = pytest.importorskip("httpx", reason="the feedback extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from scalelab.feedback.app import Settings, create_app  # noqa: E402
from scalelab.feedback.db import FeedbackDB  # noqa: E402
from scalelab.feedback.load import plan_turns  # noqa: E402
from scalelab.feedback.responder import Responder  # noqa: E402


@pytest.fixture
def api(tmp_path):
    db = FeedbackDB.in_workdir(tmp_path)
    plan = plan_turns(db, 2, 3)
    app = create_app(db, Responder([], rng=random.Random(0)), Settings())
    with TestClient(app) as client:
        yield client, db, plan


def post(client, token: str, turn_id: str, **extra):
    return client.post("/api/comparisons", json={"turn_id": turn_id, "choice": "a", "strength": 2, **extra},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def test_a_revoked_token_is_refused_even_once_cached(api, tmp_path):
    client, db, plan = api
    (token, turns), _ = plan.labellers
    assert post(client, token, turns[0]).status_code == 200  # the token is now cached
    FeedbackDB.in_workdir(tmp_path).revoke_labeller("load000")  # as `scalelab feedback revoke-labeller` would
    r = post(client, token, turns[1])
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert post(client, token, turns[2]).status_code == 401  # forgotten by the cache: refused at the door
    assert [c["turn_id"] for c in db.comparisons()] == [turns[0]]


def test_answers_as_fastapi_gave_them(api):
    client, db, plan = api
    (token, turns), (other, _) = plan.labellers
    r = post(client, token, turns[0], extra=1)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]
    auth = {"Authorization": f"Bearer {token}"}
    form = {**auth, "Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/api/comparisons", content=b"turn_id=x", headers=form).status_code == 422
    assert client.post("/api/comparisons", content=b"{", headers=auth).status_code == 422
    assert post(client, "x" * 43, turns[0]).status_code == 401
    assert post(client, other, turns[0]).status_code == 404  # another labeller's turn
    assert client.get("/api/comparisons").status_code == 405
    r = post(client, token, turns[0], comment="fine")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json()["id"] > 0
    assert post(client, token, turns[0]).status_code == 409
    assert client.post("/api/comparisons", content=b"x" * 70_000, headers=auth).status_code == 413
    assert len(db.comparisons()) == 1


def test_the_server_keeps_idle_connections_far_longer_than_a_client():
    from scalelab.feedback.server import uvicorn_config

    config = uvicorn_config(None, "127.0.0.1", 8000)
    # equal timeouts race: the client reuses a connection at the moment the server closes it (ReadError)
    assert config.timeout_keep_alive >= 10 * httpx.Limits().keepalive_expiry
    assert config.access_log is False
