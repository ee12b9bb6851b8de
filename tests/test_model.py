import math

import pytest
import torch

from scalelab.config import ModelConfig
from scalelab.errors import UserError
from scalelab.flops import flops_per_token, mfu, peak_flops
from scalelab.model import GPT, GPTConfig, generate, resolve
from scalelab.model.sizes import LADDER, ladder_table, shape_for_size

REF = GPTConfig(recipe="gpt2", n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, bias=False)


def _modern(**kw):
    base = dict(recipe="modern", n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50, bias=False,
                mlp="relu2", tie_embeddings=False)
    base.update(kw)
    return GPTConfig(**base)


def _perturbed(cfg: GPTConfig, seed: int = 0) -> GPT:
    """A model whose zero-initialised projections (the modern head) are not zero, so outputs can differ."""
    torch.manual_seed(seed)
    m = GPT(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_reference_param_count_matches_minimal_trainer():
    counts = GPT(REF).param_counts()
    assert counts["params_flops"] == 795_904  # the "0.80M" such trainers print (no position embeddings)
    assert counts["params_nonembed"] == 12 * 4 * 128**2 + 9 * 128  # Kaplan's 12 L d^2, plus the norms


def test_flops_per_token_palm_formula():
    n = GPT(REF).param_counts()["params_flops"]
    assert flops_per_token(n, 4, 4, 32, 64) == 6 * n + 12 * 4 * 4 * 32 * 64
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("cpu") is None
    assert mfu(1e9, 1e5, 1e15) == pytest.approx(0.1) and mfu(1, 1, None) is None


def test_ladder_spans_1e4_to_1e9_at_fixed_aspect_ratio():
    rows = ladder_table()
    assert rows[0]["params_nonembed"] < 2e4 and rows[-1]["params_nonembed"] > 1e9
    assert all(r["n_embd"] == 32 * r["n_layer"] for r in rows)
    assert shape_for_size("s") == (4, 4, 128) and shape_for_size("xl") == (12, 6, 384)
    assert shape_for_size(1e6) == shape_for_size("s") and shape_for_size("L6")[0] == 6
    with pytest.raises(UserError, match="unknown model size"):
        shape_for_size("huge")
    assert set(LADDER) >= {"xs", "s", "m", "l"}


def test_resolve_recipe_defaults():
    g = resolve(ModelConfig(recipe="modern", size="xs"), vocab_size=257)
    assert (g.mlp, g.bias, g.tie_embeddings, g.n_layer) == ("relu2", False, False, 3)
    g2 = resolve(ModelConfig(), vocab_size=257)
    assert (g2.mlp, g2.bias, g2.tie_embeddings) == ("gelu", True, True)
    with pytest.raises(UserError, match="smaller than the tokenizer"):
        resolve(ModelConfig(vocab_size=10), vocab_size=257)


@pytest.mark.parametrize("cfg", [REF, _modern(), _modern(mlp="swiglu", logit_softcap=15.0)])
def test_forward_shapes_and_loss(cfg):
    m = _perturbed(cfg)
    x = torch.randint(0, cfg.vocab_size, (3, 10))
    logits, loss = m(x, x)
    assert logits.shape == (3, 10, cfg.vocab_size) and loss.ndim == 0
    _, per_tok = m(x, x, reduction="none")
    assert per_tok.shape == (3, 10) and torch.isclose(per_tok.mean(), loss)
    assert per_tok.std() > 1e-3  # per-token losses differ: the reduction is tested on distinct values


def test_modern_starts_uniform():
    m = GPT(_modern())
    x = torch.randint(0, 50, (2, 16))
    _, loss = m(x, x)
    assert loss.item() == pytest.approx(math.log(50), abs=1e-5)  # zero-initialised head


def test_hook_names_and_cached_pattern_is_causal_softmax():
    m = _perturbed(_modern())
    names = set(m.hook_points())
    for n in ("embed", "blocks.0.attn.pattern", "blocks.1.resid_post", "blocks.0.resid_pre", "final"):
        assert n in names
    x = torch.randint(0, 50, (2, 12))
    (logits, _), cache = m.run_with_cache(x, names=lambda n: n.endswith(("pattern", "resid_post")))
    pat = cache["blocks.1.attn.pattern"]
    assert pat.shape == (2, 2, 12, 12)
    assert torch.allclose(pat.sum(-1), torch.ones(2, 2, 12))
    assert pat.triu(1).abs().max() == 0
    assert cache["blocks.1.resid_post"].shape == (2, 12, 32)
    plain, _ = m(x)
    assert plain.abs().max() > 0.1  # not the all-zero logits of the untouched zero-initialised head
    assert torch.allclose(plain, logits, atol=1e-5)  # explicit attention == fused attention


def test_hook_intervention_changes_output():
    torch.manual_seed(0)
    m = GPT(REF)
    x = torch.randint(0, 65, (1, 8))
    base, _ = m(x)
    uniform = lambda p, name: torch.tril(torch.ones_like(p)) / torch.arange(1, p.size(-1) + 1).view(-1, 1)  # noqa: E731
    changed, _ = m.run_with_hooks(x, fwd_hooks=[("blocks.0.attn.pattern", uniform)])
    assert not torch.allclose(base, changed)
    with pytest.raises(KeyError, match="no hook point"):
        m.run_with_hooks(x, fwd_hooks=[("blocks.9.attn.pattern", uniform)])
    again, _ = m(x)
    assert torch.allclose(base, again)  # hooks removed afterwards


@pytest.mark.parametrize("cfg", [REF, _modern()])
def test_kv_cache_matches_recompute(cfg, one_torch_thread):
    m = _perturbed(cfg, seed=1)
    x = torch.randint(0, cfg.vocab_size, (2, 4))
    a = generate(m, x, cfg.block_size + 5, temperature=0)  # runs past the context: sliding window
    b = generate(m, x, cfg.block_size + 5, temperature=0, use_cache=False)
    assert torch.equal(a, b)
    g1 = generate(m, x, 6, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    g2 = generate(m, x, 6, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(g1, g2)


def test_too_long_input_raises():
    m = GPT(_modern())
    with pytest.raises(ValueError, match="exceeds the context"):
        m(torch.zeros(1, 17, dtype=torch.long))
