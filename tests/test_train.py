import math

import numpy as np
import pytest

from scalelab.data.shards import prepare_shards
from scalelab.errors import RunDiverged, UserError
from scalelab.store import RunStore
from scalelab.train.checkpoint import latest_checkpoint, load_model_from_checkpoint
from scalelab.train.loop import train
from scalelab.train.schedule import lr_factor


def _curve(workdir, run_id, split="train", name="loss"):
    df = RunStore.in_workdir(workdir).metrics_df([run_id], name=name)
    df = df[df.split == split]
    return dict(zip(df.step, df.value))


def _unigram_entropy(tokens) -> float:
    counts = np.bincount(np.asarray(tokens, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_learns_below_unigram_entropy(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train__iters="300", model__n_embd="64", model__n_head="4", train__lr="3e-3", model__n_layer="2",
                   train__eval_every="100", data__max_documents="40")
    s = train(cfg, tmp_path, progress=False)
    shards = prepare_shards(cfg.data, tmp_path / "cache", progress=False)
    h = _unigram_entropy(shards.tokens("train"))
    assert s["status"] == "completed" and s["iters"] == 300
    assert s["final_val_loss"] < h - 0.5, (s["final_val_loss"], h)
    assert s["tokens"] == 300 * 8 * 32 and s["flops"] == s["tokens"] * s["flops_per_token"]
    run = RunStore.in_workdir(tmp_path).get_run(s["run_id"])
    assert run["status"] == "completed" and run["final_val_loss"] == pytest.approx(s["final_val_loss"])
    assert run["config"]["train"]["iters"] == 300 and run["params"] == s["params"]


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_resume_reproduces_uninterrupted_curve(tiny_cfg, tmp_path, sampling):
    cfg = tiny_cfg(train__sampling=f"'{sampling}'", train__log_every="1", model__dropout="0.1")
    full = train(cfg, tmp_path / "a", progress=False)
    part = train(cfg, tmp_path / "b", progress=False, stop_after=13)  # between checkpoints 10 and 20
    assert part["status"] == "interrupted" and part["iters"] == 13
    assert RunStore.in_workdir(tmp_path / "b").get_run(part["run_id"])["status"] == "interrupted"
    resumed = train(cfg, tmp_path / "b", resume=part["run_id"], progress=False)
    assert resumed["run_id"] == part["run_id"] and resumed["status"] == "completed"
    a, b = _curve(tmp_path / "a", full["run_id"]), _curve(tmp_path / "b", part["run_id"])
    assert sorted(a) == sorted(b) == list(range(1, 31))
    assert all(a[k] == b[k] for k in a), [(k, a[k], b[k]) for k in a if a[k] != b[k]]
    assert resumed["final_val_loss"] == full["final_val_loss"]


def test_resume_refuses_other_shape_or_tokenizer(tiny_cfg, tmp_path):
    s = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    with pytest.raises(UserError, match=r"model.n_layer: 1 -> 2"):
        train(tiny_cfg(model__n_layer="2"), tmp_path, resume=s["run_id"], progress=False)
    with pytest.raises(UserError, match=r"data.tokenizer: 'byte' -> 'char'"):
        train(tiny_cfg(data__tokenizer="'char'"), tmp_path, resume=s["run_id"], progress=False)
    with pytest.raises(UserError, match="no run"):
        train(tiny_cfg(), tmp_path, resume="nope", progress=False)


def test_nan_guard_marks_failed_and_keeps_last_good_checkpoint(tiny_cfg, tmp_path):
    def poison(model, step):  # at the evaluation of step 20, corrupt the weights
        if step == 20:
            for p in model.parameters():
                p.data.fill_(float("nan"))
        return {}

    cfg = tiny_cfg(train__eval_every="10", train__ckpt_every="10")
    with pytest.raises(RunDiverged, match="non-finite"):
        train(cfg, tmp_path, progress=False, extra_evals=[poison])
    run = RunStore.in_workdir(tmp_path).find_runs()[0]
    assert run["status"] == "failed" and "non-finite" in run["error"]
    ckpt = latest_checkpoint(tmp_path / "runs" / run["id"] / "ckpt")
    assert ckpt.name == "step_00000010"
    model, _, _ = load_model_from_checkpoint(ckpt)
    assert all(not p.isnan().any() for p in model.parameters())


def test_nan_loss_stops_the_run(tiny_cfg, tmp_path):
    cfg = tiny_cfg(train__lr="1e30", train__grad_clip="0", train__warmup_iters="0")
    with pytest.raises(RunDiverged):
        train(cfg, tmp_path, progress=False)
    assert RunStore.in_workdir(tmp_path).find_runs()[0]["status"] == "failed"


def test_schedules():
    assert lr_factor(0, 100, 10, "cosine", 0.1, 0.2) == pytest.approx(1 / 11)
    assert lr_factor(10, 100, 10, "cosine", 0.1, 0.2) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine", 0.1, 0.2) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "cosine", 0.1, 0.2) == pytest.approx(0.55)
    assert lr_factor(79, 100, 10, "wsd", 0.1, 0.2) == 1.0
    assert lr_factor(90, 100, 10, "wsd", 0.1, 0.2) == pytest.approx(0.55)
    assert math.isclose(lr_factor(50, 100, 10, "constant", 0.1, 0.2), 1.0)


def test_muon_and_modern_recipe_train(tiny_cfg, tmp_path):
    cfg = tiny_cfg(model__recipe="'modern'", train__optimizer="'muon'", train__schedule="'wsd'",
                   train__grad_accum="2")
    s = train(cfg, tmp_path, progress=False)
    assert s["status"] == "completed" and s["final_val_loss"] < math.log(257) - 1.0
    assert s["tokens"] == 30 * 2 * 8 * 32


def test_repetition_mixer_in_the_loop(tiny_cfg, tmp_path):
    cfg = tiny_cfg(data__repeat_fraction="0.8", data__repeat_epochs="50", data__max_documents="200",
                   train__iters="150", train__eval_every="50", model__n_embd="64", model__n_layer="2",
                   train__lr="3e-3")
    s = train(cfg, tmp_path, progress=False)
    acc = s["repetition"]
    assert acc["total_tokens"] == s["tokens"] and acc["repeats"] == 50
    assert acc["repeated_tokens"] == 50 * acc["subset_tokens"]
    rep = _curve(tmp_path, s["run_id"], split="repeated")
    val = _curve(tmp_path, s["run_id"], split="val")
    assert sorted(rep) == sorted(val) == [50, 100, 150]
    assert rep[150] < val[150] - 0.2  # the repeated subset is memorised faster than held-out text


def test_newton_schulz_orthogonalises_batched_and_single():
    import torch

    from scalelab.train.optim import newton_schulz

    torch.manual_seed(0)
    g = torch.randn(3, 64, 16)
    o = newton_schulz(g)
    s = torch.linalg.svdvals(o)
    assert s.min() > 0.5 and s.max() < 1.3  # singular values pushed towards 1 (not exactly: no convergence)
    assert torch.allclose(newton_schulz(g[1]), o[1], atol=1e-5)
    u, _, vh = torch.linalg.svd(g[0], full_matrices=False)
    cos = torch.nn.functional.cosine_similarity(o[0].flatten(), (u @ vh).flatten(), dim=0)
    assert cos > 0.95


def test_evaluation_windows_do_not_depend_on_the_training_seed(tiny_cfg, tmp_path, monkeypatch):
    import scalelab.train.evaluator as evaluator

    seeds = []
    real = evaluator.eval_windows

    def spy(tokens, block, batch, n, seed):
        seeds.append(seed)
        return real(tokens, block, batch, n, seed)

    monkeypatch.setattr(evaluator, "eval_windows", spy)
    for s in ("1", "2"):
        train(tiny_cfg(train__seed=s, train__iters="2"), tmp_path / s, progress=False)
    assert seeds[:2] == seeds[2:4] == [1337, 1338]


def test_resume_with_changed_settings_records_what_ran(tiny_cfg, tmp_path):
    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    cfg2 = tiny_cfg(train__lr="5e-4", train__iters="40")
    s = train(cfg2, tmp_path, resume=part["run_id"], progress=False)
    run = RunStore.in_workdir(tmp_path).get_run(part["run_id"])
    assert run["config"]["train"]["lr"] == 5e-4 and run["config_hash"] == cfg2.config_hash()
    (change,) = s["config_history"]
    assert change["step"] == 10 and change["changes"]["train.lr"] == [1e-3, 5e-4]
    assert change["changes"]["train.iters"] == [30, 40] and run["summary"]["config_history"] == [change]


def test_progress_file_follows_the_run(tiny_cfg, tmp_path):
    import json
    import os

    s = train(tiny_cfg(), tmp_path, progress=False, stop_after=12)
    prog = json.loads((tmp_path / "runs" / s["run_id"] / "progress.json").read_text())
    keys = {"step", "iters", "loss", "val_loss", "tokens_per_s", "elapsed_s", "eta_s", "pid", "host", "time"}
    assert set(prog) == keys
    assert prog["step"] == 10 and prog["iters"] == 30 and prog["pid"] == os.getpid()  # the last log step before 12
    assert prog["val_loss"] == pytest.approx(_curve(tmp_path, s["run_id"], "val")[10])
    assert prog["eta_s"] > 0 and prog["loss"] > 0
    s = train(tiny_cfg(), tmp_path, progress=False, resume=s["run_id"])
    prog = json.loads((tmp_path / "runs" / s["run_id"] / "progress.json").read_text())
    assert prog["step"] == 30 and prog["eta_s"] == 0 and prog["val_loss"] == pytest.approx(s["final_val_loss"])
