"""The engine against the reference minimal trainer (nanoGPT) on its own CPU config, side by side.

Issue 13: scalelab's CPU engine should train at >= 1.5x the reference trainer's tokens/s on the
reference's character-level tinyshakespeare config, with the same final val loss within 0.02 on a
200-batch estimate. The reference is never vendored: its own ``train.py`` (and ``model.py``,
``configurator.py``, ``config/train_shakespeare_char.py``) is exported from a git checkout of
github.com/karpathy/nanoGPT into a temporary folder and run there as a subprocess. Its data files
(``train.bin``, ``val.bin``, ``meta.pkl``: characters sorted, ids as uint16, first 90% train) are
written here from the same text, as its ``prepare.py`` would (that script downloads the text).

Both sides: 4 layers x 4 heads x 128, context 64, batch 12, no dropout, AdamW 1e-3 cosine to 1e-4,
warm-up 100, betas (0.9, 0.99), weight decay 0.1, clip 1.0, ``--iters`` steps (2000), CPU, one after the
other: the reference, scalelab as configured (eager), and scalelab with ``train.compile=true`` (torch.compile,
its compile time stated apart). Tokens/s: reference = 768 / the mean of its printed per-iteration times
(``log_interval=1``; the first iteration and the ones holding an evaluation are left out); scalelab = the
run's tokens / its training time (evaluation and checkpoints excluded; compiled: less the first step, which
compiles, reported as ``compile_s``). Final val loss: each side's own estimate on 200 random val batches
after the last step.

Threads: ``--threads N`` sets ``OMP_NUM_THREADS`` for every side (default: torch's, all cores). Clock:
``--clock cpu`` makes every side's timer read its process's CPU time (the reference's ``time.time``,
scalelab's ``time.perf_counter``, replaced before either starts; inductor compiles in-process then), which
load on a shared machine disturbs far less than wall time; use it with ``--threads 1``.

Sides: ``reference``, ``scalelab`` (the preset as shipped) or ``scalelab-baseline`` (``--baseline-code``), each
followed by levers joined with '+': ``compiled`` (torch.compile), ``bf16mm`` (float32 matmuls with bfloat16
inputs: ``train.matmul_precision='medium'``, or torch's same knob set before the reference's script runs),
``bf16`` (bfloat16 autocast: ``train.dtype='bfloat16'``; the reference's script autocasts on CUDA only, so its
CPU context, a ``nullcontext()``, is replaced by one before it runs), ``tanh`` / ``exact`` (scalelab's GELU:
GPT-2's tanh form or the exact one, which the reference and the preset use).

``--rounds N`` runs every side N times in turn (odd rounds in reverse order) and reports the median tokens/s,
each round's ratio and the ratio of the medians: this machine's speed drifts by tens of percent within minutes.

    python benchmarks/bench_engine_vs_nanogpt.py --nanogpt /path/to/nanoGPT(.git) [--iters 2000] [--rounds 3]
        [--threads 1 --clock cpu] [--sides reference,scalelab,scalelab+bf16mm,scalelab+compiled,reference+bf16mm]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()), ROOT / "shared")
TEXT = SHARED / "data" / "tinyshakespeare.txt"
FILES = ["train.py", "model.py", "configurator.py", "config/train_shakespeare_char.py"]


def export_reference(repo: Path, dest: Path) -> None:
    """The reference's own files from a checkout (work tree) or a bare git directory, into ``dest``."""
    git_dir = repo if (repo / "HEAD").is_file() and not (repo / ".git").exists() else repo / ".git"
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", "HEAD", *FILES], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def write_char_data(text: str, folder: Path) -> None:
    """train.bin / val.bin / meta.pkl in the reference's character-level format (90/10 split)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(len(ids) * 0.9)
    ids[:n].tofile(folder / "train.bin")
    ids[n:].tofile(folder / "val.bin")
    with open(folder / "meta.pkl", "wb") as fh:  # our own file, read by the reference's train.py
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, fh)


REFERENCE_AUTOCAST = """
import contextlib, sys, torch
class _AutocastInTrainPy(contextlib.nullcontext):
    def __new__(cls, *args, **kwargs):
        caller = sys._getframe(1)
        if cls is _AutocastInTrainPy and caller.f_code.co_filename.endswith("train.py"):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return super().__new__(cls)
contextlib.nullcontext = _AutocastInTrainPy
"""
"""The reference's train.py takes `nullcontext` from contextlib and uses `nullcontext()` as its CPU context: this
makes that one call (from a file named train.py) a bfloat16 autocast, and leaves every other use of contextlib's
nullcontext, torch's own included, as it was."""


def _clocked(argv: list[str], clock: str, patch: str, precision: str | None = None, bf16: bool = False) -> list[str]:
    """`python argv...`, or with `time.<patch>` reading the process's CPU time when clock == 'cpu', torch's
    float32 matmul precision set to `precision` first, and (`bf16`) the reference's CPU context, a
    `contextlib.nullcontext()`, made a bfloat16 autocast (for the reference, whose code is not ours to change)."""
    if clock == "wall" and precision is None and not bf16:
        return [sys.executable, *argv] if argv[0].endswith(".py") else [sys.executable, "-m", *argv]
    first = f"import torch; torch.set_float32_matmul_precision({precision!r}); " if precision else ""
    if bf16:
        first += f"exec({REFERENCE_AUTOCAST!r}); "
    timer = f"time.{patch} = time.process_time; " if clock == "cpu" else ""
    boot = (f"{first}import runpy, sys, time; {timer}sys.argv = {argv!r}; "
            "runpy.run_path(sys.argv[0], run_name='__main__') if sys.argv[0].endswith('.py') else "
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")  # fmt: skip
    return [sys.executable, "-c", boot]


def _env(threads: int | None, clock: str, code: Path | None = None) -> dict:
    env = dict(os.environ)
    if code is not None:  # another checkout's scalelab (a before/after of the engine in one invocation)
        env["PYTHONPATH"] = str(code)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if clock == "cpu":
        env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"  # compile in this process, so that its CPU time counts
    return env


def run_reference(folder: Path, iters: int, threads: int | None, clock: str, compiled: bool = False,
                  precision: str | None = None, bf16: bool = False) -> dict:  # fmt: skip
    args = ["train.py", "config/train_shakespeare_char.py", "--device=cpu", f"--compile={compiled}",
            "--eval_iters=200", f"--eval_interval={iters}", "--log_interval=1", "--block_size=64",
            "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", f"--max_iters={iters}",
            f"--lr_decay_iters={iters}", "--dropout=0.0", f"--out_dir={folder / 'out'}"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(_clocked(args, clock, "time", precision, bf16), cwd=folder, capture_output=True, text=True,
                          check=False, env=_env(threads, clock))  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"the reference trainer failed:\n{proc.stderr[-3000:]}")
    times = {int(m[1]): float(m[2]) for m in re.finditer(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", proc.stdout)}
    steady = [ms for it, ms in times.items() if 0 < it < iters]  # iteration 0 and `iters` hold an evaluation
    evals = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", proc.stdout)
    return {"tokens_per_s": 12 * 64 / (statistics.mean(steady) / 1000), "ms_per_iter_mean": statistics.mean(steady),
            "ms_per_iter_median": statistics.median(steady), "final_val_loss": float(evals[-1][2]),
            "final_train_loss": float(evals[-1][1]), "wall_s": wall}  # fmt: skip


def run_scalelab(data: Path, iters: int, threads: int | None, clock: str, compiled: bool,
                 code: Path | None = None, extra: tuple[str, ...] = ()) -> dict:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scalelab-vs-ref-") as work:
        args = ["scalelab", "train", "--preset", "shakespeare-char-gpt2", "--json", "--workdir", work,
                "--set", f"data.source='{data}'", "--set", f"train.iters={iters}", "--set", f"train.ckpt_every={iters}",
                "--set", "train.final_eval_batches=200", "--set", f"train.eval_every={iters}",
                "--set", f"train.compile={'true' if compiled else 'false'}"]  # fmt: skip
        if threads:
            args += ["--set", f"train.threads={threads}"]
        for override in extra:
            args += ["--set", override]
        t0 = time.perf_counter()  # cwd: a folder that holds no scalelab, so that PYTHONPATH decides which runs
        proc = subprocess.run(_clocked(args, clock, "perf_counter"), capture_output=True, text=True, check=False,
                              env=_env(threads, clock, code), cwd=work)  # fmt: skip
        wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"scalelab train failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res.get("compile_failed"):
        raise SystemExit(f"compilation fell back to eager: {res['compile_failed']}")
    compile_s = res.get("compile_s")
    tokens, train_s = res["tokens"], res["train_s"]
    if compile_s is not None:  # the first step compiles: timed apart, left out of the rate like the reference's
        tokens, train_s = tokens - tokens // res["iters"], train_s - compile_s
    return {"tokens_per_s": tokens / train_s, "compile_s": compile_s, "final_val_loss": res["final_val_loss"],
            "final_train_loss": res["final_train_loss"], "train_s": res["train_s"], "wall_s": wall}  # fmt: skip


LEVERS = {"compiled": None, "bf16mm": "train.matmul_precision='medium'", "bf16": "train.dtype='bfloat16'",
          "tanh": "model.mlp='gelu'", "exact": "model.mlp='gelu_exact'"}
"""A side's levers: torch.compile; bfloat16 matmul precision (the reference: torch's knob set before its script
runs); bfloat16 autocast (the reference's script autocasts on CUDA only: its CPU context is patched into one);
GPT-2's tanh-GELU or the exact GELU in scalelab's model."""
SCALELAB_ONLY = ("tanh", "exact")


def parse_side(side: str) -> tuple[str, list[str]]:
    """'scalelab+compiled+bf16mm' -> ('scalelab', ['compiled', 'bf16mm']); the old names 'scalelab-compiled' and
    'reference-compiled' are 'scalelab+compiled' and 'reference+compiled'."""
    base, *levers = side.replace("-compiled", "+compiled").split("+")
    if base not in ("reference", "scalelab", "scalelab-baseline"):
        raise SystemExit(f"unknown side {side!r}: reference, scalelab or scalelab-baseline, then +lever ...")
    bad = [lever for lever in levers if lever not in LEVERS or (base == "reference" and lever in SCALELAB_ONLY)]
    if bad:
        raise SystemExit(f"side {side!r}: unknown lever(s) {bad}; levers: {', '.join(LEVERS)} "
                         f"({'/'.join(SCALELAB_ONLY)}: scalelab only)")  # fmt: skip
    return base, levers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nanogpt", required=True, type=Path, help="a git checkout of karpathy/nanoGPT (or its .git)")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--data", type=Path, default=TEXT)
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for every side")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--sides", default="reference,scalelab,scalelab-compiled")
    p.add_argument("--rounds", type=int, default=1, help="run every side this many times, in turn (median)")
    p.add_argument("--baseline-code", type=Path, default=None,
                   help="a checkout whose scalelab the side 'scalelab-baseline' runs (eager), e.g. main")  # fmt: skip
    a = p.parse_args()
    if not a.data.is_file():
        raise SystemExit(f"{a.data} is missing")
    sides = a.sides.split(",")
    for side in sides:
        parse_side(side)  # refuse a bad side before anything runs
    out: dict = {"iters": a.iters, "threads": a.threads, "clock": a.clock, "rounds": a.rounds,
                 "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": os.getloadavg()}  # fmt: skip
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):  # odd rounds run the sides in reverse: drift hits every side alike
            for side in sides if r % 2 == 0 else sides[::-1]:
                res = run_side(side, a, Path(tmp) / f"{r}-{len(runs[side])}-{sides.index(side)}")
                res["load_after"] = os.getloadavg()
                runs[side].append(res)
                print(json.dumps({side: res, "round": r}), file=sys.stderr, flush=True)
    for side, results in runs.items():
        rates = [x["tokens_per_s"] for x in results]
        out[side] = {**results[0], "tokens_per_s": statistics.median(rates), "tokens_per_s_rounds": rates}
    if "reference" in runs:
        ref = out["reference"]["tokens_per_s_rounds"]
        for side in [x for x in sides if x != "reference"]:
            mine = out[side]["tokens_per_s_rounds"]
            out[f"ratio_{side}"] = out[side]["tokens_per_s"] / out["reference"]["tokens_per_s"]  # of the medians
            out[f"ratio_rounds_{side}"] = [m / f for m, f in zip(mine, ref)]  # round by round
            out[f"val_loss_gap_{side}"] = out[side]["final_val_loss"] - out["reference"]["final_val_loss"]
    print(json.dumps(out, indent=1))


def run_side(side: str, a: argparse.Namespace, folder: Path) -> dict:
    base, levers = parse_side(side)
    if base == "reference":
        folder.mkdir(parents=True)
        export_reference(a.nanogpt, folder)
        write_char_data(a.data.read_text(), folder / "data" / "shakespeare_char")
        precision = "medium" if "bf16mm" in levers else None
        return run_reference(folder, a.iters, a.threads, a.clock, "compiled" in levers, precision, "bf16" in levers)
    if base == "scalelab-baseline" and a.baseline_code is None:
        raise SystemExit("the side scalelab-baseline needs --baseline-code DIR")
    code = a.baseline_code.resolve() if base == "scalelab-baseline" else None
    extra = tuple(LEVERS[lever] for lever in levers if LEVERS[lever])
    return run_scalelab(a.data.resolve(), a.iters, a.threads, a.clock, "compiled" in levers, code, extra)


if __name__ == "__main__":
    main()
