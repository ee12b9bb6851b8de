"""Preference-model tokens/s against language-model tokens/s for the same backbone, context and batch.

Issue 13: a PM does the same forward/backward work per token as language-model training, so it
should run at nearly the same speed (goal: PM tokens/s >= 0.8x LM tokens/s). Both sides here use
one backbone shape, 4 layers x 128 wide, 4 heads, context 256, a BPE of 2,048 tokens trained on the
HH sample (`../shared/data/hh-rlhf/`), in two implementations:

- ``gpt``: a scalelab GPT (gpt2 recipe); LM side = the engine's loss call (`return_logits=False`);
- ``hf``: a Hugging Face GPT2LMHeadModel of that shape; LM side = ``model(input_ids, labels=...)``.

PM side: `train_pm` (ranked loss) on HH pairs that fit the context, ``--batch`` pairs per step, i.e.
2 x batch sequences of their own lengths; tokens/s counts real (unpadded) tokens. LM side: the same
number of sequences per step (2 x batch), each a full context window of the HH text, AdamW with
the same settings, clipping included; tokens/s counts every token. Scoring: `score_texts` on the
held-out pairs (real tokens/s) against a no-grad forward of full windows. The two sides alternate
(LM, PM, LM, PM) in one process; the ratio of each round is reported and their median is the figure.

    python benchmarks/bench_pm_vs_lm.py [--backbone gpt,hf] [--steps 12] [--batch 8] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pm_vs_trl import HH, build  # noqa: E402  (the same model folder and pair files)


def make_pm(kind: str, folder: Path, context: int):
    from scalelab.align.backbones import GPTBackbone
    from scalelab.align.pm import PreferenceModel, load_pm
    from scalelab.data.tokenizers import load_pretrained
    from scalelab.model.gpt import GPT, GPTConfig

    if kind == "hf":
        return load_pm(f"hf:{folder / 'model'}", objective="ranked", context=context)
    tokenizer = load_pretrained(str(folder / "model"))
    torch.manual_seed(0)
    cfg = GPTConfig(recipe="gpt2", n_layer=4, n_head=4, n_embd=128, block_size=context,
                    vocab_size=tokenizer.vocab_size)  # fmt: skip
    return PreferenceModel(GPTBackbone(GPT(cfg)), tokenizer, "ranked")


def lm_loss_fn(pm, kind: str):
    """(x, y) -> the language-model loss of the PM's own backbone, as its trainer computes it."""
    if kind == "hf":
        model = pm.backbone.model
        return lambda x, y: model(input_ids=x, labels=x).loss  # HF shifts the labels itself
    gpt = pm.backbone.gpt
    return lambda x, y: gpt(x, y, return_logits=False)[1]


def lm_rounds(pm, kind: str, stream: torch.Tensor, n_seq: int, context: int, steps: int, n_fwd: int) -> dict:
    """Train the backbone as a language model for `steps` steps of n_seq full windows, then `n_fwd`
    no-grad forwards of such batches; tokens/s of each."""
    from scalelab.align.pm_train import PMTrainConfig, _optimizer

    loss_fn = lm_loss_fn(pm, kind)
    opt = _optimizer(pm, PMTrainConfig())
    gen = torch.Generator().manual_seed(0)
    pm.eval()  # no dropout, as the PM trainer
    cuda = pm.device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()  # as train_pm

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(stream) - context - 1, (n_seq,), generator=gen)
        win = torch.stack([stream[s : s + context + 1] for s in starts.tolist()]).to(pm.device)
        return win[:, :-1], win[:, 1:]

    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = batch()
        with ctx:
            loss = loss_fn(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pm.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    forward = pm.backbone.model if kind == "hf" else pm.backbone.gpt
    xs = [batch()[0] for _ in range(n_fwd)]
    with torch.no_grad(), ctx:
        t1 = time.perf_counter()
        for x in xs:
            forward(x)
        if cuda:
            torch.cuda.synchronize()
        fwd = time.perf_counter() - t1
    return {"train_tokens_per_s": steps * n_seq * context / wall, "forward_tokens_per_s": n_fwd * n_seq * context / fwd}


def pm_round(pm, pairs, test_pairs, steps: int, batch: int) -> dict:
    from scalelab.align.pm_train import PMTrainConfig, train_pm

    stats = train_pm(pm, pairs, PMTrainConfig(objective="ranked", steps=steps, batch_size=batch, seed=0))
    texts = test_pairs.chosen + test_pairs.rejected
    t0 = time.perf_counter()
    pm.score_texts(texts, batch_size=2 * batch)
    score_s = time.perf_counter() - t0
    return {"train_tokens_per_s": stats["tokens_per_s"], "pairs_per_s": stats["pairs_per_s"],
            "score_tokens_per_s": sum(len(t.ids) for t in texts) / score_s}  # fmt: skip


def bench(kind: str, folder: Path, a) -> dict:
    from scalelab.align.pm import encode_pairs
    from scalelab.data.comparisons import load_comparisons

    pm = make_pm(kind, folder, a.context).to(a.device)
    train, _ = load_comparisons(str(folder / "train.jsonl.gz"))
    test, _ = load_comparisons(str(folder / "test.jsonl.gz"))
    pairs, test_pairs = encode_pairs(pm, train), encode_pairs(pm, test[: a.n_score])
    assert pairs.counts.n_truncated == 0, "pairs were built to fit the context"
    stream = torch.tensor([t for text in pairs.chosen for t in text.ids], dtype=torch.long)
    rounds = []
    for _ in range(a.rounds):
        lm = lm_rounds(pm, kind, stream, 2 * a.batch, a.context, a.steps, max(1, a.n_score // a.batch))
        p = pm_round(pm, pairs, test_pairs, a.steps, a.batch)
        rounds.append({"lm": lm, "pm": p, "train_ratio": p["train_tokens_per_s"] / lm["train_tokens_per_s"],
                       "score_ratio": p["score_tokens_per_s"] / lm["forward_tokens_per_s"]})  # fmt: skip
    mean_len = sum(len(t.ids) for t in pairs.chosen + pairs.rejected) / (2 * len(pairs))
    return {"backbone": kind, "params": sum(p.numel() for p in pm.backbone.parameters()),
            "mean_pm_sequence_tokens": mean_len, "rounds": rounds,
            "train_ratio_median": statistics.median(r["train_ratio"] for r in rounds),
            "score_ratio_median": statistics.median(r["score_ratio"] for r in rounds)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="gpt,hf", help="comma-separated: gpt, hf")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8, help="pairs per PM step (LM: 2 x batch windows)")
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--n-score", type=int, default=64, help="held-out pairs scored per round")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on both sides, as train_pm)")
    a = p.parse_args()
    if not HH.is_file():
        raise SystemExit(f"{HH} is missing")
    torch.set_num_threads(a.threads)
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": a.device, "threads": a.threads, "steps": a.steps,
           "batch": a.batch, "context": a.context, "results": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), 400, 200, a.context)
        for kind in a.backbone.split(","):
            out["results"].append(bench(kind, Path(tmp), a))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
