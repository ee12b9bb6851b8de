"""A load driver: many labellers submitting comparisons at once through the JSON API.

Used by the load test (count: none lost, none duplicated) and by `benchmarks/bench_feedback.py`
(p95 latency of `POST /api/comparisons`). Turns are made directly in the store, so that the load
is the comparison path alone (a turn's cost is sampling, measured separately).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

import numpy as np

from scalelab.feedback.db import FeedbackDB, Labeller


@dataclass
class LoadPlan:
    """Per labeller: (token, [turn ids to compare])."""

    labellers: list[tuple[str, list[str]]]

    @property
    def n(self) -> int:
        return sum(len(t) for _, t in self.labellers)


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.array(self.latencies_s) * 1000, q)) if self.latencies_s else float("nan")

    def summary(self) -> dict:
        return {"requests": len(self.latencies_s), "statuses": self.statuses, "wall_s": self.wall_s,
                "per_s": len(self.latencies_s) / self.wall_s if self.wall_s else None,
                "p50_ms": self.percentile_ms(50), "p95_ms": self.percentile_ms(95),
                "p99_ms": self.percentile_ms(99), "max_ms": self.percentile_ms(100)}  # fmt: skip


def plan_turns(db: FeedbackDB, labellers: int, per_labeller: int, models=("model-a", "model-b"),
               prefix: str = "load") -> LoadPlan:  # fmt: skip
    """`labellers` new labellers, each with one conversation of `per_labeller` uncompared turns."""
    plan = []
    for i in range(labellers):
        token = db.add_labeller(f"{prefix}{i:03d}")
        who: Labeller = db.labeller_for_token(token)
        cid, _, _ = db.conversation_context(None, who, "helpful")
        turns = [db.add_turn(cid, k, f"question {k}", "", (f"answer a {k}", f"answer b {k}"), tuple(models),
                             {"load": True}, bool(k % 2)) for k in range(per_labeller)]  # fmt: skip
        plan.append((token, turns))
    return LoadPlan(plan)


async def _labeller(client, token: str, turns: list[str], result: LoadResult, rng: random.Random) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for turn_id in turns:
        body = {"turn_id": turn_id, "choice": rng.choice("ab"), "strength": rng.randint(1, 4)}
        t0 = time.perf_counter()
        r = await client.post("/api/comparisons", json=body, headers=headers)
        result.latencies_s.append(time.perf_counter() - t0)
        result.statuses[r.status_code] = result.statuses.get(r.status_code, 0) + 1
        if r.status_code == 200:
            result.ids.append(r.json()["id"])


async def run_load(base_url: str, plan: LoadPlan, timeout_s: float = 300.0, seed: int = 0) -> LoadResult:
    """Every labeller of `plan` at once, each submitting its comparisons one after another."""
    import httpx

    result = LoadResult()
    # an idle connection is dropped here after 5 s, long before the server's KEEP_ALIVE_S (server.py)
    limits = httpx.Limits(max_connections=len(plan.labellers), max_keepalive_connections=len(plan.labellers),
                          keepalive_expiry=5.0)  # fmt: skip
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0) as client:
        t0 = time.perf_counter()
        tasks = [_labeller(client, token, turns, result, random.Random(seed + i))
                 for i, (token, turns) in enumerate(plan.labellers)]  # fmt: skip
        await asyncio.wait_for(asyncio.gather(*tasks), timeout_s)
        result.wall_s = time.perf_counter() - t0
    return result


async def _raw_labeller(host: str, port: int, token: str, turns: list[str], result: LoadResult,
                        rng: random.Random) -> None:  # fmt: skip
    """One keep-alive connection, HTTP/1.1 written and read by hand: microseconds of client CPU per request."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for turn_id in turns:
            body = json.dumps({"turn_id": turn_id, "choice": rng.choice("ab"), "strength": rng.randint(1, 4)})
            request = (f"POST /api/comparisons HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}")  # fmt: skip
            t0 = time.perf_counter()
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
            payload = await reader.readexactly(length)
            result.latencies_s.append(time.perf_counter() - t0)
            status = int(head.split(b" ", 2)[1])
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.ids.append(json.loads(payload)["id"])
    finally:
        writer.close()


async def run_load_raw(base_url: str, plan: LoadPlan, timeout_s: float = 300.0, seed: int = 0) -> LoadResult:
    """`run_load` with a minimal hand-written HTTP/1.1 client instead of httpx: on a 2-core machine the
    httpx client spends ~4-5 ms of CPU per request, as much as the server and then some, so the latency
    it measures is mostly its own queueing. This one measures the server."""
    host, _, port = base_url.removeprefix("http://").rstrip("/").partition(":")
    result = LoadResult()
    t0 = time.perf_counter()
    tasks = [_raw_labeller(host, int(port), token, turns, result, random.Random(seed + i))
             for i, (token, turns) in enumerate(plan.labellers)]  # fmt: skip
    await asyncio.wait_for(asyncio.gather(*tasks), timeout_s)
    result.wall_s = time.perf_counter() - t0
    return result
