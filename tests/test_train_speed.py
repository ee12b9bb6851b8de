"""The CPU engine's speed levers change no math (issue 13): the GELU's compiled form, fused AdamW on the
CPU, the compiled step against the eager one, and the fallback to eager when compilation fails."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from scalelab.config import load_config
from scalelab.model.gpt import gelu_tanh, gelu_tanh_as_sigmoid
from scalelab.train import distributed as dd
from scalelab.train.loop import train
from scalelab.train.optim import build_optimizers
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gelu_sigmoid_form_equals_torch_tanh_gelu_and_its_gradient():
    """Same function: as close to the exact (float64) value and derivative as torch's float32 kernel is."""
    x = torch.linspace(-12, 12, 4001, dtype=torch.float32).requires_grad_()
    x64 = x.detach().double().requires_grad_()
    exact = F.gelu(x64, approximate="tanh")
    (exact_grad,) = torch.autograd.grad(exact.sum(), x64)
    errors = {}
    for name, fn in (("kernel", lambda t: F.gelu(t, approximate="tanh")), ("sigmoid", gelu_tanh_as_sigmoid)):
        y = fn(x)
        (g,) = torch.autograd.grad(y.sum(), x)
        errors[name] = ((y.double() - exact).abs().max().item(), (g.double() - exact_grad).abs().max().item())
    for value_or_grad in (0, 1):  # float32 rounding: both ~1e-6 of values and slopes of size ~1
        assert errors["sigmoid"][value_or_grad] <= max(2 * errors["kernel"][value_or_grad], 1e-6)
    torch.testing.assert_close(gelu_tanh_as_sigmoid(x), F.gelu(x, approximate="tanh"), rtol=0, atol=1e-6)
    torch.testing.assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"), rtol=0, atol=0)  # eager: the kernel


def _tiny_model_and_batches(seed: int = 0):
    from scalelab.model.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, bias=False))
    batches = [torch.randint(0, 50, (4, 17)) for _ in range(4)]
    return model, batches


def test_cpu_adamw_is_fused_and_updates_as_foreach_does():
    cfg = load_config(None, tiny_overrides())
    runs = {}
    for kind in ("fused", "foreach"):
        model, batches = _tiny_model_and_batches()
        (opt,) = build_optimizers(model, cfg.train, torch.device("cpu"))
        if kind == "foreach":  # the optimizer before issue 13: same groups, foreach kernels
            opt = torch.optim.AdamW(opt.param_groups, lr=cfg.train.lr, betas=cfg.train.betas, foreach=True)
        else:
            assert opt.defaults["fused"] is True
        for b in batches:
            _, loss = model(b[:, :-1], b[:, 1:])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        runs[kind] = {n: p.detach().clone() for n, p in model.named_parameters()}
    for name, p in runs["foreach"].items():
        torch.testing.assert_close(runs["fused"][name], p, rtol=0, atol=1e-6, msg=name)


def _losses(summary: dict, workdir) -> list[float]:
    from scalelab.store import RunStore

    rows = RunStore.in_workdir(workdir).metric_series([summary["run_id"]], "train", "loss")[summary["run_id"]]
    return [v for (*_, v) in rows]


def test_failed_compilation_falls_back_to_eager_from_the_same_batch(tmp_path, monkeypatch):
    """No compiler here: the compiled forward raises; the run warns, trains eagerly, and its losses are
    those of an eager run to the last bit (the failed step is redone on the same batch)."""

    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("InductorError: CppCompileError: no C++ compiler found")

    over = tiny_overrides(train__iters="6", train__log_every="1", train__eval_every="6", train__ckpt_every="6")
    eager = train(load_config(None, over), tmp_path / "eager", progress=False)
    monkeypatch.setattr(dd, "apply_compile", lambda model, enabled, mode="default": Broken() if enabled else model)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*CppCompileError"):
        fell = train(load_config(None, [*over, "train.compile=true"]), tmp_path / "fell", progress=False)
    assert fell["status"] == "completed" and fell["compile_s"] is not None
    assert "no C++ compiler" in fell["compile_failed"]
    assert eager["compile_s"] is None and eager["compile_failed"] is None
    assert _losses(fell, tmp_path / "fell") == _losses(eager, tmp_path / "eager")
    assert fell["final_val_loss"] == eager["final_val_loss"]


@pytest.mark.slow
def test_compiled_training_gives_the_eager_losses(tmp_path):
    """torch.compile (inductor's C++ code, the GELU in its sigmoid form) against eager, 4 steps."""
    over = tiny_overrides(train__iters="4", train__log_every="1", train__eval_every="4", train__ckpt_every="4")
    eager = train(load_config(None, over), tmp_path / "eager", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager would pass for the wrong reason
        compiled = train(load_config(None, [*over, "train.compile=true"]), tmp_path / "compiled", progress=False)
    assert compiled["compile_failed"] is None and compiled["compile_s"] > 0
    got, want = _losses(compiled, tmp_path / "compiled"), _losses(eager, tmp_path / "eager")
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        assert abs(g - w) < 1e-4
    assert abs(compiled["final_val_loss"] - eager["final_val_loss"]) < 1e-4
