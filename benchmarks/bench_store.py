"""How fast `scalelab runs` and `scalelab report` answer on a 20-run sweep's store.

The store is filled with 20 runs of a scaling sweep (5 sizes x 4 seeds, loss following a known
power law plus noise) and 200 logged steps of 4 metrics each, as a real sweep would leave it;
then each command is timed in a fresh process (Python start-up and imports included).

    python benchmarks/bench_store.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scalelab.store import RunStore


def fill(workdir: Path, n_runs: int = 20, steps: int = 200) -> None:
    store = RunStore.in_workdir(workdir)
    rng = np.random.default_rng(0)
    sizes = [1.2e4, 9.8e4, 3.3e5, 7.9e5, 1.5e6]
    for i in range(n_runs):
        n = sizes[i % len(sizes)]
        d = 20 * n
        final = 1.2 + 40 * n**-0.3 + rng.normal(0, 0.01)
        rid = store.create_run(f"bench-size={n:g}-seed={i // len(sizes)}", {"model": {"size": n}}, f"h{i}",
                               group="bench", params=int(n * 1.1), params_nonembed=int(n), flops_per_token=6 * n)
        rows = []
        for s in range(1, steps + 1):
            tok = int(d * s / steps)
            loss = final + 3.0 * (1 - s / steps) ** 2
            rows += [(s, tok, 6 * n * tok, "train", "loss", loss + rng.normal(0, 0.02)),
                     (s, tok, 6 * n * tok, "train", "lr", 1e-3),
                     (s, tok, 6 * n * tok, "train", "tokens_per_s", 1e4)]
            if s % 25 == 0:
                rows.append((s, tok, 6 * n * tok, "val", "loss", loss))
        store.log_metrics(rid, rows)
        store.update_run(rid, status="completed", tokens=int(d), flops=6 * n * d, final_val_loss=final,
                         final_train_loss=final - 0.02)
    store.close()


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    wd = Path(a.workdir or tempfile.mkdtemp(prefix="scalelab-bench-store-"))
    fill(wd)
    runs = [timed(["runs", "--workdir", str(wd)]) for _ in range(3)]
    report = [timed(["report", str(wd)]) for _ in range(3)]
    print(json.dumps({"runs_s": min(runs), "report_s": min(report), "runs_all": runs, "report_all": report,
                      "n_runs": 20}))


if __name__ == "__main__":
    main()
