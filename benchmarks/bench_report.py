"""How fast `scalelab report` and `scalelab runs` answer on a 20-run sweep store, in each state a report can be in.

The store is `bench_store.fill`'s (20 runs, 5 sizes x 4 seeds, 200 logged steps of 4 metrics each). Each command
runs in a fresh process (Python start-up and imports included), `--repeats` times; wall and CPU (user + sys of
the child) are printed, with the minimum, as JSON. States of `scalelab report`:

- cold: no report and no fits kept (a store filled by hand, or one from before fits were kept): fits + figures;
- changed: the report is out of date (a train-loss metric was logged) but the numbers the fits read are not:
  the kept fits are reused, the figures drawn again;
- unchanged: the report is kept as it is.

    python benchmarks/bench_report.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_store import fill

from scalelab.store import RunStore


def timed(args: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of `python -m scalelab ARGS` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scalelab-bench-report-"))
    base = root / "base"
    fill(base)
    out: dict[str, list] = {"runs": [], "report_cold": [], "report_changed": [], "report_unchanged": []}
    for i in range(a.repeats):
        out["runs"].append(timed(["runs", "--workdir", str(base)]))
        wd = root / f"w{i}"
        shutil.copytree(base, wd)
        out["report_cold"].append(timed(["report", str(wd)]))
        out["report_unchanged"].append(timed(["report", str(wd)]))
        store = RunStore.in_workdir(wd)
        rid = store.list_runs(["id"])[0]["id"]
        store.log_metrics(rid, [(999, 1, 1.0, "train", "loss", 1.0)])  # the report is out of date, the fits are not
        store.close()
        out["report_changed"].append(timed(["report", str(wd)]))
    summary = {k: {"wall_min": min(w for w, _ in v), "cpu_min": min(c for _, c in v),
                   "wall": [round(w, 3) for w, _ in v], "cpu": [round(c, 3) for _, c in v]}
               for k, v in out.items()}  # fmt: skip
    print(json.dumps(summary | {"n_runs": 20}))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
