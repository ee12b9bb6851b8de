"""`POST /api/comparisons`, the hot path of the feedback server, as a plain ASGI endpoint.

Under 50 labellers submitting back to back (issue 14: p95 <= 50 ms on 2 cores), the server's CPU per
request is what sets the latency: a closed loop of 50 waits 50 / throughput on average. Profiled
under that load (cProfile on the event loop, `benchmarks/RESULTS_feedback.md`), FastAPI's route for
this one endpoint spent most of the event loop's time in dependency solving, request and response
objects and its middleware stack, and the bearer-token check ran an SQLite query per request on the
event loop. So `app.FeedbackApp` sends this path straight to `ComparisonAPI`, a plain ASGI endpoint
(behind its own `BodyLimit`, which still answers 413), which does only what the endpoint needs:

- the token: `TokenCache`, a labeller per verified token hash; revocation stays exact because the
  transaction that stores the comparison checks the labeller again (`db.Revoked` -> 401, and the
  cache forgets it);
- the body: read whole, validated by pydantic-core straight from the JSON bytes
  (`ComparisonIn.model_validate_json`), 422 with FastAPI's error shape;
- the per-labeller rate limit (429 + Retry-After), then the group commit (`submit_async`): the
  answer goes out only after the commit that holds the comparison.

Order of the answers as before: 401 (token), 422 (body), 429 (rate), 404 / 409 (store), 200 {id};
405 for another method.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from scalelab.feedback.db import Conflict, FeedbackDB, Labeller, NotFound, Revoked, token_hash
from scalelab.feedback.group_commit import GroupCommitter
from scalelab.feedback.security import RateLimiter

PATH = "/api/comparisons"
HEX_ID = r"^[0-9a-f]{32}$"
MAX_COMMENT_CHARS = 2000
UNAUTHORIZED = "a valid token is required: Authorization: Bearer TOKEN"


class ComparisonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn_id: str = Field(pattern=HEX_ID)
    choice: Literal["a", "b"]
    strength: int = Field(ge=1, le=4, strict=True)
    comment: str = Field("", max_length=MAX_COMMENT_CHARS)


class TokenCache:
    """The labeller of each bearer token already verified, keyed by the token's SHA-256 hash.

    A hit skips the SQLite lookup on the event loop. Only a valid token is kept (an unknown one asks
    the store every time) and at most `max_entries` of them. A revoked token may still hit here: the
    store refuses its comparison in the commit (`Revoked`) and the caller then calls `forget`.
    """

    def __init__(self, db: FeedbackDB, max_entries: int = 10_000):
        self.db = db
        self.max_entries = max_entries
        self._known: dict[str, Labeller] = {}

    def labeller(self, token: str) -> Labeller | None:
        key = token_hash(token)
        found = self._known.get(key)
        if found is None:
            found = self.db.labeller_for_token(token)
            if found is not None:
                if len(self._known) >= self.max_entries:
                    self._known.clear()
                self._known[key] = found
        return found

    def forget(self, labeller: Labeller) -> None:
        self._known = {k: v for k, v in self._known.items() if v.id != labeller.id}


class ComparisonAPI:
    """The ASGI endpoint of `/api/comparisons`."""

    def __init__(self, committer: GroupCommitter, tokens: TokenCache, limiter: RateLimiter):
        self.committer = committer
        self.tokens = tokens
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _answer(send, 405, {"detail": "Method Not Allowed"}, [(b"allow", b"POST")])
            return
        auth = content_type = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                auth = value
            elif key == b"content-type":
                content_type = value
        scheme, _, token = auth.decode("latin-1").partition(" ")
        token = token.strip()
        labeller = self.tokens.labeller(token) if scheme.lower() == "bearer" and token else None
        if labeller is None:
            await _answer(send, 401, {"detail": UNAUTHORIZED}, [(b"www-authenticate", b"Bearer")])
            return
        body = await _read_body(receive)
        if body is None:  # the client left, or BodyLimit answered 413
            return
        try:
            if content_type and b"json" not in content_type.split(b";", 1)[0]:
                raise ValueError("the body must be JSON (Content-Type: application/json)")
            given = ComparisonIn.model_validate_json(body)
        except (ValidationError, ValueError) as e:
            await _answer(send, 422, {"detail": _errors(e)})
            return
        wait = self.limiter.check((labeller.id, "compare"))
        if wait:
            retry = str(max(1, round(wait))).encode()
            await _answer(send, 429, {"detail": "rate limited; slow down"}, [(b"retry-after", retry)])
            return
        try:
            row = await self.committer.submit_async((given.turn_id, labeller, given.choice, given.strength,
                                                     given.comment))  # fmt: skip
        except Revoked:
            self.tokens.forget(labeller)
            await _answer(send, 401, {"detail": UNAUTHORIZED}, [(b"www-authenticate", b"Bearer")])
            return
        except NotFound:
            await _answer(send, 404, {"detail": "no such turn"})
            return
        except Conflict as e:
            await _answer(send, 409, {"detail": str(e)})
            return
        await _send_json(send, 200, b'{"id":%d}' % row)


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _errors(e: ValidationError | ValueError) -> list[dict]:
    """FastAPI's 422 shape: a list of {type, loc, msg, input}, `loc` starting at "body"."""
    if isinstance(e, ValidationError):
        return [{**err, "loc": ["body", *err["loc"]]} for err in e.errors(include_url=False, include_context=False)]
    return [{"type": "value_error", "loc": ["body"], "msg": str(e)}]


async def _answer(send: Send, status: int, payload: dict, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await _send_json(send, status, json.dumps(payload, default=str).encode(), headers)


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                            *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
