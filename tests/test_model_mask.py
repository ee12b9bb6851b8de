"""GPT.forward with a key-padding mask and per-row positions: a padded batch equals each row run alone."""

from __future__ import annotations

import pytest
import torch

from scalelab.model.gpt import GPT, GPTConfig, KVCache

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = [[5, 1, 2, 3, 4, 6], [2], [3, 3, 1]]


def _model(recipe: str) -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(recipe=recipe, n_layer=2, n_head=2, n_embd=16, block_size=24, vocab_size=9,
                    bias=recipe == "gpt2", tie_embeddings=recipe == "gpt2")  # fmt: skip
    m = GPT(cfg)
    with torch.no_grad():  # the modern recipe's zero-initialised projections would hide position mistakes
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def _left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(map(len, rows))
    idx = torch.zeros(len(rows), L, dtype=torch.long)
    real = torch.zeros(len(rows), L, dtype=torch.bool)
    for b, r in enumerate(rows):
        idx[b, L - len(r) :] = torch.tensor(r)
        real[b, L - len(r) :] = True
    return idx, real


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_left_padded_batch_equals_rows_alone(recipe):
    m = _model(recipe)
    idx, real = _left_padded(ROWS)
    with torch.no_grad():
        batch, _ = m(idx, key_mask=real)
        for b, r in enumerate(ROWS):
            alone, _ = m(torch.tensor([r]))
            torch.testing.assert_close(batch[b, real[b]], alone[0], atol=1e-5, rtol=0)
        assert torch.isfinite(batch).all()  # pad queries see themselves: no empty softmax row
        plain, _ = m(idx)
        assert not torch.allclose(plain[1, -1], batch[1, -1], atol=1e-3)  # the mask matters


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_cached_decode_with_mask_equals_rows_alone(recipe):
    """Prefill a left-padded batch, then feed 3 tokens one at a time through the cache."""
    m = _model(recipe)
    idx, real = _left_padded(ROWS)
    new = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 0]])  # (B, 3)
    cache = KVCache(m.cfg, len(ROWS), "cpu", torch.float32)
    key_mask = torch.cat((real, torch.ones(len(ROWS), 3, dtype=torch.bool)), dim=1)
    with torch.no_grad():
        m(idx, cache=cache, key_mask=real)
        steps = [m(new[:, j : j + 1], cache=cache, key_mask=key_mask[:, : real.size(1) + j + 1])[0]
                 for j in range(3)]  # fmt: skip
        for b, r in enumerate(ROWS):
            alone, _ = m(torch.tensor([r + new[b].tolist()]))
            for j in range(3):
                torch.testing.assert_close(steps[j][b, 0], alone[0, len(r) + j], atol=1e-5, rtol=0)


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_explicit_positions_and_hooked_path(recipe):
    """Positions given explicitly equal the derived ones; the hooked (explicit) attention applies the mask too."""
    m = _model(recipe)
    idx, real = _left_padded(ROWS)
    pos = (real.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        a, _ = m(idx, key_mask=real)
        b, _ = m(idx, key_mask=real, positions=pos)
        (c, _), seen = m.run_with_cache(idx, key_mask=real, names=["blocks.0.attn.pattern"])
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=0)
    pattern = seen["blocks.0.attn.pattern"]  # (B, H, T, S)
    assert (pattern[1, :, -1, :-1] == 0).all()  # the one-token row's real query ignores every pad key
    assert torch.allclose(pattern.sum(-1), torch.ones(()))


def test_bad_mask_or_positions_shape():
    m = _model("gpt2")
    idx, real = _left_padded(ROWS)
    with pytest.raises(ValueError, match="key_mask"):
        m(idx, key_mask=real[:, 1:])
    with pytest.raises(ValueError, match="key_mask"):
        m(idx, key_mask=real.long())
    with pytest.raises(ValueError, match="positions"):
        m(idx, positions=torch.zeros(3, 2, dtype=torch.long))
