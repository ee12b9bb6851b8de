"""Context distillation: the top-k KL objective, the teacher cache, and a toy distillation run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scalelab.align.distill import DistillSpec, topk_kl
from scalelab.align.distill_cache import TeacherCache, build_cache, effective_k
from scalelab.data.tokenizers import ByteTokenizer
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig
from scalelab.train.checkpoint import save_checkpoint

PROMPT = "ABABABAB ABABABAB\n"


def test_topk_kl_with_remainder_against_hand_computed_value():
    p = [0.5, 0.3, 0.15, 0.05]  # teacher; top-2 = tokens 0, 1; remainder 0.2
    student = torch.zeros(1, 1, 4)  # uniform: q = 0.25 each, remainder 0.5
    ids = torch.tensor([[[0, 1]]])
    logp = torch.log(torch.tensor([[[0.5, 0.3]]]))
    rest = torch.log(torch.tensor([[0.2]]))
    want = 0.5 * math.log(0.5 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.2 * math.log(0.2 / 0.5)
    assert topk_kl(student, ids, logp, rest).item() == pytest.approx(want, rel=1e-6)
    # k = the vocabulary: the exact KL, no remainder bucket
    full_ids = torch.tensor([[[0, 1, 2, 3]]])
    full = topk_kl(student, full_ids, torch.log(torch.tensor([[p]])), torch.full((1, 1), -80.0), full=True)
    assert full.item() == pytest.approx(sum(pi * math.log(pi / 0.25) for pi in p), rel=1e-6)


def test_topk_larger_than_the_vocabulary_falls_back_to_the_full_distribution():
    k, note = effective_k(500, 257)
    assert k == 257 and "full distribution" in note
    assert effective_k(32, 257) == (32, None)
    with pytest.raises(UserError):
        effective_k(0, 257)


def _toy(folder: Path, block: int = 48) -> Path:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=block, vocab_size=257))
    save_checkpoint(folder / "ckpt", 0, model, ByteTokenizer(), {"state": {}})
    return folder


def test_cache_is_reused_and_written_atomically(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=257))
    windows = np.random.default_rng(0).integers(0, 256, size=(5, 8))
    args = (model, ByteTokenizer(), [65, 66], windows, 4, tmp_path)
    cache, stats = build_cache(*args, key="k1", about={}, batch_size=2)
    assert not stats["reused"] and cache.top_ids.shape == (5, 8, 4) and np.array_equal(cache.windows, windows)
    assert np.all(cache.rest_logp[:] < 0) and np.allclose(np.exp(cache.top_logp).sum(-1) + np.exp(cache.rest_logp), 1,
                                                          atol=1e-4)  # fmt: skip
    mtime = (tmp_path / "k1" / "top_logp.f32").stat().st_mtime_ns
    again, stats = build_cache(*args, key="k1", about={}, batch_size=2)
    assert stats["reused"] and (tmp_path / "k1" / "top_logp.f32").stat().st_mtime_ns == mtime

    class Broken(torch.nn.Module):  # fails after the first batch: nothing half-written may stay
        cfg = model.cfg
        calls = 0

        def forward(self, x):
            Broken.calls += 1
            if Broken.calls > 1:
                raise RuntimeError("boom")
            return model(x)

    with pytest.raises(RuntimeError):
        build_cache(Broken(), ByteTokenizer(), [65], windows, 4, tmp_path, key="k2", about={}, batch_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1"]
    (tmp_path / "k1" / "rest_logp.f32").write_bytes(b"x")  # damaged: a clear error, not garbage
    with pytest.raises(UserError, match="damaged"):
        TeacherCache.open(tmp_path / "k1")


@pytest.mark.slow
def test_distillation_drives_the_kl_near_zero_and_resumes(tmp_path, one_torch_thread):
    from scalelab.align.distill_run import distill_context
    from scalelab.align.pm import load_pm
    from scalelab.train.checkpoint import load_for_inference

    toy = _toy(tmp_path / "toy")
    (tmp_path / "p.txt").write_text(PROMPT)
    spec = DistillSpec(model=str(toy), prompt=str(tmp_path / "p.txt"), n_windows=32, n_heldout=8, window=16,
                       top_k=8, steps=40, batch_size=8, lr=3e-3, ckpt_every=20, max_documents=20, device="cpu")
    first = distill_context(spec, tmp_path / "w", stop_after=20)
    assert first["status"] == "interrupted"
    s = distill_context(spec, tmp_path / "w")  # the same command goes on from the checkpoint
    assert s["status"] == "completed" and s["steps"] == 40 and s["tokens"] == 40 * 8 * 16
    assert s["kl_after"] < 0.1 * s["kl_before"] and s["kl_after"] < 1e-3
    assert s["prompt_tokens"] == len(PROMPT) and s["room"] == 48 - len(PROMPT)
    assert math.isfinite(s["alignment_tax"])
    assert distill_context(spec, tmp_path / "w")["reused"]
    model, tok, info = load_for_inference(s["run_id"], tmp_path / "w")  # a normal run: loads, is a PM backbone
    assert info["step"] == 40 and load_pm(s["run_id"], tmp_path / "w").scoring == "logprob"
    manifest = json.loads((Path(s["cache"]["train"]["folder"]) / "manifest.json").read_text())
    assert manifest["k"] == 8 and manifest["tokenizer"] == {"kind": "byte"}


def test_prompt_longer_than_the_context_is_refused(tmp_path):
    from scalelab.align.distill_run import distill_context
    from scalelab.sweep.worker import run_worker

    toy = _toy(tmp_path / "toy", block=16)
    (tmp_path / "p.txt").write_text("x" * 40)
    spec = DistillSpec(model=str(toy), prompt=str(tmp_path / "p.txt"), device="cpu", max_documents=5)
    with pytest.raises(UserError, match="longer context"):
        distill_context(spec, tmp_path / "w")
    from scalelab.store import RunStore

    assert RunStore.in_workdir(tmp_path / "w").find_runs() == []  # refused before any run was recorded
    out = run_worker("distill", spec.to_dict(), str(tmp_path / "w"), "r1", 1)  # the sweep's kind: never raises
    assert out["status"] == "failed" and "context" in out["error"]


def test_cli_refuses_an_empty_prompt(tmp_path, capsys):
    from scalelab.cli.app import main

    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(SystemExit) as e:
        main(["distill", "context", "--model", "x", "--prompt", str(tmp_path / "e.txt"), "--workdir", str(tmp_path)])
    assert e.value.code == 2 and "empty" in capsys.readouterr().err


def test_evaluations_report_prompted_and_unprompted_side_by_side(tmp_path, capsys):
    from scalelab.cli.app import main

    toy = str(_toy(tmp_path / "toy"))
    (tmp_path / "p.txt").write_text(PROMPT)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"query": "Q?", "responses": ["yes", "no"], "correct": 0}) + "\n")
    common = ["--prompt", str(tmp_path / "p.txt"), "--workdir", str(tmp_path), "--json"]
    main(["eval", "loss", "--model", toy, "--data", "stdlib", "--max-documents", "5", "--windows", "4", *common])
    loss = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert loss["window"] == 48 - len(PROMPT) and loss["prompt"]["prompt_tokens"] == len(PROMPT)
    assert math.isfinite(loss["loss"]) and loss["delta"] == pytest.approx(loss["loss_prompted"] - loss["loss"])
    main(["eval", "choice", toy, "--data", str(items), *common])
    choice = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"accuracy", "accuracy_prompted", "n_truncated_prompted"} <= set(choice)
    main(["pm", "score", toy, "--data", "arith:16", *common])
    score = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"accuracy", "accuracy_prompted", "ece_prompted"} <= set(score) and score["prompt"]["context"] == 46
    main(["sample", toy, "-p", "ab", "-n", "4", "--prompt-file", str(tmp_path / "p.txt"), "--workdir", str(tmp_path),
          "--json"])  # fmt: skip
    sample = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"sample", "sample_prompted"} <= set(sample) and sample["prompt"]["room"] == 48 - len(PROMPT)
