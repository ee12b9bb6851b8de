"""Preference-model training speed and accuracy: TRL's RewardTrainer vs `scalelab pm train --base hf:DIR`.

Both sides train the same tiny GPT-2-shaped Hugging Face model (BPE trained on the HH sample, 4
layers, width 128, context 256: about 1.09M parameters) on the same HH-RLHF pairs (only pairs whose
chosen and rejected texts fit in the context, so that neither side truncates or drops any), with
the same batch, steps, learning rate and seed, on CPU, one after the other; then each scores the same
held-out pairs. TRL runs in its own virtual environment (it is never a scalelab dependency):

    python3 -m venv /work/trl-venv && /work/trl-venv/bin/pip install torch==2.13.0 trl
    python benchmarks/bench_pm_vs_trl.py [--trl-python /work/trl-venv/bin/python] [--steps 40] [--batch 8] [--rounds 1]

pairs/s: TRL from `train_runtime` of `Trainer.train()`; scalelab from its `pairs_per_s` (training
steps only). Accuracy: fraction of held-out pairs where the chosen reply gets the higher reward.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout; ../shared/data beside it (or beside a worktree's parent)
SHARED = next((p for p in (ROOT.parent / "shared", ROOT.parent.parent / "shared") if p.is_dir()), ROOT / "shared")
HH = SHARED / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"


def trl_worker(model_dir: str, train_file: str, test_file: str, steps: int, batch: int, lr: float, seed: int) -> dict:
    """Runs inside the TRL venv: train a reward model with RewardTrainer, then score the test pairs."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    def read(path):
        with gzip.open(path, "rt") as fh:
            return [json.loads(line) for line in fh]

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(output_dir=out, max_length=256, per_device_train_batch_size=batch, max_steps=steps,
                            learning_rate=lr, seed=seed, report_to=[], save_strategy="no", logging_steps=steps,
                            use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)  # fmt: skip
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(read(train_file)),
                                processing_class=tok)  # fmt: skip
        metrics = trainer.train().metrics
    model.eval()
    wins = 0.0
    pairs = read(test_file)
    with torch.no_grad():
        for p in pairs:
            r = [
                model(**tok(t + tok.eos_token, return_tensors="pt")).logits.item() for t in (p["chosen"], p["rejected"])
            ]
            wins += 1.0 if r[0] > r[1] else 0.5 if r[0] == r[1] else 0.0
    return {"pairs_per_s": steps * batch / metrics["train_runtime"], "train_s": metrics["train_runtime"],
            "accuracy": wins / len(pairs), "n_test": len(pairs), "n_train_rows": len(read(train_file))}  # fmt: skip


def build(folder: Path, n_train: int, n_test: int, context: int) -> tuple[Path, Path, int]:
    """The HF model folder and the train / test pair files (pairs that fit the context on both sides)."""
    import torch
    import transformers

    from scalelab.data.tokenizers import train_bpe
    from scalelab.interop.hf_tokenizer import save_tokenizer

    with gzip.open(HH, "rt") as fh:
        rows = [json.loads(line) for line in fh]
    tokenizer = train_bpe([r["chosen"] for r in rows] + [r["rejected"] for r in rows], 2048)
    fits = [r for r in rows if max(len(tokenizer.encode(r[k])) for k in ("chosen", "rejected")) < context - 8]
    if len(fits) < n_train + n_test:
        raise SystemExit(f"only {len(fits)} pairs fit {context} tokens; lower --n-train/--n-test")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=context, n_embd=128, n_layer=4,
                                  n_head=4, bos_token_id=tokenizer.eot_id, eos_token_id=tokenizer.eot_id,
                                  pad_token_id=tokenizer.eot_id)  # fmt: skip
    model = transformers.GPT2LMHeadModel(cfg)
    model.save_pretrained(folder / "model")
    save_tokenizer(tokenizer, folder / "model", context)
    files = []
    for name, part in (("train", fits[:n_train]), ("test", fits[n_train : n_train + n_test])):
        path = folder / f"{name}.jsonl.gz"
        with gzip.open(path, "wt") as fh:
            fh.writelines(json.dumps({"chosen": r["chosen"], "rejected": r["rejected"]}) + "\n" for r in part)
        files.append(path)
    return files[0], files[1], sum(p.numel() for p in model.parameters())


def run_scalelab(folder: Path, train: Path, test: Path, a) -> dict:
    cmd = [sys.executable, "-m", "scalelab", "pm", "train", "--data", str(train), "--test", str(test),
           "--base", f"hf:{folder / 'model'}", "--steps", str(a.steps), "--batch-size", str(a.batch),
           "--lr", str(a.lr), "--seed", str(a.seed), "--device", "cpu", "--threads", str(a.threads),
           "--context", str(a.context), "--workdir", str(folder / "work"), "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"scalelab pm train failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_trl(folder: Path, train: Path, test: Path, a) -> dict:
    from trl_side import run_in_venv

    args = (str(folder / "model"), str(train), str(test), a.steps, a.batch, a.lr, a.seed)
    return run_in_venv(a.trl_python, "bench_pm_vs_trl", "trl_worker", args, a.threads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trl-python", default="/work/trl-venv/bin/python")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1, help="TRL then scalelab, this many times; the median ratio")
    a = p.parse_args()
    if not HH.is_file():
        raise SystemExit(f"{HH} is missing")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train, test, params = build(folder, a.n_train, a.n_test, a.context)
        t0 = time.time()
        rounds = []
        for _ in range(a.rounds):  # alternate the two sides, so that a change of load hits both
            trl = run_trl(folder, train, test, a)
            ours = run_scalelab(folder, train, test, a)
            rounds.append({"trl": trl, "ratio_pairs_per_s": ours["pairs_per_s"] / trl["pairs_per_s"],
                           "scalelab": {k: ours.get(k) for k in ("pairs_per_s", "accuracy", "accuracy_ci", "n_test",
                                                                 "n_truncated", "n_skipped", "n_train")}})  # fmt: skip
    res = {"params": params, "steps": a.steps, "batch": a.batch, "context": a.context, "threads": a.threads,
           "rounds": rounds, "ratio_pairs_per_s_median": statistics.median(r["ratio_pairs_per_s"] for r in rounds),
           "wall_s": time.time() - t0, "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
