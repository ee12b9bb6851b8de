"""Online RLHF with human labels (Bai et al. 2022, section 4.5): feedback app -> PM -> RL, then round two.

The loop of the feedback issue and the RLHF issue, on tiny models: comparisons stored by the feedback
app (here written through its store, as the web app does) are exported in HH format, train a PM on
the policy's own backbone, and the policy is optimised against it; round two continues the RL policy
against a PM updated with new labels, keeping the original model as the KL reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scalelab.align.pm_run import PMRunSpec, run_pm
from scalelab.align.pm_train import PMTrainConfig
from scalelab.align.rl.config import RLRunSpec
from scalelab.align.rl.run import run_rl
from scalelab.data.tokenizers import ByteTokenizer
from scalelab.model.gpt import GPT, GPTConfig
from scalelab.train.checkpoint import save_checkpoint

pytest.importorskip("fastapi", reason="the feedback extra is not installed")

CFG = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=257)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _label(db, labeller, round_: int, n: int) -> None:
    """A simulated person: of two responses, prefers the one with more ASCII letters."""
    for i in range(n):
        cid, context, idx = db.conversation_context(None, labeller, "helpful")
        a, b = f"abc{i} def", f"{i}!?{round_}#"
        turn = db.add_turn(cid, idx, f"def f{i}(x):", context, (a, b), ("policy", "policy"), {"round": round_},
                           swapped=bool(i % 2))  # fmt: skip
        db.add_comparison(turn, labeller, "a", 3, "")


def _pm(workdir: Path, data: Path, base: Path, name: str) -> Path:
    train = PMTrainConfig(steps=12, batch_size=8, lr=3e-3, warmup_steps=2, seed=0)
    out = run_pm(PMRunSpec(data=str(data), format="hh", test_fraction=0.25, base=str(base), train=train, name=name,
                           device="cpu", threads=1), workdir)  # fmt: skip
    assert out["status"] == "completed" and out["n_train"] > 0, out
    return Path(out["pm_path"]).parent


def test_human_labels_train_the_pm_and_round_two_keeps_the_original_reference(tmp_path):
    from scalelab.feedback.db import FeedbackDB
    from scalelab.feedback.export import export_comparisons

    torch.manual_seed(0)
    policy = tmp_path / "policy"
    save_checkpoint(policy / "ckpt", 0, GPT(CFG), ByteTokenizer(), {})
    (tmp_path / "prompts.txt").write_text("\n".join(f"def f{i}(x):" for i in range(24)) + "\n")
    w = tmp_path / "w"
    db = FeedbackDB.in_workdir(w)
    alice = db.labeller_for_token(db.add_labeller("alice"))
    _label(db, alice, 0, 24)
    first = export_comparisons(db, tmp_path / "round0.jsonl", "hh")
    assert first.summary()["written"] == 24
    lines = [json.loads(line) for line in (tmp_path / "round0.jsonl").read_text().splitlines()]
    assert all("abc" in row["chosen"] for row in lines)  # the person's choice, whatever side was shown left
    pm0 = _pm(w, tmp_path / "round0.jsonl", policy, "pm-r0")

    common = dict(prompts=str(tmp_path / "prompts.txt"), steps=2, batch_size=8, max_new_tokens=6, eval_every=2,
                  eval_prompts=4, lr=3e-3, device="cpu", seed=1)  # fmt: skip
    r0 = run_rl(RLRunSpec(name="ppo-r0", policy=str(policy), pm=str(pm0), **common), w)
    assert r0["evals"][0]["kl"] == 0.0 and r0["evals"][-1]["kl"] != 0.0  # k1 estimate: either sign once it moved

    _label(db, alice, 1, 24)  # round two: new labels (on the tuned policy's turns, in a real loop)
    export_comparisons(db, tmp_path / "round1.jsonl", "hh")
    pm1 = _pm(w, tmp_path / "round1.jsonl", policy, "pm-r1")
    tuned = w / "runs" / r0["run_id"]
    r1 = run_rl(RLRunSpec(name="ppo-r1", policy=str(tuned), reference=str(policy), pm=str(pm1), **common), w)
    # the round starts where round one ended, so its KL from the original model is not zero at step 0
    assert r1["evals"][0]["kl"] != 0.0
    alone = run_rl(RLRunSpec(name="ppo-r1-own-ref", policy=str(tuned), pm=str(pm1), **common), w)
    assert alone["evals"][0]["kl"] == 0.0
    db.close()
