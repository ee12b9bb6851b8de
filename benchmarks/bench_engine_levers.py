"""Where the CPU engine's step time goes: one lever at a time, measured side by side in one process.

Issue 13 (CPU engine >= 1.5x the reference trainer): the shakespeare-char gpt2 model (4 x 4 x 128,
context 64, batch 12, vocabulary 65) is trained for ``--steps`` steps with scalelab's own
``train_step`` under each variant, in rounds that alternate the variants (so that load on a shared
machine hits them alike); the p10, median and mean ms per step of each are printed. A variant is
levers joined by '+' (e.g. ``fused+compile``):

- ``base``: the engine as it is configured (eager, the optimizer of ``build_optimizers``);
- ``foreach`` / ``fused`` / ``forloop``: AdamW with foreach / fused / per-tensor kernels on the CPU;
- ``plain_ce``: the step through the plain cross-entropy of ``GPT.forward`` (logits built);
- ``compile``: ``torch.compile`` of the model (inductor, C++ code); its compile time is printed apart;
- ``bf16``: CPU autocast to bfloat16 (not the reference's precision: a lever recorded, not a comparison).

    python benchmarks/bench_engine_levers.py [--steps 15] [--rounds 6] [--threads 1 --clock cpu]
        [--variants base,fused,compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch

from scalelab import presets
from scalelab.model.gpt import GPT
from scalelab.model.sizes import resolve
from scalelab.train import distributed as dd
from scalelab.train.optim import build_optimizers
from scalelab.train.step import train_step

VOCAB = 65
CLOCK = time.perf_counter


class _Windows:
    """Random windows of a random token stream: the sampler's cost without the corpus."""

    def __init__(self, T: int, B: int, seed: int = 0):
        self.tokens = np.random.default_rng(seed).integers(0, VOCAB, 1_000_000).astype(np.uint16)
        from scalelab.data.batches import RandomWindows

        self.inner = RandomWindows(self.tokens, T, B, seed)

    def next(self, device):
        return self.inner.next(device)


class _PlainLoss(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, y, return_logits=False):
        return self.model(x, y)


def build(variant: str):
    """A model, its optimizers and step inputs for `variant`: levers joined by '+', e.g. 'fused+compile'."""
    levers = set(variant.split("+")) - {"base"}
    cfg = presets.load_preset("shakespeare-char-gpt2")
    tc = cfg.train
    torch.manual_seed(0)
    model = GPT(resolve(cfg.model, VOCAB))
    device = torch.device("cpu")
    if levers & {"foreach", "fused", "forloop"}:
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": tc.weight_decay, "base_lr": tc.lr},
                  {"params": rest, "weight_decay": 0.0, "base_lr": tc.lr}]  # fmt: skip
        kw = {"fused": True} if "fused" in levers else {"foreach": "foreach" in levers}
        opts = [torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas, **kw)]
    else:
        opts = build_optimizers(model, tc, device)
    fwd = _PlainLoss(model) if "plain_ce" in levers else model
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in levers else nullcontext()
    sampler = _Windows(cfg.model.block_size, tc.batch_size)
    compile_s = None
    if "compile" in levers:
        fwd = torch.compile(fwd)
        t0 = time.perf_counter()
        for _ in range(2):  # the first steps compile forward and backward
            train_step(model, fwd, opts, sampler, tc, 1.0, ctx, dd.Dist(), device)
        compile_s = time.perf_counter() - t0
    return model, fwd, opts, sampler, tc, ctx, device, compile_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default="base,foreach,fused,plain_ce,compile,bf16")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: process CPU time, which load disturbs far less (use with --threads 1)")  # fmt: skip
    a = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    if a.threads:
        torch.set_num_threads(a.threads)
    variants = a.variants.split(",")
    built = {v: build(v) for v in variants}
    per_step: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(a.rounds):
        for v in variants:
            model, fwd, opts, sampler, tc, ctx, device, _ = built[v]
            for _ in range(3):
                train_step(model, fwd, opts, sampler, tc, 1.0, ctx, dd.Dist(), device)
            for _ in range(a.steps):
                t0 = CLOCK()
                loss, _ = train_step(model, fwd, opts, sampler, tc, 1.0, ctx, dd.Dist(), device)
                loss.item()
                per_step[v].append((CLOCK() - t0) * 1000)
    out = {v: {"p10_ms": float(np.percentile(ms, 10)), "median_ms": statistics.median(ms),
               "mean_ms": statistics.mean(ms),
               "tokens_per_s_median": 768 / statistics.median(ms) * 1000, "compile_s": built[v][-1]}
           for v, ms in per_step.items()}  # fmt: skip
    head = {"threads": torch.get_num_threads(), "clock": a.clock, "steps": a.steps, "rounds": a.rounds}
    print(json.dumps(head | out, indent=1))


if __name__ == "__main__":
    main()
