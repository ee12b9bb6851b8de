"""Benchmark of the feedback server: comparison submits under 50 concurrent labellers, and one turn.

    python benchmarks/bench_feedback.py submit [--labellers 50] [--per 40] [--rate R] [--sync FULL|NORMAL]
    python benchmarks/bench_feedback.py commit [--mode group|single] [--labellers 50] [--per 40] [--sync FULL|NORMAL]
    python benchmarks/bench_feedback.py turn [--tokens 64] [--threads 2]

`submit` serves the app with uvicorn in a child process on loopback (so the load client does not
share its interpreter) and drives it with `scalelab.feedback.load.run_load`: every labeller at once,
either back to back (closed loop: the latency is mostly queueing, 50 / throughput) or, with
`--rate R`, at R comparisons per second in all (open loop: each labeller waits an exponential think
time between submits, as a person would). Prints one JSON line.

`commit` is the storage path alone (no HTTP): threads storing comparisons back to back, one
transaction each (`--mode single`, as before group commit) or through the group committer.

`turn` times `Responder.respond` (two responses of `--tokens` tokens, KV cache) on a fresh ~10M
parameter GPT (9 layers, width 288, the ladder's aspect ratio) on the CPU. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path


def _serve(workdir: str, port: int, sync: str) -> None:
    import uvicorn

    from scalelab.feedback.app import Settings, create_app
    from scalelab.feedback.db import FeedbackDB
    from scalelab.feedback.responder import Responder
    from scalelab.feedback.server import uvicorn_config

    db = FeedbackDB(Path(workdir) / "feedback.db", synchronous=sync)
    app = create_app(db, Responder([]), Settings(comparisons_per_minute=1e6, comparison_burst=100_000))
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", port)).run()


async def _open_loop(url, plan, rate: float, seed: int):
    """Each labeller sleeps an exponential think time (mean labellers / rate) before each submit."""
    import httpx

    from scalelab.feedback.load import LoadResult

    result = LoadResult()
    mean_wait = len(plan.labellers) / rate

    async def one(i, token, turns):
        rng = random.Random(seed + i)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for turn_id in turns:
                await asyncio.sleep(rng.expovariate(1 / mean_wait))
                t0 = time.perf_counter()
                body = {"turn_id": turn_id, "choice": rng.choice("ab"), "strength": rng.randint(1, 4)}
                r = await client.post("/api/comparisons", json=body, headers={"Authorization": f"Bearer {token}"})
                result.latencies_s.append(time.perf_counter() - t0)
                result.statuses[r.status_code] = result.statuses.get(r.status_code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i, tok, turns) for i, (tok, turns) in enumerate(plan.labellers)])
    result.wall_s = time.perf_counter() - t0
    return result


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_submit(args) -> dict:
    import httpx

    from scalelab.feedback.db import FeedbackDB
    from scalelab.feedback.load import plan_turns, run_load, run_load_raw
    from scalelab.feedback.server import free_port

    with tempfile.TemporaryDirectory() as workdir:
        db = FeedbackDB(Path(workdir) / "feedback.db")
        plan = plan_turns(db, args.labellers, args.per)
        db.close()
        port = free_port()
        server = mp.get_context("spawn").Process(target=_serve, args=(workdir, port, args.sync), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        cpu0, client0 = _cpu_s(server.pid), time.process_time()
        try:
            if args.rate:
                result = asyncio.run(_open_loop(url, plan, args.rate, args.seed))
            else:
                load = run_load_raw if args.client == "raw" else run_load
                result = asyncio.run(load(url, plan, timeout_s=900, seed=args.seed))
            server_cpu_ms = (_cpu_s(server.pid) - cpu0) * 1000 / plan.n
            client_cpu_ms = (time.process_time() - client0) * 1000 / plan.n
        finally:
            server.terminate()
            server.join()
        stored = len(FeedbackDB(Path(workdir) / "feedback.db").comparisons())
    return {"bench": "submit", "labellers": args.labellers, "comparisons": plan.n, "stored": stored,
            "loop": f"open, {args.rate}/s" if args.rate else "closed", "synchronous": args.sync,
            "client": "httpx" if args.rate else args.client,
            "server_cpu_ms_per_request": server_cpu_ms, "client_cpu_ms_per_request": client_cpu_ms,
            **result.summary()}  # fmt: skip


def bench_commit(args) -> dict:
    """The storage path alone, no HTTP: `labellers` threads each store `per` comparisons back to back,
    either one transaction (one fsync) each, in turn (`--mode single`, the store before group commit),
    or through the `GroupCommitter` (`--mode group`). Isolates the fsync queueing from the server's CPU."""
    import threading

    from scalelab.feedback.db import FeedbackDB
    from scalelab.feedback.group_commit import GroupCommitter
    from scalelab.feedback.load import LoadResult, plan_turns

    with tempfile.TemporaryDirectory() as workdir:
        db = FeedbackDB(Path(workdir) / "feedback.db", synchronous=args.sync)
        plan = plan_turns(db, args.labellers, args.per)
        committer = GroupCommitter(db) if args.mode == "group" else None
        result, lock = LoadResult(), threading.Lock()

        def labeller(token: str, turns: list[str]) -> None:
            who = db.labeller_for_token(token)
            for turn_id in turns:
                t0 = time.perf_counter()
                item = (turn_id, who, "a", 2, "")
                row = committer.submit(item).result() if committer else db.add_comparison(*item)
                with lock:
                    result.latencies_s.append(time.perf_counter() - t0)
                    result.ids.append(row)

        threads = [threading.Thread(target=labeller, args=lt) for lt in plan.labellers]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        result.wall_s = time.perf_counter() - t0
        commits = committer.batches if committer else plan.n
        stored = len(db.comparisons())
    return {"bench": "commit", "mode": args.mode, "synchronous": args.sync, "labellers": args.labellers,
            "comparisons": plan.n, "stored": stored, "commits": commits, **result.summary()}  # fmt: skip


def bench_turn(args) -> dict:
    import torch

    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.feedback.responder import LoadedModel, Responder
    from scalelab.model.gpt import GPT, GPTConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=9, n_head=9, n_embd=288, block_size=512, vocab_size=257)).eval()
    params = sum(p.numel() for p in model.parameters())
    loaded = [LoadedModel("m", model, ByteTokenizer())]
    if args.two_models:
        loaded.append(LoadedModel("m2", GPT(model.cfg).eval(), ByteTokenizer()))
    responder = Responder(loaded, max_new_tokens=args.tokens, temperature=1.0, top_k=None, rng=random.Random(0))
    context = "\n\nHuman: Hello, who are you?\n\nAssistant: I am a small model trained on a laptop."
    responder.respond(context, "warm up")
    times, cpu = [], []
    for i in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        responder.respond(context, f"Tell me something interesting about the number {i}.")
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"bench": "turn", "params": params, "tokens": args.tokens, "models": len(loaded),
            "threads": args.threads, "median_s": statistics.median(times), "max_s": max(times),
            "median_cpu_s": statistics.median(cpu),
            "repeats": args.repeats}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("submit")
    s.add_argument("--labellers", type=int, default=50)
    s.add_argument("--per", type=int, default=40)
    s.add_argument("--rate", type=float, default=0.0, help="open loop at this many comparisons/s in all")
    s.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--client",
        default="raw",
        choices=["raw", "httpx"],
        help="closed loop: hand-written HTTP/1.1 (light) or httpx (~4-5 ms CPU per request)",
    )
    c = sub.add_parser("commit")
    c.add_argument("--labellers", type=int, default=50)
    c.add_argument("--per", type=int, default=40)
    c.add_argument("--mode", default="group", choices=["group", "single"])
    c.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    t = sub.add_parser("turn")
    t.add_argument("--tokens", type=int, default=64)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--repeats", type=int, default=10)
    t.add_argument("--two-models", action="store_true")
    args = p.parse_args()
    out = {"submit": bench_submit, "commit": bench_commit, "turn": bench_turn}[args.what](args)
    out.update(machine=platform.machine(), cpus=mp.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
