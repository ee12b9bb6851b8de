"""RL throughput: scalelab's RLOO vs TRL's RLOOTrainer on the same tiny model and reward, CPU; rollout tokens/s.

Both sides start from the same weights: a GPT-2-shaped scalelab GPT (byte tokenizer, 4 layers, width
128, context 128) exported to a Hugging Face folder with `export_hf` (logits checked equal), and
optimise the same text reward (the share of ASCII letters in the completion) on the same prompts
(function headers of the embedded corpus) with the same recipe: RLOO with k = 4 samples per prompt,
16 completions per step, up to 32 new tokens at temperature 1, one update per batch, KL coefficient
0.001 against the frozen initial model, AdamW at the same learning rate, the same torch threads.
TRL runs in its own virtual environment as a subprocess (never a scalelab dependency):

    python benchmarks/bench_rl.py [--trl-python /work/trl-venv/bin/python] [--steps 48] [--threads 1]
                                  [--baseline /path/to/another/scalelab/checkout]

samples/s = completions per second of training steps (rollout + reward + reference log-probs +
update; model loading and evaluation excluded on every side). On a shared machine the load changes
from one second to the next, so the sides take turns step by step: each runs in its own process and
waits for this script's go before every step; a scalelab step is one `RLTrainer.step()`, a TRL step
runs from `TrainerCallback.on_step_begin` (where it waits) to `on_step_end`: generation, reward,
reference log-probs, update and optimizer step (TRL's work between steps, logging and data loading,
is not counted, which favours TRL). Every side thus sees the same load; a ratio is that of summed
step times. CPU seconds (`time.process_time` of the same steps) are reported next to them.
`--baseline` adds a third side, the scalelab of another checkout (e.g. main before a change), so that
a before/after comparison shares the same minutes of load. Rollout tokens/s: `sample_responses` on 16
distinct prompts x 64 new tokens, with and without the KV cache, and on 4 prompts x 4 samples (RLOO's
layout, where each prompt is prefilled once) with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

K, BATCH, NEW_TOKENS, LAMBDA_KL = 4, 16, 32, 0.001
ROLLOUT_ROUNDS = 3  # rollout tokens/s: the median of this many measurements, the sides in turn


def letters(prompts: list[str], completions: list[str], **_) -> list[float]:
    """The shared reward: share of ASCII letters in the completion."""
    return [sum(c.isascii() and c.isalpha() for c in r) / max(1, len(r)) for r in completions]


def trl_worker(model_dir: str, prompts_file: str, steps: int, lr: float, seed: int) -> dict:
    """Runs inside the TRL venv: RLOOTrainer for `steps` steps, each started by a line on stdin.

    Each step's wall and CPU seconds go to stdout as a line `@@{json}`; at the end, the last reward.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    class Paced(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sys.stdin.readline()  # the driver's go: its own step has just finished
            self.t0 = (time.perf_counter(), time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            wall, cpu = time.perf_counter() - self.t0[0], time.process_time() - self.t0[1]
            print("@@" + json.dumps({"wall": wall, "cpu": cpu}), flush=True)

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompts = [json.loads(line)["prompt"] for line in Path(prompts_file).read_text().splitlines()]
    with tempfile.TemporaryDirectory() as out:
        args = RLOOConfig(output_dir=out, per_device_train_batch_size=BATCH, num_generations=K,
                          max_completion_length=NEW_TOKENS, temperature=1.0, beta=LAMBDA_KL, num_iterations=1,
                          learning_rate=lr, max_steps=steps, seed=seed, report_to=[], save_strategy="no",
                          logging_steps=steps, use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
                          bf16=False)  # fmt: skip
        trainer = RLOOTrainer(model=model, reward_funcs=letters, args=args,
                              train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                              processing_class=tok, callbacks=[Paced()])  # fmt: skip
        trainer.train()  # its train_runtime would count the waits for the driver: not used
    history = [h for h in trainer.state.log_history if "reward" in h]
    return {"reward_last": history[-1]["reward"] if history else None}


class Paced:
    """One side in its own process (`python`, `pythonpath` first on sys.path, run in the folder `args[0]`).

    One step per `step()` call.
    """

    def __init__(self, python: str, worker: str, args: tuple, threads: int, pythonpath: str | None = None):
        code = (f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); from bench_rl import "
                f"{worker}; print('@@' + json.dumps({worker}(*{args!r})), flush=True)")  # fmt: skip
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.err = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty side never blocks on it
        self.proc = subprocess.Popen([python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env, cwd=args[0])  # fmt: skip

    def _result(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@"):
                return json.loads(line[2:])
        self.proc.wait()
        self.err.seek(0)
        raise SystemExit(f"a benchmark side failed:\n{self.err.read()[-3000:]}")

    def step(self) -> dict:
        """One step (the side waits for this go): {"wall", "cpu"} seconds."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self._result()

    def finish(self) -> dict:
        out = self._result()
        self.proc.wait()
        return out


def build(folder: Path, n_prompts: int) -> tuple[Path, Path, int]:
    """The scalelab checkpoint, its HF export and a JSONL prompt file."""
    import torch

    from scalelab.align.rl.prompts import builtin_prompts
    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.interop.hf_export import export_hf
    from scalelab.model.gpt import GPT, GPTConfig
    from scalelab.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    gpt = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=257))
    save_checkpoint(folder / "policy" / "ckpt", 0, gpt, ByteTokenizer(), {})
    export_hf(folder / "policy", folder / "hf")
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in builtin_prompts(n_prompts)))
    return folder / "policy", prompts, sum(p.numel() for p in gpt.parameters())


def scalelab_trainer(folder: Path, prompts: Path, a):
    """scalelab's RLTrainer on the same model, prompts, reward and recipe."""
    import torch

    from scalelab.align.rl.config import RLRunSpec
    from scalelab.align.rl.run import _setup
    from scalelab.align.rl.trainer import RLTrainer

    torch.set_num_threads(a.threads)
    spec = RLRunSpec(policy=str(folder / "policy"), reward="gold", gold="letters", prompts=str(prompts),
                     algo="rloo", rloo_k=K, batch_size=BATCH, max_new_tokens=NEW_TOKENS, temperature=1.0,
                     lambda_kl=LAMBDA_KL, epochs=1, minibatches=1, lr=a.lr, steps=a.steps, seed=a.seed,
                     device="cpu", eval_prompts=1)  # fmt: skip
    setup = _setup(spec, folder, {"letters": letters})
    return RLTrainer(spec, setup["models"], setup["prompts"], setup["ids"], torch.device("cpu"), a.lr)


def timed(fn) -> tuple[object, dict]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def scalelab_worker(folder: str, prompts: str, steps: int, lr: float, seed: int, threads: int) -> dict:
    """Runs in its own process: `steps` RLTrainer steps, each started by a line on stdin, timed to stdout."""
    import scalelab

    a = argparse.Namespace(steps=steps, lr=lr, seed=seed, threads=threads)
    trainer = scalelab_trainer(Path(folder), Path(prompts), a)
    out = {}
    for _ in range(steps):
        sys.stdin.readline()
        out, t = timed(trainer.step)
        print("@@" + json.dumps(t), flush=True)
    for _ in range(ROLLOUT_ROUNDS):  # then, on more goes, the rollout alone
        sys.stdin.readline()
        print("@@" + json.dumps(rollout_speed(Path(folder), a)), flush=True)
    return {"reward_last": out.get("reward"), "scalelab": str(Path(scalelab.__file__).parents[1])}


def side_by_side(folder: Path, prompts: Path, a) -> dict:
    """Every side in turn, one step each, `a.steps` times; summed times and samples/s of each side, and ratios."""
    args = (str(folder), str(prompts), a.steps, a.lr, a.seed, a.threads)
    here = str(Path(__file__).resolve().parents[1])
    sides = {"scalelab": Paced(sys.executable, "scalelab_worker", args, a.threads, here)}
    if a.baseline:
        sides["baseline"] = Paced(sys.executable, "scalelab_worker", args, a.threads, a.baseline)
    if not a.skip_trl:
        trl_args = (str(folder / "hf"), str(prompts), a.steps, a.lr, a.seed)
        sides["trl"] = Paced(a.trl_python, "trl_worker", trl_args, a.threads)
    times: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(a.steps):
        for name, side in sides.items():
            times[name].append(side.step())
    rounds = [{name: sides[name].step() for name in ("scalelab", "baseline") if name in sides}
              for _ in range(ROLLOUT_ROUNDS)]  # fmt: skip
    rollout = {name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
               for name in rounds[0]}  # fmt: skip
    res = {name: summarise(times[name]) | side.finish() for name, side in sides.items()}
    res["rollout_tokens_per_s"] = rollout
    n = a.steps // 2  # each half of the steps on its own: a check of the noise
    for name in [x for x in ("scalelab", "baseline") if x in res and "trl" in res]:
        res[f"ratio_{name}_vs_trl"] = res[name]["samples_per_s"] / res["trl"]["samples_per_s"]
        res[f"ratio_{name}_vs_trl_cpu"] = res["trl"]["cpu_s"] / res[name]["cpu_s"]
        res[f"ratio_{name}_vs_trl_halves"] = [sum(t["wall"] for t in times["trl"][h]) /
                                              sum(o["wall"] for o in times[name][h])
                                              for h in (slice(0, n), slice(n, None))]  # fmt: skip
    if "baseline" in res:
        res["ratio_scalelab_vs_baseline"] = res["scalelab"]["samples_per_s"] / res["baseline"]["samples_per_s"]
    return res


def summarise(steps: list[dict]) -> dict:
    wall, cpu = sum(s["wall"] for s in steps), sum(s["cpu"] for s in steps)
    return {"samples_per_s": len(steps) * BATCH / wall, "train_s": wall, "cpu_s": cpu,
            "step_s_median": statistics.median(s["wall"] for s in steps)}  # fmt: skip


def rollout_speed(folder: Path, a) -> dict:
    """Rollout tokens/s of `sample_responses`, 16 prompts x 64 new tokens, with and without the KV cache,
    and the tokens/s of one forward over the same sequences (what generation is measured against)."""
    import torch

    from scalelab.align.rl.prompts import builtin_prompts
    from scalelab.align.rl.rollout import sample_responses
    from scalelab.train.checkpoint import load_for_inference

    torch.set_num_threads(a.threads)
    model, tok, _ = load_for_inference(folder / "policy")
    ids = [[int(t) for t in tok.encode(p)] for p in builtin_prompts(16)]
    out = {}
    for name, rows, cache in (("with_cache", ids, True), ("without_cache", ids, False),
                              ("rloo_4x4_with_cache", [p for p in ids[:4] for _ in range(K)], True)):  # fmt: skip
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        ro = sample_responses(model, rows, max_new_tokens=64, eot_id=tok.eot_id, generator=g, use_cache=cache)
        out[name] = int(ro.response_mask.sum()) / (time.perf_counter() - t0)
        if name == "with_cache":  # issue 13: generation against one forward over the same sequences
            out["single_forward"] = forward_speed(model, ro.tokens)
    out["cache_speedup"] = out["with_cache"] / out["without_cache"]
    out["with_cache_over_single_forward"] = out["with_cache"] / out["single_forward"]
    return out


def forward_speed(model, tokens, repeats: int = 5) -> float:
    """Tokens/s of one no-grad forward over the finished rollout's sequences (B x T positions), median."""
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(tokens)
            times.append(time.perf_counter() - t0)
    return tokens.numel() / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trl-python", default="/work/trl-venv/bin/python")
    p.add_argument("--steps", type=int, default=48)
    p.add_argument("--baseline", help="Another scalelab checkout to run as a third side (before/after).")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-prompts", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-trl", action="store_true", help="Measure the scalelab side only.")
    a = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, prompts, params = build(folder, a.n_prompts)
        t0, load0 = time.time(), os.getloadavg()[0]
        res = side_by_side(folder, prompts, a)
    res = {"params": params, "steps": a.steps, "batch": BATCH, "k": K, "new_tokens": NEW_TOKENS, "threads": a.threads,
           **res, "wall_s": time.time() - t0, "date": time.strftime("%Y-%m-%d %H:%M"),
           "load": [load0, os.getloadavg()[0]]}  # fmt: skip
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
