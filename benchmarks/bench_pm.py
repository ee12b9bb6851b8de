"""Preference-model training throughput, in comparison pairs per second.

    python benchmarks/bench_pm.py [--size s] [--context 256] [--batch-size 16] [--steps 20]
                                  [--threads 1,2] [--objective ranked] [--device cpu]

A fresh ladder model (``--size s`` is about 0.85M parameters with the byte tokenizer) trains a PM on
real pairs from the Python code-validity set (stdlib functions that fit the context, each preferred
to a minimally broken copy; 2 sequences per pair, read at an appended end token). One step is
forward + backward + AdamW on ``--batch-size`` pairs in length-grouped batches, exactly as
`scalelab.align.pm_train.train_pm` runs them. Two warm-up steps are not timed; the timed steps'
pairs, tokens (padding excluded) and wall time give pairs/s and tokens/s. Evaluation throughput
(no gradient) is timed on the same pairs. Prints one JSON line per thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import time

import torch

from scalelab.align.backbones import fresh_gpt_backbone
from scalelab.align.pm import PreferenceModel, encode_pairs
from scalelab.align.pm_data import build_automatic
from scalelab.align.pm_train import PMTrainConfig, _optimizer, length_grouped_batches, step_loss


def run(args: argparse.Namespace, threads: int) -> dict:
    torch.set_num_threads(threads)
    device = torch.device(args.device)
    backbone, tokenizer = fresh_gpt_backbone(args.size, args.context, seed=0)
    pm = PreferenceModel(backbone, tokenizer, "imitation" if args.objective == "imitation" else "ranked")
    fits = lambda c: not any(pm.encode(c.prompt, r).truncated for r in (c.chosen, c.rejected))  # noqa: E731
    n_pairs = args.batch_size * (args.steps + 2)
    data = build_automatic("code:stdlib", seed=0, max_pairs=n_pairs, max_documents=600, fits=fits)
    pairs = encode_pairs(pm, data.comparisons)
    pm.to(device).train()
    cfg = PMTrainConfig(objective=args.objective, batch_size=args.batch_size, lr=1e-4)
    opt = _optimizer(pm, cfg)
    lengths = [len(a.ids) + len(b.ids) for a, b in zip(pairs.chosen, pairs.rejected)]
    batches = length_grouped_batches(lengths, args.batch_size, random.Random(0))
    done, tokens, t0 = 0, 0, 0.0
    for step in range(args.steps + 2):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        batch = next(batches)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
        with ctx:  # bf16 on the GPU, as train_pm runs it
            loss, n_tokens = step_loss(pm, pairs, batch, args.objective)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= 2:
            done, tokens = done + len(batch), tokens + n_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    pm.score_texts(pairs.chosen + pairs.rejected, batch_size=64)
    eval_s = time.perf_counter() - t1
    return {
        "size": args.size, "params": pm.param_counts()["params"], "context": args.context,
        "objective": args.objective, "batch_size": args.batch_size, "threads": threads, "device": str(device),
        "timed_steps": args.steps, "pairs_per_s": done / train_s, "tokens_per_s": tokens / train_s,
        "mean_tokens_per_pair": tokens / max(done, 1), "eval_pairs_per_s": len(pairs) / eval_s,
        "train_s": train_s, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "date": datetime.date.today().isoformat(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="s")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", default="1,2", help="Comma-separated torch thread counts to time.")
    parser.add_argument("--objective", default="ranked", choices=("ranked", "binary", "imitation"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for threads in (int(t) for t in args.threads.split(",")):
        print(json.dumps(run(args, threads)), flush=True)


if __name__ == "__main__":
    main()
