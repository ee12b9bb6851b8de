"""RL runs end to end on tiny models: a known reward is learnt, runs resume exactly, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scalelab.align.backbones import GPTBackbone
from scalelab.align.pm import PreferenceModel
from scalelab.align.pm_run import PMRunSpec
from scalelab.align.rl import trainer as trainer_mod
from scalelab.align.rl.config import RLRunSpec
from scalelab.align.rl.run import run_rl
from scalelab.align.rl.trainer import RLStopped
from scalelab.data.tokenizers import ByteTokenizer, CharTokenizer
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig
from scalelab.store import RunStore
from scalelab.sweep.worker import run_worker
from scalelab.train.checkpoint import save_checkpoint
from scalelab.train.record import read_run_files

CFG = GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=48, vocab_size=257)


def letters(prompts: list[str], responses: list[str]) -> list[float]:
    """A known reward: the share of ASCII letters in the response (about 0.2 for random bytes)."""
    return [sum(c.isascii() and c.isalpha() for c in r) / max(1, len(r)) for r in responses]


@pytest.fixture
def lab(tmp_path, one_torch_thread) -> Path:
    """A tiny policy checkpoint, a PM with the same tokenizer, a prompt file."""
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "policy" / "ckpt", 0, GPT(CFG), ByteTokenizer(), {})
    pm = PreferenceModel(GPTBackbone(GPT(CFG)), ByteTokenizer(), "ranked")
    torch.nn.init.normal_(pm.head.weight)
    pm.save(tmp_path / "pm" / "pm")
    (tmp_path / "prompts.txt").write_text("\n".join(f"def f{i}(x):" for i in range(24)) + "\n")
    return tmp_path


def spec(lab: Path, **kw) -> RLRunSpec:
    base = dict(policy=str(lab / "policy"), pm=str(lab / "pm"), prompts=str(lab / "prompts.txt"), steps=3,
                batch_size=8, max_new_tokens=6, eval_every=2, eval_prompts=4, lr=3e-3, device="cpu",
                seed=1)  # fmt: skip
    return RLRunSpec(**{**base, **kw})


@pytest.mark.slow
def test_known_reward_is_learnt(lab):
    """PPO on a reward for ASCII letters: the eval reward and the KL both rise."""
    s = spec(lab, pm=None, reward="gold", gold="letters", steps=12, batch_size=16, lr=1e-2, eval_every=4,
             max_new_tokens=8)  # fmt: skip
    out = run_rl(s, lab / "w", rewards={"letters": letters})
    evals = out["evals"]
    assert [e["step"] for e in evals] == [0, 4, 8, 12]
    assert evals[-1]["gold"] > evals[0]["gold"] + 0.1 and evals[-1]["kl"] > 0.5 > evals[0]["kl"] == 0.0
    assert out["gold"] == evals[-1]["gold"] and out["sqrt_kl_fit"]["b"] > 0
    store = RunStore.in_workdir(lab / "w")
    run = store.get_run(out["run_id"])
    assert run["status"] == "completed"
    df = store.metrics_df([out["run_id"]])
    names = set(zip(df["split"], df["name"]))
    for key in ("reward", "kl", "sqrt_kl", "entropy", "clip_frac", "approx_kl", "value_loss", "explained_var",
                "resp_len", "samples_per_s"):  # fmt: skip
        assert ("train", key) in names
    assert {("eval", "reward"), ("eval", "kl"), ("eval", "sqrt_kl"), ("eval", "gold")} <= names
    store.close()


def _weights(run_dir: Path) -> dict:
    ckpt = run_dir / "ckpt"
    return load_file(str(ckpt / (ckpt / "latest").read_text().strip() / "model.safetensors"))


def test_resume_is_exact(lab, monkeypatch):
    """Interrupted after step 3 (checkpoint at 2), then resumed: the same weights and metrics as a straight run."""
    s = spec(lab, steps=4, ckpt_every=2, value="critic", adaptive_kl=True, eval_pms=[str(lab / "pm")]).to_dict()
    straight = run_worker("rl", s, str(lab / "w"), "straight", 1)
    assert straight["status"] == "completed", straight

    real_step, calls = trainer_mod.RLTrainer.step, {"n": 0}

    def dies_at_step_4(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(trainer_mod.RLTrainer, "step", dies_at_step_4)
    assert run_worker("rl", s, str(lab / "w"), "resumed", 1)["status"] == "interrupted"
    monkeypatch.setattr(trainer_mod.RLTrainer, "step", real_step)
    resumed = run_worker("rl", s, str(lab / "w"), "resumed", 1)
    assert resumed["status"] == "completed", resumed
    a, b = _weights(lab / "w" / "runs" / "straight"), _weights(lab / "w" / "runs" / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [e for e in straight["evals"]] == [e for e in resumed["evals"]]

    def rows(run):
        _, r = read_run_files(lab / "w" / "runs" / run)
        return sorted(x for x in r if x[4] != "samples_per_s")

    assert rows("straight") == rows("resumed")  # the rows of the lost step 3 were dropped, none doubled
    assert "pm_0" in straight["evals"][-1]


def test_rloo_dpo_and_best_of_n_runs(lab):
    rloo = run_rl(spec(lab, algo="rloo", rloo_k=4, steps=2, kl_estimator="k3", top_k=50), lab / "w")
    assert rloo["steps"] == 2 and rloo["kl"] is not None
    pairs = [{"prompt": f"def g{i}(x):", "chosen": " return x", "rejected": " pass"} for i in range(6)]
    (lab / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    dpo = run_rl(spec(lab, algo="dpo", dpo_data=str(lab / "pairs.jsonl"), steps=2, batch_size=4), lab / "w")
    assert dpo["steps"] == 2 and dpo["samples"] == 16
    pm = PreferenceModel.load(lab / "pm")  # a PM that records its training data: DPO uses its train split
    pm.meta = {"spec": PMRunSpec(data=str(lab / "pairs.jsonl"), base=str(lab / "policy"), test_fraction=0.5).to_dict()}
    pm.save(lab / "pm_with_data" / "pm")
    dpo2 = run_rl(spec(lab, algo="dpo", pm=str(lab / "pm_with_data"), steps=1, batch_size=8), lab / "w")
    assert 0 < dpo2["samples"] < 12  # both sides of the PM's training pairs only, not its test pairs
    bon = run_rl(spec(lab, algo="best-of-n", bon_n=[1, 2, 4]), lab / "w")
    assert [e["step"] for e in bon["evals"]] == [1, 2, 4]
    assert [e["kl"] for e in bon["evals"]] == pytest.approx([0.0, 0.1931472, 0.6362944])
    rewards = [e["reward"] for e in bon["evals"]]
    assert rewards == sorted(rewards)  # the best of more samples (prefixes of one draw) never scores lower


def test_bad_inputs(lab):
    w = lab / "w"
    torch.manual_seed(1)
    char = CharTokenizer("abcdef(): \n")
    other = PreferenceModel(GPTBackbone(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32,
                                                      vocab_size=char.vocab_size))), char, "ranked")  # fmt: skip
    other.save(lab / "char_pm" / "pm")
    with pytest.raises(UserError, match="tokenizer"):
        run_rl(spec(lab, pm=str(lab / "char_pm")), w)
    with pytest.raises(UserError, match="not a preference-model run"):
        run_rl(spec(lab, pm=str(lab / "policy")), w)
    (lab / "empty.txt").write_text("\n\n")
    with pytest.raises(UserError, match="empty"):
        run_rl(spec(lab, prompts=str(lab / "empty.txt")), w)
    (lab / "long.txt").write_text("x" * 45 + "\n")
    with pytest.raises(UserError, match="prompt 1 has 45 tokens"):
        run_rl(spec(lab, prompts=str(lab / "long.txt")), w)
    assert not (w / "runs").exists() or not list((w / "runs").iterdir())  # refused before any run was made

    nan = spec(lab, pm=None, reward="gold", gold="nan", ckpt_every=1)
    calls = {"n": 0}

    def nan_after_two(prompts, responses):
        calls["n"] += 1
        return [float("nan") if calls["n"] > 3 else 0.5] * len(responses)  # eval at 0, steps 1-2, then NaN

    with pytest.raises(RLStopped, match=r"NaN.*last good checkpoint is kept: .*step_00000002"):
        run_rl(nan, w, rewards={"nan": nan_after_two})
    with pytest.raises(RLStopped, match=r"KL explosion.*checkpoint"):
        run_rl(spec(lab, kl_stop=1e-6, ckpt_every=1, lr=1e-2), w)
    store = RunStore.in_workdir(w)
    failed = [r for r in store.find_runs() if r["status"] == "failed"]
    assert len(failed) == 2 and all("checkpoint" in (r["error"] or "") for r in failed)
    store.close()


def test_cli_rl_train_json(lab, capsys):
    from scalelab.cli.app import main

    main(["rl", "train", "--policy", str(lab / "policy"), "--pm", str(lab / "pm"), "--prompts",
          str(lab / "prompts.txt"), "--set", "steps=2", "--set", "max_new_tokens=4", "--set", "device='cpu'",
          "--set", "eval_every=1", "--workdir", str(lab / "w"), "--json"])  # fmt: skip
    captured = capsys.readouterr()
    res = json.loads(captured.out.strip().splitlines()[-1])
    assert {"reward", "kl", "sqrt_kl_fit", "gold", "run_id"} <= set(res)
    assert {"a", "b", "r2", "ci"} <= set(res["sqrt_kl_fit"]) and "[rl] step 2/2" in captured.err
    with pytest.raises(SystemExit) as exc:
        main(["rl", "train", "--policy", str(lab / "policy"), "--workdir", str(lab / "w")])
    assert exc.value.code == 2 and "preference model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["rl", "train", "--workdir", str(lab / "w")])
    assert exc.value.code == 2 and "--policy" in capsys.readouterr().err
    main(["rl", "train", "--resume", res["run_id"], "--workdir", str(lab / "w"), "--json"])  # finished: nothing to do
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["run_id"] == res["run_id"] and again["steps"] == 2 and again["reward"] == res["reward"]


def test_run_refs_and_sweep_worker(lab):
    """'run:NAME' resolves to the completed run of that name in the group; kind 'rl' runs through run_worker."""
    import shutil


    w = lab / "w"
    store = RunStore.in_workdir(w)
    pol = store.create_run("policy", {}, "h-policy", group="g")
    pm = store.create_run("pm", {}, "h-pm", group="g")
    for run_id, src in ((pol, lab / "policy"), (pm, lab / "pm")):
        shutil.copytree(src, w / "runs" / run_id)
        store.update_run(run_id, status="completed")
    rl = store.create_run("rl", {}, "h-rl", group="g")
    store.close()
    cfg = spec(lab, policy="run:policy", pm="run:pm", group="g", steps=2, run_hashes={"run:pm": "h-pm"}).to_dict()
    out = run_worker("rl", cfg, str(w), rl, 1)
    assert out["status"] == "completed", out
    record, rows = read_run_files(w / "runs" / rl)
    assert record["status"] == "completed" and record["summary"]["steps"] == 2 and rows
    stale = spec(lab, policy="run:policy", pm="run:pm", group="g", run_hashes={"run:pm": "other"}).to_dict()
    failed = run_worker("rl", stale, str(w), rl, 1)
    assert failed["status"] == "failed" and "no completed run named 'pm' with config hash other" in failed["error"]


def test_default_lr_is_a_hundredth_of_pretraining(lab):
    from scalelab.align.rl.models import DEFAULT_LR, load_policy

    s = spec(lab, lr=None)
    assert load_policy(s, lab / "w")[3]["lr"] == DEFAULT_LR  # no run config beside the checkpoint
    (lab / "policy" / "config.json").write_text(json.dumps({"train": {"lr": 3e-4}}))
    policy, reference, _, info = load_policy(s, lab / "w")
    assert info["lr"] == pytest.approx(3e-6) and info["pretrain_lr"] == 3e-4
    assert not any(p.requires_grad for p in reference.parameters()) and policy.training


def test_cli_run_resumes_after_interruption(lab, monkeypatch):
    real_step = trainer_mod.RLTrainer.step
    calls = {"n": 0}

    def dies_at_step_3(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(trainer_mod.RLTrainer, "step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_rl(spec(lab, steps=3, ckpt_every=1, name="rl-x"), lab / "w")
    monkeypatch.setattr(trainer_mod.RLTrainer, "step", real_step)
    store = RunStore.in_workdir(lab / "w")
    assert store.get_run("rl-x")["status"] == "interrupted"
    store.close()
    out = run_rl(None, lab / "w", resume="rl-x")
    assert out["steps"] == 3 and [e["step"] for e in out["evals"]] == [0, 2, 3]
    with pytest.raises(UserError, match="not an RL run"):
        run_rl(None, lab / "w", resume="nothing")


def test_reference_is_the_original_model_when_given(lab):
    """A policy that continues an earlier RL run keeps the original model as its KL reference."""
    from scalelab.align.rl.models import load_policy

    torch.manual_seed(5)
    save_checkpoint(lab / "tuned" / "ckpt", 0, GPT(CFG), ByteTokenizer(), {})
    policy, reference, _, _ = load_policy(spec(lab, policy=str(lab / "tuned")), lab / "w")
    assert all(torch.equal(a, b) for a, b in zip(policy.parameters(), reference.parameters()))
    tuned = spec(lab, policy=str(lab / "tuned"), reference=str(lab / "policy"))
    policy, reference, _, _ = load_policy(tuned, lab / "w")
    original = load_file(next((lab / "policy" / "ckpt").glob("**/*.safetensors")))
    assert not all(torch.equal(a, b) for a, b in zip(policy.parameters(), reference.parameters()))
    ref_state = reference.state_dict()
    assert all(torch.equal(ref_state[k], v) for k, v in original.items() if k in ref_state)
    assert not any(p.requires_grad for p in reference.parameters())
    char = CharTokenizer("abcdef(): \n")
    small = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=char.vocab_size))
    save_checkpoint(lab / "char" / "ckpt", 0, small, char, {})
    with pytest.raises(UserError, match="reference"):
        load_policy(spec(lab, reference=str(lab / "char")), lab / "w")
