"""Running the application: in the foreground (`scalelab feedback serve`) or in a thread (tests, benchmarks).

Every way of serving goes through `uvicorn_config`, so they share one setting that matters:
**the server's keep-alive timeout is much longer than a client's**. An HTTP/1.1 client keeps an
idle connection to reuse it; if the server closes it at the very moment the client sends the next
request on it, that request fails (a `ReadError` in httpx, a reset in general) and a POST is not
retried. uvicorn closes idle connections after 5 s by default and httpx's pool expires them after
the same 5 s, so a client that lags by seconds (50 labellers on a loaded 2-core machine) meets the
server's close head-on. This is what dropped a connection in the 2,000-comparison load test with
httptools + uvloop: the faster server made the load client the bottleneck, whose lag then reached
the 5 s (benchmarks/RESULTS_feedback.md: with a 0.5 s server timeout the load test fails with h11 and
with httptools alike; with a server timeout 10x the client's expiry, never). Servers in front of
clients keep idle connections longer than the clients do (nginx: 75 s), and so does this one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

KEEP_ALIVE_S = 75.0
"""Seconds the server keeps an idle connection: far above httpx's 5 s pool expiry (see the docstring)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def uvicorn_config(app, host: str, port: int, **options) -> uvicorn.Config:
    """uvicorn's configuration for the feedback app: quiet, no access log, no `server` header (one header
    less for the HTTP layer to validate and send on every response, and no version shown), the long keep-alive."""
    options = {"log_level": "warning", "access_log": False, "server_header": False,
               "timeout_keep_alive": KEEP_ALIVE_S, **options}  # fmt: skip
    return uvicorn.Config(app, host=host, port=port, **options)


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread; yields its base URL; stops it on exit."""
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn_config(app, host, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the feedback server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
