"""The chunked cross-entropy equals the plain loss and its gradients (issue 13)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalelab.model import loss as loss_mod
from scalelab.model.gpt import GPT, GPTConfig
from scalelab.model.loss import chunked_cross_entropy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("recipe,softcap", [("gpt2", None), ("modern", None), ("modern", 15.0)])
def test_chunked_loss_equals_plain_loss_and_gradient(monkeypatch, recipe, softcap):
    monkeypatch.setattr(loss_mod, "MAX_CHUNK_ELEMENTS", 301 * 7)  # 7 rows per chunk: 51 rows -> 8 chunks
    torch.manual_seed(0)
    cfg = GPTConfig(recipe=recipe, n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=301,
                    mlp="gelu" if recipe == "gpt2" else "swiglu", bias=recipe == "gpt2",
                    tie_embeddings=recipe == "gpt2", logit_softcap=softcap)  # fmt: skip
    model = GPT(cfg)
    with torch.no_grad():  # the modern recipe zero-initialises output projections; make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    idx = torch.randint(0, 301, (3, 17))
    targets = torch.randint(0, 301, (3, 17))
    targets[0, :5] = -1  # ignored positions
    _, plain = model(idx, targets)
    plain.backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    logits, chunked = model(idx, targets, return_logits=False)
    chunked.backward()
    got = _grads(model)
    assert logits is None
    assert abs(chunked.item() - plain.item()) <= 1e-6
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6, msg=name)


def test_chunked_loss_on_raw_tensors_in_double_precision():
    torch.manual_seed(1)
    x = torch.randn(40, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (40,))
    t[::7] = -1
    got = chunked_cross_entropy(x, w, t, max_chunk_elements=50 * 6)
    gx, gw = torch.autograd.grad(got * 3.0, (x, w))  # an upstream gradient other than 1
    want = F.cross_entropy(x @ w.t(), t, ignore_index=-1)
    wx, ww = torch.autograd.grad(want * 3.0, (x, w))
    assert abs(got.item() - want.item()) < 1e-12
    torch.testing.assert_close(gx, wx, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, ww, rtol=0, atol=1e-12)
    with torch.no_grad():  # no gradient asked: the loss alone, the same value
        assert abs(chunked_cross_entropy(x, w, t, max_chunk_elements=50 * 6).item() - want.item()) < 1e-12


def test_one_chunk_uses_the_plain_loss_with_the_same_value_and_gradients():
    """Rows that fit in one chunk (a 65-character vocabulary) take torch's own loss: same numbers."""
    torch.manual_seed(2)
    x = torch.randn(48, 16, requires_grad=True)
    w = torch.randn(65, 16, requires_grad=True)
    t = torch.randint(0, 65, (48,))
    t[::5] = -1
    one = chunked_cross_entropy(x, w, t)
    assert one.grad_fn is not None and "ChunkedLinearCE" not in type(one.grad_fn).__name__
    g1 = torch.autograd.grad(one, (x, w))
    many = chunked_cross_entropy(x, w, t, max_chunk_elements=65 * 5)  # 10 chunks, the hand-written pass
    assert "ChunkedLinearCE" in type(many.grad_fn).__name__
    g2 = torch.autograd.grad(many, (x, w))
    assert abs(one.item() - many.item()) <= 1e-6
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
