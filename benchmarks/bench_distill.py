"""Context distillation throughput against plain training of the same model, side by side.

    python benchmarks/bench_distill.py [--size s] [--context 640] [--window 128] [--top-k 32]
                                       [--batch-size 16] [--steps 20] [--threads 1] [--device cpu]

A fresh ladder model with the byte tokenizer and the shipped ``assistant`` prompt:

1. teacher cache: the prompted model's top-k log-probs (+ remainder) on ``n = batch * (steps + 2)``
   windows of ``--window`` text tokens from the embedded corpus, written once as memmaps
   (`scalelab.align.distill_cache.build_cache`): text tokens per second (the prompt's tokens are
   computed too but not counted);
2. distillation: `distill_step` (forward without the prompt, top-k KL, backward, AdamW) on batches
   read from that cache: student tokens per second;
3. plain training: the same model, batch and windows, next-token cross-entropy, same optimizer:
   tokens per second.

Two warm-up steps are not timed. The ratio distillation / plain is the number to watch (goal >= 0.7).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scalelab.align.distill import CacheBatches, _student_inputs, distill_step
from scalelab.align.distill_cache import build_cache
from scalelab.config import ModelConfig
from scalelab.data.tokenizers import ByteTokenizer
from scalelab.model import GPT, resolve
from scalelab.prompting import fit_prompt, load_prompt, source_tokens, text_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="s")
    ap.add_argument("--context", type=int, default=640)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--top-k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tok = ByteTokenizer()
    torch.manual_seed(0)
    model = GPT(resolve(ModelConfig(size=args.size, recipe="modern", block_size=args.context), tok.vocab_size))
    model.to(device)
    prompt_ids, fit = fit_prompt(load_prompt("assistant"), tok, args.context, min_room=args.window)
    n = args.batch_size * (args.steps + 2)
    tokens = source_tokens("stdlib", tok, "train", max_documents=400, max_tokens=4 * n * args.window)
    windows = text_windows(tokens, args.window, n, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        cache, stats = build_cache(model, tok, prompt_ids, windows, args.top_k, Path(tmp), key="bench", about={},
                                   batch_size=args.batch_size, device=device)  # fmt: skip
        student = GPT(model.cfg).to(device)
        student.load_state_dict(model.state_dict())
        opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
        rows = CacheBatches(len(cache), args.batch_size, 0)
        distill_tps = _timed(lambda: distill_step(student, opt, cache, rows.next_rows(), tok.eot_id, 1.0, device),
                             args.steps, args.batch_size * args.window, device)  # fmt: skip
        plain = GPT(model.cfg).to(device)
        plain.load_state_dict(model.state_dict())
        popt = torch.optim.AdamW(plain.parameters(), lr=1e-4)
        prows = CacheBatches(len(cache), args.batch_size, 0)

        def plain_step() -> None:
            r = prows.next_rows()
            x = _student_inputs(cache.windows[r], tok.eot_id, device)
            y = torch.from_numpy(np.array(cache.windows[r], dtype=np.int64)).to(device)
            _, loss = plain(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
            popt.step()
            popt.zero_grad(set_to_none=True)

        plain_tps = _timed(plain_step, args.steps, args.batch_size * args.window, device)
        cache_bytes = sum(f.stat().st_size for f in cache.folder.iterdir())
    counts = model.param_counts()
    print(json.dumps({
        "size": args.size, "params": counts["params"], "context": args.context, "window": args.window,
        "prompt_tokens": fit.prompt_tokens, "top_k": args.top_k, "batch_size": args.batch_size, "steps": args.steps,
        "threads": args.threads, "device": str(device), "cache_tokens": stats["tokens"],
        "cache_tokens_per_s": round(stats["tokens_per_s"]), "cache_wall_s": round(stats["wall_s"], 2),
        "cache_bytes": cache_bytes,
        "distill_tokens_per_s": round(distill_tps), "plain_tokens_per_s": round(plain_tps),
        "ratio": round(distill_tps / plain_tps, 3), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "date": datetime.date.today().isoformat(),
    }))  # fmt: skip


def _timed(step, steps: int, tokens_per_step: int, device) -> float:
    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * tokens_per_step / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
