"""Mechanism probes: prefix matching on hand-built attention patterns, copying and ICL on stub models, CLI."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from scalelab.data import tokenizers as tk
from scalelab.evals.copying import copy_losses, icl_positions, icl_score
from scalelab.evals.induction import (
    fit_to_context,
    head_scores,
    induction_mask,
    probe_token_pool,
    repeated_random_tokens,
)
from scalelab.evals.probes import make_probe_eval, run_probes, settings_for
from scalelab.model import GPT, GPTConfig

N, REPEATS, S = 6, 4, 1 + 6 * 4


def _patterns(pattern: torch.Tensor, name: str) -> torch.Tensor:
    """Head 0: exact induction (attend to the token after the previous occurrence); head 1: previous
    token; head 2: uniform over the causal prefix. Rows without an earlier occurrence attend to themselves."""
    B, H, T, _ = pattern.shape
    out = torch.zeros_like(pattern)
    for q in range(T):
        out[:, 0, q, q - N + 1 if q >= 1 + N else q] = 1.0
        out[:, 1, q, max(q - 1, 0)] = 1.0
        out[:, 2, q, : q + 1] = 1.0 / (q + 1)
    return out


def _model(n_layer=2, n_head=3, block=64, vocab=64):
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=24, block_size=block, vocab_size=vocab))


def _probe_tokens(batch=3):
    return repeated_random_tokens(np.arange(10, 40), bos=63, batch=batch, n_random=N, n_repeats=REPEATS, seed=0)


def test_known_heads_score_as_expected():
    model = _model()
    tokens = _probe_tokens()
    with model.hooks([("blocks.0.attn.pattern", _patterns)]):
        scores = head_scores(model, tokens)
    prefix, detector = scores["prefix_matching"], scores["detector"]
    assert prefix.shape == detector.shape == (2, 3)
    # uniform head: r earlier occurrences for a token of repeat r, each weighted 1 / (q + 1)
    later = range(1 + N, S)
    uniform = np.mean([((q - 1) // N) / (q + 1) for q in later])
    np.testing.assert_allclose(prefix[0], [1.0, 0.0, uniform], atol=1e-6)
    # TransformerLens 'mul': the same hits divided by all S rows of attention
    np.testing.assert_allclose(detector[0, 0], len(later) / S, atol=1e-6)
    np.testing.assert_allclose(detector[0, 2], sum(((q - 1) // N) / (q + 1) for q in later) / S, atol=1e-6)
    assert ((prefix[1] >= 0) & (prefix[1] <= 1)).all()  # layer 1 is left alone
    assert model.training  # the probe restored the mode


def test_induction_mask_is_shifted_duplicate_mask():
    tokens = torch.tensor([[9, 1, 2, 1, 2, 1]])
    mask = induction_mask(tokens)[0]
    expected = torch.zeros(6, 6)
    expected[3, 2] = 1  # token 1 at 3: its earlier occurrence at 1, followed by position 2
    expected[4, 3] = 1  # token 2 at 4: earlier at 2 -> 3
    expected[5, 2] = expected[5, 4] = 1  # token 1 at 5: earlier at 1 and 3 -> 2 and 4
    assert torch.equal(mask, expected)


def test_probe_sequences_and_pool():
    tokens = _probe_tokens(batch=2)
    assert tokens.shape == (2, S) and (tokens[:, 0] == 63).all()
    body = tokens[:, 1:].view(2, REPEATS, N)
    assert (body == body[:, :1]).all() and len(set(body[0, 0].tolist())) == N
    assert probe_token_pool(tk.ByteTokenizer()).tolist() == list(range(33, 127))
    char = tk.CharTokenizer(" \nabcXYZ")
    pool = probe_token_pool(char)
    assert [char.chars[i] for i in pool] == list("abcXYZ")
    mid = probe_token_pool(vocab_size=100, eot_id=50)
    assert mid.min() == 10 and mid.max() == 89 and 50 not in mid
    assert fit_to_context(1024) == 25 and fit_to_context(32) == 7


class _Stub(nn.Module):
    """Same forward signature as GPT. copy_period=n: a perfect copier of period n (uniform when nothing
    to copy); otherwise a per-token loss fixed by position: loss[t] = 5 - 4 t / T."""

    def __init__(self, vocab=50, block=256, copy_period=None):
        super().__init__()
        self.cfg = GPTConfig(block_size=block, vocab_size=vocab)
        self.w = nn.Parameter(torch.zeros(1))
        self.period = copy_period

    def forward(self, idx, targets=None, reduction="mean"):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.cfg.vocab_size)
        if self.period is not None:
            for t in range(self.period, T):
                logits[torch.arange(B), t, idx[:, t + 1 - self.period]] = 100.0
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        else:
            loss = (5 - 4 * torch.arange(T, dtype=torch.float32) / T).repeat(B)
        loss = loss.view(B, T) if reduction == "none" else loss.mean()
        return logits, loss


def test_copy_losses_on_a_perfect_copier():
    n, copies = 7, 3
    passages = torch.randint(0, 50, (4, n), generator=torch.Generator().manual_seed(0))
    res = copy_losses(_Stub(copy_period=n), passages, copies, bos=49)
    assert len(res["per_copy"]) == copies
    assert res["copy_loss_first"] == pytest.approx(math.log(50), rel=1e-6)
    assert res["copy_loss_later"] == pytest.approx(0.0, abs=1e-6)


def test_icl_score_on_known_per_token_losses():
    T = 256
    windows = np.zeros((4, T + 1), dtype=np.int64)
    early, late, band = icl_positions(T)
    assert (early, late, band) == (25, 250, 4)
    res = icl_score(_Stub(block=T), windows)
    loss = 5 - 4 * np.arange(T) / T
    expected = loss[late - band : late + band + 1].mean() - loss[early - band : early + band + 1].mean()
    assert res["icl_score"] == pytest.approx(expected, rel=1e-5) and res["icl_score"] < 0
    long_windows = np.zeros((2, 2, 2 * T), dtype=np.int64)  # (n_batches, B, S) and too long: cut to fit
    assert icl_score(_Stub(block=T), long_windows)["icl_score"] == pytest.approx(expected, rel=1e-5)


def test_probe_eval_callback_is_flat_seeded_and_cheap():
    model = _model(block=32, vocab=257)
    heldout = np.random.default_rng(0).integers(0, 256, size=(1, 4, 33))
    fn = make_probe_eval(tk.ByteTokenizer(), heldout=heldout, batch_size=4, seed=1, per_head=True)
    a, b = fn(model, 10), fn(model, 20)
    assert a == b
    assert {"induction_max", "detector_max", "copy_loss_first", "copy_loss_later", "icl_score"} <= set(a)
    assert "prefix_l1_h2" in a and all(isinstance(v, float) and math.isfinite(v) for v in a.values())
    settings = settings_for(vocab_size=257, eot_id=256, batch_size=2)
    res = run_probes(model, settings)
    assert res["icl_score"] is None and np.asarray(res["prefix_matching"]).shape == (2, 3)
    assert res["settings"]["n_random"] == 7 and len(res["copy_losses"]) == 4
    # the copying losses read from the hooked pass equal a plain forward on the same passages
    seqs = repeated_random_tokens(settings.pool, 256, 2, 7, 4, settings.seed)
    direct = copy_losses(model, seqs[:, 1:8], 4, bos=256)
    np.testing.assert_allclose(res["copy_losses"], direct["per_copy"], rtol=1e-5)


def _cli(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip


@pytest.mark.slow
def test_cli_probe_induction(tiny_cfg, tmp_path):
    from scalelab.store import RunStore
    from scalelab.train.loop import train

    probe = make_probe_eval(tk.ByteTokenizer(), batch_size=2)  # the default tiny config is byte-level
    run = train(tiny_cfg(train__iters="10", train__eval_every="5"), tmp_path, progress=False, extra_evals=[probe])
    logged = RunStore.in_workdir(tmp_path).metrics_df([run["run_id"]], name="induction_max")
    assert sorted(logged["step"]) == [5, 10]  # the callback ran at each evaluation and was stored
    r = _cli("probe", "induction", run["run_id"], "--workdir", str(tmp_path), "--json", "--batch", "4")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert np.asarray(res["prefix_matching"]).shape == (1, 2) and res["step"] == 10
    assert 0.0 <= res["induction_max"] <= 1.0
    assert res["copy_loss_first"] > 0 and res["icl_score"] is not None  # val split found via the run's config
    # the table and the error path in-process (a subprocess costs seconds of imports)
    from typer.testing import CliRunner

    from scalelab.cli import app
    from scalelab.errors import UserError

    table = CliRunner().invoke(app, ["probe", "induction", str(tmp_path / "runs" / run["run_id"]), "--batch", "2"])
    assert table.exit_code == 0, table.output
    assert "head 1" in table.output and "ICL score" in table.output
    bad = CliRunner().invoke(app, ["probe", "induction", "nope", "--workdir", str(tmp_path)])
    assert isinstance(bad.exception, UserError) and "neither a checkpoint path nor a run" in str(bad.exception)
