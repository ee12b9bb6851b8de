"""The guards of the feedback server: body size limit, per-labeller rate limit, CSRF, security headers.

- `BodyLimit`: an ASGI middleware that answers 413 to a body larger than the limit, whether the
  client announced it (Content-Length) or streams it (chunked): the body is counted as it arrives.
- `RateLimiter`: a token bucket per (labeller, action): `burst` requests at once, refilled at
  `per_minute`; beyond that 429 with Retry-After.
- CSRF: a signed-in session keeps a random token that every form repeats (compared in constant
  time); the sign-in form, before any session exists, uses a cookie nonce and its HMAC.
- Headers: a Content-Security-Policy that allows only the page's own nonce-tagged script, no
  framing, no sniffing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """413 for request bodies over `max_bytes` (announced or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await _too_large(send, self.max_bytes)
                    return
        seen = 0
        started = False  # the app began its response (too late for a 413)
        refused = False  # we answered 413; whatever the app sends after that is dropped

        async def counting_receive() -> Message:
            nonlocal seen, started, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    # frameworks turn exceptions while reading the body into 400s, so answer here
                    started = refused = True
                    await _too_large(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail": "request body over {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """Token buckets keyed by (labeller id, action)."""

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = burst
        self._buckets: dict[tuple, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: tuple) -> float:
        """0 when the request may go ahead (one token spent), else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate if self.rate > 0 else math.inf


def csrf_equal(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def login_csrf(secret: bytes, nonce: str) -> str:
    """The sign-in form's CSRF token: an HMAC of the nonce held in a cookie."""
    return hmac.new(secret, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def security_headers(nonce: str) -> dict[str, str]:
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
    return {"Content-Security-Policy": csp, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}  # fmt: skip
