"""Issue 13's CPU levers. `train.matmul_precision`: torch's float32 matmul precision for one run, restored
after it; CPU attention kept at full precision under it. `train.dtype='bfloat16'`: autocast on the CPU too,
with short-context attention computed in float32. The exact GELU option equals torch's kernel."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import scalelab.model.gpt as gpt
from scalelab.config import load_config
from scalelab.train.loop import train
from scalelab.train.precision import autocast, matmul_precision
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def test_the_precision_is_set_for_the_block_and_restored_after_it_even_on_error():
    before = torch.get_float32_matmul_precision()
    with matmul_precision("medium", CPU):
        assert torch.get_float32_matmul_precision() == "medium" and gpt._attention_full_precision
    assert torch.get_float32_matmul_precision() == before and not gpt._attention_full_precision
    with pytest.raises(RuntimeError, match="boom"), matmul_precision("high", CPU):
        raise RuntimeError("boom")
    assert torch.get_float32_matmul_precision() == before and not gpt._attention_full_precision
    with matmul_precision(None, CPU):  # unset: torch's setting is left alone
        assert torch.get_float32_matmul_precision() == before and not gpt._attention_full_precision


def test_cpu_attention_and_its_backward_run_at_full_precision_under_medium():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(2, 3, 16, 8)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    want_grads = torch.autograd.grad(want, (q, k, v), grad_out)
    seen = []
    with matmul_precision("medium", CPU):
        got = gpt.attention(q, k, v, is_causal=True)
        got.grad_fn.register_prehook(lambda _: seen.append(torch.get_float32_matmul_precision()))
        assert torch.get_float32_matmul_precision() == "medium"  # the linear layers keep the reduced precision
        got_grads = torch.autograd.grad(got, (q, k, v), grad_out)
        assert torch.get_float32_matmul_precision() == "medium"  # restored after the backward kernel
    assert seen == ["highest"]  # the backward kernel ran at full precision
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_a_run_at_medium_precision_trains_close_to_full_precision_and_leaves_torch_as_it_was(tmp_path):
    over = tiny_overrides(train__iters="20", train__eval_every="20", train__ckpt_every="20")
    before = torch.get_float32_matmul_precision()
    full_cfg, medium_cfg = load_config(None, over), load_config(None, [*over, "train.matmul_precision='medium'"])
    assert full_cfg.config_hash() != medium_cfg.config_hash()  # another result, another run
    full = train(full_cfg, tmp_path / "full", progress=False)
    medium = train(medium_cfg, tmp_path / "medium", progress=False)
    assert torch.get_float32_matmul_precision() == before and not gpt._attention_full_precision
    assert medium["status"] == "completed"
    assert abs(medium["final_val_loss"] - full["final_val_loss"]) < 0.05  # bfloat16 inputs, float32 sums


def test_exact_gelu_mlp_is_torchs_exact_gelu():
    from scalelab.model.gpt import MLP, GPTConfig

    torch.manual_seed(0)
    mlp = MLP(GPTConfig(n_embd=8, mlp="gelu_exact", bias=True))
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(mlp(x), mlp.c_proj(F.gelu(mlp.c_fc(x))), rtol=0, atol=0)
    tanh = MLP(GPTConfig(n_embd=8, mlp="gelu", bias=True))
    tanh.load_state_dict(mlp.state_dict())
    assert not torch.equal(tanh(x), mlp(x))  # the two GELUs are different functions


def test_bfloat16_cpu_attention_that_needs_a_gradient_is_computed_in_float32_at_short_contexts():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8).bfloat16().requires_grad_() for _ in range(3))
    grad_out = torch.randn(2, 3, 16, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gpt.attention(q, k, v, is_causal=True)
    assert got.dtype == torch.bfloat16  # the caller's dtype back
    got_grads = torch.autograd.grad(got, (q, k, v), grad_out)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    want = F.scaled_dot_product_attention(q32, k32, v32, is_causal=True)
    want_grads = torch.autograd.grad(want, (q32, k32, v32), grad_out.float())
    torch.testing.assert_close(got, want.bfloat16(), rtol=0, atol=0)  # float32 math, one rounding at the end
    for g, w in zip(got_grads, want_grads):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, w.bfloat16(), rtol=0, atol=0)
    mask = torch.ones(16, 16).tril().log().bfloat16()  # an additive float mask is cast along
    torch.testing.assert_close(gpt.attention(q, k, v, attn_mask=mask), got, rtol=0, atol=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 tensors under autocast (the model's one cast)
        from_float = gpt.attention(*(t.detach().float().requires_grad_() for t in (q, k, v)), is_causal=True)
    assert from_float.dtype == torch.bfloat16  # as the plain call under autocast would give
    torch.testing.assert_close(from_float, got, rtol=0, atol=0)
    with torch.no_grad():  # inference, and long contexts, keep torch's bfloat16 kernel
        torch.testing.assert_close(gpt.attention(q, k, v, is_causal=True),
                                   F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=0, atol=0)  # fmt: skip
    long = [torch.randn(1, 2, gpt.FLOAT32_CPU_ATTENTION_MAX_KEYS + 1, 8).bfloat16().requires_grad_() for _ in range(3)]
    torch.testing.assert_close(gpt.attention(*long, is_causal=True),
                               F.scaled_dot_product_attention(*long, is_causal=True), rtol=0, atol=0)  # fmt: skip


def test_train_dtype_bfloat16_autocasts_on_the_cpu_and_auto_does_not():
    lin = torch.nn.Linear(4, 4)
    with autocast("bfloat16", CPU):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    for dtype in ("auto", "float32"):
        with autocast(dtype, CPU):
            assert lin(torch.randn(2, 4)).dtype == torch.float32


def test_a_cpu_without_bfloat16_units_is_warned_of_both_levers(monkeypatch):
    import scalelab.train.precision as precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"train.dtype='bfloat16' has no fast path on this CPU"):
        autocast("bfloat16", CPU)
    with pytest.warns(RuntimeWarning, match=r"train.matmul_precision='medium' has no fast path on this CPU"):
        with matmul_precision("medium", CPU):
            pass
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        autocast("bfloat16", CPU)
        with matmul_precision("medium", CPU):
            pass


def test_a_bfloat16_cpu_run_trains_close_to_float32_in_bfloat16(tmp_path, monkeypatch):
    over = tiny_overrides(train__iters="20", train__eval_every="20", train__ckpt_every="20")
    seen = []
    real = gpt.F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return real(q, k, v, **kw)

    monkeypatch.setattr(gpt.F, "scaled_dot_product_attention", spy)
    full = train(load_config(None, over), tmp_path / "full", progress=False)
    assert {dtype for dtype, _ in seen} == {torch.float32}
    seen.clear()
    bf16 = train(load_config(None, [*over, "train.dtype='bfloat16'"]), tmp_path / "bf16", progress=False)
    assert (torch.bfloat16, True) in seen  # evaluation: under autocast (once CUDA-only, silently float32 here)
    assert (torch.float32, False) in seen  # training steps: short-context attention in float32
    assert bf16["status"] == "completed"
    assert abs(bf16["final_val_loss"] - full["final_val_loss"]) < 0.05
