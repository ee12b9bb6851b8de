"""Benchmark of `scalelab ood score` on 2,000 prompts with a ~10M parameter model on the CPU.

    python benchmarks/bench_ood.py [--n 1000] [--benchmark near] [--max-tokens 128] [--threads 0] [--bf16]

Writes a fresh ~10M parameter GPT (9 layers, width 288: the ladder's size 1e7, byte tokenizer) as
a checkpoint, writes the `--benchmark` texts (n in-distribution, n OOD) to .jsonl files, then
times `scalelab ood score --in IN --out OUT --n N` in a subprocess, end to end, wall and CPU time (imports, model load,
fit on n/2, activations of all 2n texts, bootstrap, outlier exposure). The weights are random:
the time does not depend on them, the AUROC does (it is not the point here). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="texts per side (2n prompts in all)")
    ap.add_argument("--benchmark", default="near")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--bf16", action="store_true", help="pass --bf16 (bfloat16 matmuls)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()

    import torch

    from scalelab.data.ood_sets import benchmark
    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.model.gpt import GPT, GPTConfig
    from scalelab.train.checkpoint import save_checkpoint

    work = Path(tempfile.mkdtemp(prefix="bench-ood-"))
    torch.manual_seed(0)
    model = GPT(GPTConfig(recipe="gpt2", n_layer=9, n_head=9, n_embd=288, block_size=256, vocab_size=257))
    save_checkpoint(work / "runs" / "m10" / "ckpt", 0, model, ByteTokenizer(), {})
    t0 = time.perf_counter()
    ins, outs = benchmark(args.benchmark, args.n, seed=0)
    build_s = time.perf_counter() - t0
    tokens = [min(len(ByteTokenizer().encode(t)), args.max_tokens, 256) for t in ins + outs]
    for name, texts in (("in", ins), ("out", outs)):
        with open(work / f"{name}.jsonl", "w") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    cmd = [sys.executable, "-m", "scalelab", "ood", "score", "--model", str(work / "runs" / "m10"),
           "--in", str(work / "in.jsonl"), "--out", str(work / "out.jsonl"), "--n", str(args.n),
           "--max-tokens", str(args.max_tokens), "--workdir", str(work), "--threads", str(args.threads),
           "--json"] + (["--bf16"] if args.bf16 else [])  # fmt: skip
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True)
    score_s, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    score_cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if r.returncode != 0:
        sys.exit(r.stderr)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    best = res["layers"][res["best_layer"]]
    print(json.dumps({
        "prompts": 2 * args.n, "benchmark": args.benchmark, "max_tokens": args.max_tokens, "tokens": sum(tokens),
        "params": model.param_counts(), "score_s": round(score_s, 2), "score_cpu_s": round(score_cpu_s, 2),
        "benchmark_build_s": round(build_s, 2), "best_layer": res["best_layer"], "best_auroc": best["auroc"],
        "bf16": args.bf16, "torch_threads": args.threads or torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
