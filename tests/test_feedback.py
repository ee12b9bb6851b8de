"""The feedback application: API, pages, security guards, storage, export round trip, Elo."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from scalelab.errors import UserError
from scalelab.feedback.db import FeedbackDB
from scalelab.feedback.elo import elo_ratings, outcomes
from scalelab.feedback.export import export_comparisons

fastapi = pytest.importorskip("fastapi", reason="the feedback extra is not installed")
pytest.importorskip("httpx", reason="the feedback extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from scalelab.feedback.app import Settings, create_app  # noqa: E402
from scalelab.feedback.responder import Responder, check_model_name, load_models  # noqa: E402


def make_model_run(workdir: Path, name: str, seed: int = 0, block_size: int = 64) -> str:
    """A fresh (untrained) tiny GPT saved as the checkpoint of a completed run named `name`."""
    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.model.gpt import GPT, GPTConfig
    from scalelab.store import RunStore
    from scalelab.train.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=block_size, vocab_size=257))
    store = RunStore.in_workdir(workdir)
    run_id = store.create_run(name, {"seed": seed}, f"hash-{name}", status="completed")
    store.close()
    save_checkpoint(workdir / "runs" / run_id / "ckpt", 0, model, ByteTokenizer(), {})
    return run_id


def make_app(workdir: Path, models=("tiny-a", "tiny-b"), **settings):
    for i, name in enumerate(models):
        make_model_run(workdir, name, seed=i)
    responder = Responder(load_models(list(models), workdir), max_new_tokens=8, rng=random.Random(0))
    db = FeedbackDB.in_workdir(workdir)
    return create_app(db, responder, Settings(**settings)), db


@pytest.fixture
def served(tmp_path):
    app, db = make_app(tmp_path)
    token = db.add_labeller("alice")
    with TestClient(app) as client:
        yield client, db, token, tmp_path


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client, token: str) -> str:
    """Sign in through the pages; returns the CSRF token of the session's forms."""
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)


# ---------------------------------------------------------------- API


def test_api_turns_and_comparisons_continue_the_conversation(served):
    client, db, token, _ = served
    assert client.get("/healthz").json()["ok"] is True
    r = client.post("/api/turns", json={"human": "Hello there"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    first = r.json()
    assert len(first["responses"]) == 2 and re.fullmatch(r"[0-9a-f]{32}", first["turn_id"])
    # a conversation awaiting its comparison takes no new turn
    r = client.post("/api/turns", json={"conversation_id": first["conversation_id"], "human": "more"},
                    headers=bearer(token))  # fmt: skip
    assert r.status_code == 409
    r = client.post("/api/comparisons", json={"turn_id": first["turn_id"], "choice": "b", "strength": 3},
                    headers=bearer(token))  # fmt: skip
    assert r.status_code == 200 and isinstance(r.json()["id"], int)
    # the same turn compared twice: refused, nothing duplicated
    r = client.post("/api/comparisons", json={"turn_id": first["turn_id"], "choice": "a", "strength": 1},
                    headers=bearer(token))  # fmt: skip
    assert r.status_code == 409
    r = client.post("/api/turns", json={"conversation_id": first["conversation_id"], "human": "And then?"},
                    headers=bearer(token))  # fmt: skip
    assert r.status_code == 200
    turns = db.turns(first["conversation_id"])
    assert len(turns) == 2
    chosen = first["responses"][1]
    assert turns[1].context == f"\n\nHuman: Hello there\n\nAssistant: {chosen}"
    rows = db.comparisons()
    assert len(rows) == 1
    row = rows[0]
    assert (row["labeller"], row["choice"], row["strength"], row["human"]) == ("alice", "b", 3, "Hello there")
    assert {row["model_a"], row["model_b"]} == {"tiny-a", "tiny-b"}
    assert row["settings"]["max_new_tokens"] == 8 and "seed" in row["settings"]
    stats = client.get("/api/stats", headers=bearer(token)).json()
    assert stats["comparisons"] == 1 and stats["mine"] == 1 and stats["turns"] == 2


def test_api_auth_no_token_bad_token_revoked_token(served):
    client, db, token, _ = served
    assert client.post("/api/turns", json={"human": "hi"}).status_code == 401
    assert client.get("/api/stats", headers=bearer("not-a-token")).status_code == 401
    assert client.get("/api/stats", headers={"Authorization": token}).status_code == 401  # no scheme
    assert client.get("/api/stats", headers=bearer(token)).status_code == 200
    db.revoke_labeller("alice")
    r = client.get("/api/stats", headers=bearer(token))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(UserError, match="no active labeller"):
        db.revoke_labeller("alice")
    assert db.add_labeller("alice") != token  # the name is free again, with a new token


def test_token_stored_only_as_hash(served):
    _, db, token, tmp_path = served
    raw = (tmp_path / "feedback.db").read_bytes()
    assert token.encode() not in raw
    assert db.labeller_for_token(token).name == "alice"


@pytest.mark.parametrize("body", [
    {"turn_id": "0" * 32, "choice": "c", "strength": 2},
    {"turn_id": "0" * 32, "choice": "a", "strength": 5},
    {"turn_id": "0" * 32, "choice": "a", "strength": "2"},
    {"turn_id": "../../etc", "choice": "a", "strength": 2},
    {"turn_id": "0" * 32, "choice": "a", "strength": 2, "extra": 1},
    {"choice": "a", "strength": 2},
])  # fmt: skip
def test_api_malformed_comparison_is_422(served, body):
    client, db, token, _ = served
    assert client.post("/api/comparisons", json=body, headers=bearer(token)).status_code == 422
    assert db.comparisons() == []


def test_api_malformed_turn_is_422_and_unknown_ids_404(served):
    client, _, token, _ = served
    h = bearer(token)
    assert client.post("/api/turns", json={"human": ""}, headers=h).status_code == 422
    assert client.post("/api/turns", json={"human": "x" * 5000}, headers=h).status_code == 422
    assert client.post("/api/turns", content=b"{not json", headers={**h, "content-type": "application/json"}
                       ).status_code == 422  # fmt: skip
    assert client.post("/api/turns", json={"conversation_id": "f" * 32, "human": "hi"}, headers=h).status_code == 404
    r = client.post("/api/comparisons", json={"turn_id": "f" * 32, "choice": "a", "strength": 1}, headers=h)
    assert r.status_code == 404


def test_other_labellers_turns_are_not_found(served):
    client, db, token, _ = served
    other = db.add_labeller("bob")
    turn = client.post("/api/turns", json={"human": "hi"}, headers=bearer(token)).json()
    r = client.post("/api/comparisons", json={"turn_id": turn["turn_id"], "choice": "a", "strength": 1},
                    headers=bearer(other))  # fmt: skip
    assert r.status_code == 404
    r = client.post("/api/turns", json={"conversation_id": turn["conversation_id"], "human": "x"},
                    headers=bearer(other))  # fmt: skip
    assert r.status_code == 404


def test_oversized_body_is_413(served):
    client, db, token, _ = served
    big = {"human": "x" * 70_000}
    assert client.post("/api/turns", json=big, headers=bearer(token)).status_code == 413

    def chunks():  # streamed without Content-Length: counted as it arrives
        for _ in range(20):
            yield b"x" * 8192

    r = client.post("/api/turns", content=chunks(), headers={**bearer(token), "content-type": "application/json"})
    assert r.status_code == 413
    assert db.stats()["turns"] == 0


def test_rate_limit_is_429_per_labeller(tmp_path):
    app, db = make_app(tmp_path, models=("tiny-a",), comparisons_per_minute=0.001, comparison_burst=2,
                       turns_per_minute=0.001, turn_burst=3)  # fmt: skip
    alice, bob = db.add_labeller("alice"), db.add_labeller("bob")
    with TestClient(app) as client:
        codes = [client.post("/api/turns", json={"human": f"hi {i}"}, headers=bearer(alice)).status_code
                 for i in range(4)]  # fmt: skip
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        r = client.post("/api/turns", json={"human": "hi"}, headers=bearer(alice))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert client.post("/api/turns", json={"human": "hi"}, headers=bearer(bob)).status_code == 200
        body = {"turn_id": "f" * 32, "choice": "a", "strength": 1}
        codes = [client.post("/api/comparisons", json=body, headers=bearer(alice)).status_code for _ in range(3)]
        assert codes == [404, 404, 429]


# ---------------------------------------------------------------- pages


def test_pages_sign_in_turn_compare_and_script_is_inert(served):
    client, db, token, _ = served
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    csrf = sign_in(client, token)
    cookie = client.cookies.jar
    assert any(c.name == "fb_session" and c.has_nonstandard_attr("HttpOnly") for c in cookie)
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    r = client.post("/turn", data={"csrf": csrf, "conversation_id": "", "human": evil}, follow_redirects=True)
    assert r.status_code == 200
    assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in r.text
    assert "script-src 'nonce-" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    turn_id = re.search(r'name="turn_id" value="([0-9a-f]{32})"', r.text).group(1)
    cid = re.search(r'name="conversation_id" value="([0-9a-f]{32})"', r.text).group(1)
    assert "Response A" in r.text and "B is much better" in r.text
    r = client.post("/compare", data={"csrf": csrf, "turn_id": turn_id, "conversation_id": cid, "pick": "a4",
                                      "comment": "<b>bold</b>"})  # fmt: skip
    assert r.status_code == 200
    rows = db.comparisons()
    assert len(rows) == 1 and rows[0]["choice"] == "a" and rows[0]["strength"] == 4
    assert rows[0]["comment"] == "<b>bold</b>"  # stored as written, escaped when shown
    assert "Your next turn" in r.text  # the comparison is done: the next human turn is asked for


def test_forged_or_missing_csrf_is_refused(served):
    client, db, token, _ = served
    sign_in(client, token)
    for forged in ("", "forged-token"):
        r = client.post("/turn", data={"csrf": forged, "conversation_id": "", "human": "hi"})
        assert r.status_code == 403
    assert db.stats()["turns"] == 0
    # the sign-in form is protected too: a token without the cookie nonce's HMAC is refused
    client.cookies.clear()
    r = client.post("/login", data={"token": token, "csrf": "forged"})
    assert r.status_code == 403


def test_sign_in_with_wrong_token_then_revoked_session_ends(served):
    client, db, token, _ = served
    page = client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"token": "wrong", "csrf": csrf})
    assert r.status_code == 401 and "not valid" in r.text
    sign_in(client, token)
    assert client.get("/", follow_redirects=False).status_code == 200
    db.revoke_labeller("alice")
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_red_team_mode_asks_for_the_more_harmful(tmp_path):
    app, db = make_app(tmp_path, models=("tiny-a",), mode="red-team", prompts=["How do I pick a lock?"])
    token = db.add_labeller("rt")
    with TestClient(app) as client:
        sign_in(client, token)
        page = client.get("/")
        assert "more harmful" in page.text and "How do I pick a lock?" in page.text


# ---------------------------------------------------------------- models, names


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "/etc/passwd", "a\\b", "x y", ""])
def test_path_like_model_names_are_refused(tmp_path, name):
    with pytest.raises(UserError):
        check_model_name(name)
    with pytest.raises(UserError):
        load_models([name], tmp_path)


def test_serve_refuses_path_like_model_name_on_the_command_line(tmp_path, capsys):
    from scalelab.cli import main

    make_model_run(tmp_path, "tiny-a")
    with pytest.raises(SystemExit) as e:
        main(["feedback", "serve", "--models", "../../etc/passwd", "--workdir", str(tmp_path)])
    assert e.value.code == 2
    assert "model name" in capsys.readouterr().err


def test_one_model_gives_two_samples_and_unknown_model_is_a_user_error(tmp_path):
    make_model_run(tmp_path, "solo")
    responder = Responder(load_models(["solo"], tmp_path), max_new_tokens=6, rng=random.Random(1))
    (a, b), models, settings, _ = responder.respond("", "Hi")
    assert models == ("solo", "solo") and settings["models"] == ["solo"]
    with pytest.raises(UserError, match="no run named"):
        load_models(["missing"], tmp_path)


def test_cut_response_stops_at_turn_markers_and_drops_control_characters():
    from scalelab.feedback.responder import cut_response

    assert cut_response(" Sure.\x04 Here\n\nHuman: next") == "Sure. Here"
    assert cut_response("a\nAssistant: b") == "a"
    assert cut_response("tab\tand\nnewline\x1b[31m") == "tab\tand\nnewline[31m"


# ---------------------------------------------------------------- export and Elo


def _collect(client, token, n: int, choices=None) -> None:
    h = bearer(token)
    cid = None
    for i in range(n):
        turn = client.post("/api/turns", json={"conversation_id": cid, "human": f"Question {i}?"}, headers=h).json()
        cid = turn["conversation_id"]
        choice = choices[i] if choices else "a"
        r = client.post("/api/comparisons", json={"turn_id": turn["turn_id"], "choice": choice, "strength": 1 + i % 4},
                        headers=h)  # fmt: skip
        assert r.status_code == 200


def test_export_round_trip_through_the_pm_loaders(served, tmp_path):
    from scalelab.align.pm_data import load_set
    from scalelab.data.comparisons import load_comparisons

    client, db, token, workdir = served
    _collect(client, token, 3, ["a", "b", "a"])
    rows = db.comparisons()
    hh = export_comparisons(db, tmp_path / "out" / "hh.jsonl", "hh")
    n_equal = sum(r["response_a"].strip() == r["response_b"].strip() for r in rows)
    assert hh.written == 3 - n_equal and hh.skipped_equal == n_equal
    lines = [json.loads(x) for x in (tmp_path / "out" / "hh.jsonl").read_text().splitlines()]
    assert all(set(x) == {"chosen", "rejected"} for x in lines)
    loaded, report = load_comparisons(tmp_path / "out" / "hh.jsonl", format="hh", strict=True)
    assert len(loaded) == hh.written and report.n_skipped == 0
    kept = [r for r in rows if r["response_a"].strip() != r["response_b"].strip()]
    for c, row in zip(loaded, kept):
        good = row["response_a"] if row["choice"] == "a" else row["response_b"]
        assert c.chosen == good.strip()
        assert c.prompt.endswith(f"Human: {row['human']}\n\nAssistant:")
    # the last turn's prompt holds the whole conversation so far
    assert loaded[-1].prompt.count("Human:") == len(loaded)
    assert len(load_set(str(tmp_path / "out" / "hh.jsonl"), format="hh").comparisons) == hh.written
    gen = export_comparisons(db, tmp_path / "gen.jsonl", "generic")
    loaded, _ = load_comparisons(tmp_path / "gen.jsonl", format="generic", strict=True)
    assert len(loaded) == gen.written
    assert [c.margin for c in loaded] == [float(r["strength"]) for r in kept]
    assert loaded[0].meta["labeller"] == "alice" and loaded[0].meta["mode"] == "helpful"
    with pytest.raises(UserError, match="unknown export format"):
        export_comparisons(db, tmp_path / "x.jsonl", "csv")


def test_red_team_export_prefers_the_response_not_picked():
    from scalelab.feedback.export import hh_line

    row = {"mode": "red-team", "choice": "a", "context": "", "human": "h", "response_a": "harm", "response_b": "ok"}
    line = hh_line(row)
    assert line["chosen"].endswith("Assistant: ok") and line["rejected"].endswith("Assistant: harm")
    assert outcomes([{**row, "model_a": "m1", "model_b": "m2"}]) == [("m2", "m1")]


def test_elo_recovers_planted_order():
    rng = np.random.default_rng(0)
    true = {"weak": -200.0, "mid": 0.0, "strong": 250.0}
    names = list(true)
    games = []
    for _ in range(900):
        i, j = rng.choice(3, 2, replace=False)
        p = 1 / (1 + 10 ** ((true[names[j]] - true[names[i]]) / 400))
        games.append((names[i], names[j]) if rng.random() < p else (names[j], names[i]))
    games += [("mid", "mid")] * 5
    result = elo_ratings(games, n_bootstrap=100, seed=0)
    assert result.n_same_model == 5 and result.n_comparisons == 900
    table = result.table()
    assert [r["model"] for r in table] == ["strong", "mid", "weak"]
    gap = result.elo[result.models.index("strong")] - result.elo[result.models.index("weak")]
    assert 350 < gap < 550  # planted: 450
    for r in table:
        assert r["elo_lo"] < r["elo"] < r["elo_hi"]
    rates = result.win_rate()
    s, w = result.models.index("strong"), result.models.index("weak")
    assert rates[s][w] > 0.8 and abs(rates[s][w] + rates[w][s] - 1) < 1e-9
    with pytest.raises(UserError, match="no comparison between two different models"):
        elo_ratings([("a", "a")])


def test_cli_labellers_and_export(served, tmp_path, capsys):
    from scalelab.cli import main

    client, db, token, workdir = served
    _collect(client, token, 2, ["a", "b"])
    main(["feedback", "add-labeller", "carol", "--workdir", str(workdir), "--json"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["labeller"] == "carol" and db.labeller_for_token(printed["token"]).name == "carol"
    main(["feedback", "labellers", "--workdir", str(workdir), "--json"])
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["labellers"]
    assert [(r["name"], r["comparisons"]) for r in rows] == [("alice", 2), ("carol", 0)]
    assert "token" not in json.dumps(rows)
    main(["feedback", "export", str(tmp_path / "e.jsonl"), "--format", "generic", "--workdir", str(workdir), "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] >= 1
    with pytest.raises(SystemExit) as e:
        main(["feedback", "add-labeller", "../evil", "--workdir", str(workdir)])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["feedback", "export", str(tmp_path / "e.jsonl"), "--workdir", str(tmp_path / "nowhere")])
    assert e.value.code == 2


@pytest.mark.slow
def test_cli_elo_json_and_report(served, capsys):
    from scalelab.cli import main

    client, db, token, workdir = served
    _collect(client, token, 4, ["a", "b", "a", "a"])
    # a (fresh) preference model run in the store, to relate PM scores to Elo
    from scalelab.align.backbones import GPTBackbone
    from scalelab.align.pm import PreferenceModel
    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.model.gpt import GPT, GPTConfig
    from scalelab.store import RunStore

    store = RunStore.in_workdir(workdir)
    pm_run = store.create_run("tiny-pm", {}, "pm-hash", status="completed")
    store.close()
    gpt = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=257))
    pm = PreferenceModel(GPTBackbone(gpt), ByteTokenizer(), "ranked")
    torch.nn.init.normal_(pm.head.weight)  # a fresh head scores every text 0
    pm.save(workdir / "runs" / pm_run / "pm")
    main(["feedback", "elo", "--workdir", str(workdir), "--bootstrap", "20", "--pm", "tiny-pm", "--json"])
    elo = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(elo["models"]) == ["tiny-a", "tiny-b"] and elo["n_comparisons"] == 4
    assert Path(elo["report"]).is_file() and "Elo ratings" in Path(elo["report"]).read_text()
    assert sorted(elo["pm_scores"]) == ["tiny-a", "tiny-b"] and isinstance(elo["elo_per_pm_unit"], float)
    with pytest.raises(SystemExit) as e:
        main(["feedback", "elo", "--workdir", str(workdir), "--pm", "../runs/x"])
    assert e.value.code == 2


def test_elo_per_pm_unit_slope():
    from scalelab.feedback.elo import EloResult, elo_per_pm_unit

    result = EloResult(["a", "b", "c"], [-174.0, 0.0, 174.0], [(0, 0)] * 3, [[0] * 3] * 3, 10, 0)
    assert elo_per_pm_unit(result, {"a": 0.0, "b": 1.0, "c": 2.0}) == pytest.approx(174.0)
    assert elo_per_pm_unit(result, {"a": 1.0}) is None
