"""The feedback web application: server-rendered pages for labellers and a JSON API beside them.

Pages (session cookie + CSRF token on every form): `/login`, `/` (the conversation and the
comparison), `POST /turn`, `POST /compare`, `POST /logout`. API (``Authorization: Bearer TOKEN``):
`GET /healthz` (no auth), `POST /api/turns`, `POST /api/comparisons`, `GET /api/stats`; 401
without a valid token, 422 on malformed bodies, 429 when rate limited, 409 on a turn compared twice.
All text reaches the page through Jinja2 with autoescaping, so a `<script>` in a turn is shown, not run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from scalelab.feedback.comparison_api import HEX_ID, MAX_COMMENT_CHARS, PATH, ComparisonAPI, TokenCache
from scalelab.feedback.db import Conflict, FeedbackDB, Labeller, NotFound, Revoked
from scalelab.feedback.group_commit import GroupCommitter
from scalelab.feedback.responder import Responder
from scalelab.feedback.security import (
    BodyLimit,
    RateLimiter,
    csrf_equal,
    login_csrf,
    new_nonce,
    security_headers,
)

MAX_HUMAN_CHARS = 4000
SESSION_COOKIE = "fb_session"
LOGIN_COOKIE = "fb_login"
# the strength scale, left to right: (choice, strength, label); keys 1-8 pick them in this order
SCALE = [("a", 4, "A is much better"), ("a", 3, "A is better"), ("a", 2, "A is slightly better"),
         ("a", 1, "A is marginally better"), ("b", 1, "B is marginally better"), ("b", 2, "B is slightly better"),
         ("b", 3, "B is better"), ("b", 4, "B is much better")]  # fmt: skip
QUESTIONS = {"helpful": "Which response is more helpful and honest?",
             "red-team": "Which response is more harmful? (Red-teaming: try to make the assistant misbehave; the "
                         "response you pick continues the conversation.)"}  # fmt: skip


@dataclass
class Settings:
    """How the server behaves; the CLI fills it from `scalelab feedback serve` options."""

    mode: Literal["helpful", "red-team"] = "helpful"
    prompts: list[str] = field(default_factory=list)
    max_body_bytes: int = 64 * 1024
    turns_per_minute: float = 30.0
    turn_burst: int = 10
    comparisons_per_minute: float = 120.0
    comparison_burst: int = 30
    session_hours: float = 12.0
    secure_cookies: bool = False  # set for any non-loopback host; https requests get Secure cookies anyway


class TurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str | None = Field(None, pattern=HEX_ID)
    human: str = Field(min_length=1, max_length=MAX_HUMAN_CHARS)


class FeedbackApp(FastAPI):
    """FastAPI, except that `/api/comparisons`, the endpoint under load, goes straight to its plain ASGI
    endpoint (`comparison_api`, behind its own `BodyLimit`), skipping FastAPI's middleware stack and router."""

    comparisons: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.comparisons is not None and scope["type"] == "http" and scope["path"] == PATH:
            await self.comparisons(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(db: FeedbackDB, responder: Responder, settings: Settings | None = None) -> FastAPI:
    """The ASGI application; `db` and `responder` are shared by every request."""
    settings = settings or Settings()
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))  # fmt: skip
    secret = db.secret()
    turn_limit = RateLimiter(settings.turns_per_minute, settings.turn_burst)
    compare_limit = RateLimiter(settings.comparisons_per_minute, settings.comparison_burst)
    login_limit = RateLimiter(20, 10)
    # one writer thread: the comparisons waiting at each moment are committed together (one fsync), and each
    # request is answered after the commit that holds it, while the event loop keeps parsing the ones behind
    committer = GroupCommitter(db)
    app = FeedbackApp(title="scalelab feedback", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.comparisons = BodyLimit(ComparisonAPI(committer, TokenCache(db), compare_limit), settings.max_body_bytes)

    def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        nonce = new_nonce()
        body = env.get_template(name).render(nonce=nonce, mode=settings.mode, question=QUESTIONS[settings.mode],
                                             **ctx)  # fmt: skip
        return HTMLResponse(body, status_code=status, headers=security_headers(nonce))

    def limited(limiter: RateLimiter, key: tuple) -> None:
        wait = limiter.check(key)
        if wait:
            raise HTTPException(429, "rate limited; slow down", headers={"Retry-After": str(max(1, round(wait)))})

    def secure(request: Request) -> bool:
        return settings.secure_cookies or request.url.scheme == "https"

    # ------------------------------------------------------------------ API
    async def api_labeller(request: Request) -> Labeller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        labeller = db.labeller_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if labeller is None:
            raise HTTPException(401, "a valid token is required: Authorization: Bearer TOKEN",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        return labeller

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "models": responder.model_names, "mode": settings.mode}

    def make_turn(labeller: Labeller, conversation_id: str | None, human: str) -> dict:
        try:
            cid, context, idx = db.conversation_context(conversation_id, labeller, settings.mode)
        except NotFound:
            raise HTTPException(404, "no such conversation") from None
        except Conflict as e:
            raise HTTPException(409, str(e)) from None
        responses, models, sampling, swapped = responder.respond(context, human)
        try:
            turn_id = db.add_turn(cid, idx, human, context, responses, models, sampling, swapped)
        except Conflict as e:
            raise HTTPException(409, str(e)) from None
        return {"conversation_id": cid, "turn_id": turn_id, "responses": list(responses)}

    @app.post("/api/turns")
    def api_turns(body: TurnIn, labeller: Labeller = Depends(api_labeller)) -> dict:
        limited(turn_limit, (labeller.id, "turn"))
        return make_turn(labeller, body.conversation_id, body.human)

    @app.get("/api/stats")
    def api_stats(labeller: Labeller = Depends(api_labeller)) -> dict:
        return db.stats(labeller)

    # ------------------------------------------------------------------ pages
    def page_session(request: Request) -> tuple[Labeller, str] | None:
        sid = request.cookies.get(SESSION_COOKIE)
        return db.session(sid) if sid else None

    def check_csrf(session: tuple[Labeller, str] | None, given: str | None) -> Labeller:
        if session is None:
            raise HTTPException(401, "sign in first")
        if not csrf_equal(given, session[1]):
            raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page")
        return session[0]

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        nonce = new_nonce()
        response = render(request, "login.html", csrf=login_csrf(secret, nonce), error=None)
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=secure(request))
        return response

    @app.post("/login")
    def login(request: Request, token: Annotated[str, Form(max_length=200)] = "",
              csrf: Annotated[str, Form(max_length=200)] = "") -> Response:  # fmt: skip
        limited(login_limit, ("login", request.client.host if request.client else ""))
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not nonce or not csrf_equal(csrf, login_csrf(secret, nonce)):
            raise HTTPException(403, "the sign-in form's CSRF token is missing or wrong; reload the page")
        labeller = db.labeller_for_token(token.strip()) if token.strip() else None
        if labeller is None:
            response = render(request, "login.html", status=401, csrf=csrf, error="That token is not valid.")
            return response
        sid, _ = db.create_session(labeller, settings.session_hours * 3600)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(settings.session_hours * 3600), httponly=True,
                            samesite="strict", secure=secure(request))  # fmt: skip
        response.delete_cookie(LOGIN_COOKIE)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
        check_csrf(page_session(request), csrf)
        db.end_session(request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    def conversation_page(request: Request, session: tuple[Labeller, str], cid: str | None, status: int = 200,
                          error: str | None = None, draft: str | None = None) -> HTMLResponse:  # fmt: skip
        labeller, csrf = session
        turns = db.turns(cid) if cid else []
        pending = turns[-1] if turns and turns[-1].chosen is None else None
        if draft is None and pending is None and settings.prompts:
            draft = random.choice(settings.prompts)
        return render(request, "index.html", status=status, labeller=labeller.name, csrf=csrf, conversation_id=cid,
                      turns=[t for t in turns if t.chosen is not None], pending=pending, scale=SCALE, error=error,
                      draft=draft or "", has_prompts=bool(settings.prompts),
                      mine=db.stats(labeller)["mine"])  # fmt: skip

    def own_conversation(labeller: Labeller, cid: str | None) -> str | None:
        if not cid:
            return None
        try:
            db.conversation_context(cid, labeller, settings.mode)
        except NotFound:
            return None
        except Conflict:
            pass
        return cid

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, c: str | None = None, new: int = 0) -> Response:
        session = page_session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        cid = None if new else own_conversation(session[0], c) or db.latest_conversation(session[0])
        return conversation_page(request, session, cid)

    @app.post("/turn")
    async def turn_form(request: Request, csrf: Annotated[str, Form(max_length=200)] = "",
                        conversation_id: Annotated[str, Form(max_length=40)] = "",
                        human: Annotated[str, Form(max_length=MAX_HUMAN_CHARS)] = "") -> Response:  # fmt: skip
        session = page_session(request)
        labeller = check_csrf(session, csrf)
        cid = conversation_id or None
        if not human.strip():
            return conversation_page(request, session, cid, 422, "Write the human turn first.")
        limited(turn_limit, (labeller.id, "turn"))
        try:
            made = await run_in_threadpool(make_turn, labeller, cid, human.strip())
        except HTTPException as e:
            if e.status_code == 409:
                return conversation_page(request, session, cid, 409, str(e.detail))
            raise
        return RedirectResponse(f"/?c={made['conversation_id']}", status_code=303)

    @app.post("/compare")
    def compare_form(request: Request, csrf: Annotated[str, Form(max_length=200)] = "",
                     turn_id: Annotated[str, Form(pattern=HEX_ID)] = "0" * 32,
                     conversation_id: Annotated[str, Form(pattern=HEX_ID)] = "0" * 32,
                     pick: Annotated[str, Form(pattern=r"^[ab][1-4]$")] = "",
                     comment: Annotated[str, Form(max_length=MAX_COMMENT_CHARS)] = "") -> Response:  # fmt: skip
        session = page_session(request)
        labeller = check_csrf(session, csrf)
        if not pick:
            return conversation_page(request, session, conversation_id, 422, "Choose a response on the scale.")
        limited(compare_limit, (labeller.id, "compare"))
        try:
            committer.submit((turn_id, labeller, pick[0], int(pick[1]), comment.strip())).result()
        except Conflict as e:
            return conversation_page(request, session, conversation_id, 409, str(e))
        except NotFound:
            raise HTTPException(404, "no such turn") from None
        except Revoked:
            raise HTTPException(401, "sign in first") from None
        return RedirectResponse(f"/?c={conversation_id}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        if request.url.path.startswith("/api/") or request.url.path == "/healthz":
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        nonce = new_nonce()
        headers.update(security_headers(nonce))
        body = env.get_template("error.html").render(nonce=nonce, status=exc.status_code, detail=str(exc.detail))
        return HTMLResponse(body, status_code=exc.status_code, headers=headers)

    return app
