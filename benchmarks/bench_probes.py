"""Benchmark of the mechanism probes on a ~10M-parameter checkpoint (target: under 30 s on CPU).

    python benchmarks/bench_probes.py [--repeat 3] [--batch 8] [--no-cli]

Builds GPTConfig(recipe="modern", n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=257,
bias=False, mlp="relu2", tie_embeddings=False) with random weights, saves it as a checkpoint,
then times (1) loading it, (2) `run_probes` (prefix matching on 8 x (1 + 25 x 4) tokens, copying
on 8 x (1 + 63 x 4), ICL on 8 held-out windows of 257 byte tokens of real text: this repository's
source), median of --repeat runs, and (3) unless --no-cli, the whole command
`python -m scalelab probe induction CKPT --json --text FILE` in a fresh process, imports included.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from scalelab.data.tokenizers import ByteTokenizer
from scalelab.evals.probes import run_probes, settings_for, text_windows
from scalelab.model import GPT, GPTConfig
from scalelab.train.checkpoint import load_model_from_checkpoint, save_checkpoint

CONFIG = GPTConfig(recipe="modern", n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=257, bias=False,
                   mlp="relu2", tie_embeddings=False)  # fmt: skip
TEXT = Path(__file__).resolve().parents[1] / "scalelab" / "model" / "gpt.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-cli", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = GPT(CONFIG)
    tok = ByteTokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "ckpt", 0, model, tok, {})
        t0 = time.perf_counter()
        model, tok, _ = load_model_from_checkpoint(ckpt)
        load_s = time.perf_counter() - t0
        heldout = text_windows(TEXT.read_text(), tok, CONFIG.block_size, args.batch, seed=0)
        settings = settings_for(tok, batch_size=args.batch, seed=0)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = run_probes(model, settings, heldout)
            times.append(time.perf_counter() - t0)
        cli_s = None
        if not args.no_cli:
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "scalelab", "probe", "induction", str(ckpt), "--json", "--text", str(TEXT),
                   "--batch", str(args.batch)]  # fmt: skip
            r = subprocess.run(cmd, capture_output=True, text=True)
            cli_s = time.perf_counter() - t0
            if r.returncode != 0:
                raise SystemExit(r.stderr)
    print(json.dumps({
        "params": model.param_counts()["params"], "config": CONFIG.to_dict(), "batch": args.batch,
        "load_s": round(load_s, 3), "probes_s_median": round(statistics.median(times), 3),
        "probes_s_all": [round(t, 3) for t in times], "cli_total_s": None if cli_s is None else round(cli_s, 2),
        "induction_max": res["induction_max"], "copy_loss_first": res["copy_loss_first"],
        "icl_score": res["icl_score"], "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
