"""Time estimates for a plan, from a short throughput probe of each model shape on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from scalelab.sweep.spec import PlannedRun


def probe_tokens_per_s(run: PlannedRun, vocab_size: int, steps: int = 8, warmup: int = 2,
                       threads: int | None = None) -> float:
    """Training tokens/s of the run's model and batch, at the threads it will train with: the median
    of a few steps after warm-up."""
    before = torch.get_num_threads()
    if threads or run.cfg.train.threads:
        torch.set_num_threads(threads or run.cfg.train.threads)
    try:
        return _probe(run, vocab_size, steps, warmup)
    finally:
        torch.set_num_threads(before)


def _probe(run: PlannedRun, vocab_size: int, steps: int, warmup: int) -> float:
    from scalelab.model.gpt import GPT
    from scalelab.model.sizes import resolve
    from scalelab.train.loop import resolve_device
    from scalelab.train.optim import build_optimizers

    cfg = run.cfg
    device = resolve_device(cfg.train.device)
    torch.manual_seed(0)
    model = GPT(resolve(cfg.model, vocab_size)).to(device)
    opts = build_optimizers(model, cfg.train, device)
    B, T = cfg.train.batch_size, cfg.model.block_size
    x = torch.randint(0, vocab_size, (B, T), device=device)
    cuda = device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    times = []
    for i in range(steps + warmup):
        t = time.perf_counter()
        for _ in range(cfg.train.grad_accum):
            with ctx:
                _, loss = model(x, x)
            loss.backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return B * T * cfg.train.grad_accum / sorted(times)[len(times) // 2]


def estimate_seconds(runs: list[PlannedRun], workdir: str | Path, vocab_size: int = 257) -> list[float]:
    """Estimated wall seconds per run (probe results cached per shape in the work directory)."""
    cache_path = Path(workdir) / "cache" / "throughput.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    out = []
    for r in runs:
        m, t = r.cfg.model, r.cfg.train
        key = (f"{m.recipe}|{m.size}|{m.n_layer}x{m.n_embd}|{m.block_size}|{t.batch_size}x{t.grad_accum}|"
               f"{t.optimizer}|{t.device}|{t.threads or torch.get_num_threads()}")
        if key not in cache:
            cache[key] = probe_tokens_per_s(r, vocab_size)
        evals = (r.iters // max(1, t.eval_every) + 1) * t.eval_batches * 2 * t.batch_size * m.block_size
        out.append((r.tokens + evals / 3) / cache[key])  # an eval token costs about a third of a training token
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps(cache, indent=1))
    return out
