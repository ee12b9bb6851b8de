"""The size ladder and the resolution of a `ModelConfig` into a concrete `GPTConfig`.

Sizes grow by depth at a fixed aspect ratio d_model / n_layer = 32 (Kaplan et al. 2020 found
loss insensitive to the aspect ratio over a wide range), so one number, the depth, names a
model. Non-embedding parameters are about 12 * L * d^2 = 12288 * L^3: from about 10^4 ('3xs',
one layer) to about 10^9 ('6xl', 48 layers). 's' (4 layers, width 128, 4 heads) is the classic
character-level Shakespeare model.
"""

from __future__ import annotations

import math

from scalelab.config import ModelConfig
from scalelab.errors import UserError
from scalelab.model.gpt import GPTConfig

ASPECT_RATIO = 32

# name -> depth; width = ASPECT_RATIO * depth
LADDER: dict[str, int] = {
    "3xs": 1, "2xs": 2, "xs": 3, "s": 4, "m": 6, "l": 8, "xl": 12,
    "2xl": 16, "3xl": 24, "4xl": 32, "5xl": 40, "6xl": 48,
}  # fmt: skip


def shape_for_depth(n_layer: int) -> tuple[int, int, int]:
    """(n_layer, n_head, n_embd) at the ladder's aspect ratio; heads of 32 dims up to width 256, then 64."""
    d = ASPECT_RATIO * n_layer
    head_dim = 32 if d <= 256 else 64
    return n_layer, max(1, d // head_dim), d


def nonembed_params_estimate(n_layer: int) -> int:
    """12 L d^2, Kaplan et al. (2020) eq. 2.1 without biases and norms."""
    return 12 * n_layer * (ASPECT_RATIO * n_layer) ** 2


def shape_for_size(size: str | int | float) -> tuple[int, int, int]:
    """A ladder name ('s'), a depth ('L6') or a non-embedding parameter count (1e6, '1e6')."""
    if isinstance(size, str) and size in LADDER:
        return shape_for_depth(LADDER[size])
    if isinstance(size, str) and size[:1] in "Ll" and size[1:].isdigit():
        return shape_for_depth(int(size[1:]))
    try:
        n = float(size)
    except (TypeError, ValueError):
        raise UserError(
            f"unknown model size {size!r}; use a ladder name ({', '.join(LADDER)}), a depth like 'L6', "
            "or a non-embedding parameter count like 1e6"
        ) from None
    if n < 1e3:
        raise UserError(f"model size {size!r} is below the smallest model (about 1.2e4 parameters)")
    depth = max(1, round((n / nonembed_params_estimate(1)) ** (1 / 3)))
    return shape_for_depth(depth)


def resolve(cfg: ModelConfig, vocab_size: int) -> GPTConfig:
    """Fill recipe defaults and the ladder shape; `vocab_size` comes from the tokenizer."""
    modern = cfg.recipe == "modern"
    if cfg.size is not None:
        n_layer, n_head, n_embd = shape_for_size(cfg.size)
    else:
        n_layer, n_head, n_embd = cfg.n_layer, cfg.n_head, cfg.n_embd
    vocab = cfg.vocab_size or vocab_size
    if vocab < vocab_size:
        raise UserError(f"model.vocab_size={vocab} is smaller than the tokenizer's {vocab_size}; raise or unset it")
    if modern and (n_embd // n_head) % 2:
        raise UserError(f"rotary positions need an even head dimension; n_embd/n_head = {n_embd // n_head}")
    modern_only = [k for k in ("qk_norm", "embed_norm", "rope_theta") if getattr(cfg, k) is not None]
    if modern_only and not modern:
        raise UserError(f"model.{modern_only[0]} applies to the modern recipe only; unset it or set "
                        "model.recipe='modern'")  # fmt: skip
    return GPTConfig(
        recipe=cfg.recipe,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        block_size=cfg.block_size,
        vocab_size=vocab,
        dropout=cfg.dropout,
        bias=(not modern) if cfg.bias is None else cfg.bias,
        mlp=cfg.mlp or ("relu2" if modern else "gelu"),
        logit_softcap=cfg.logit_softcap,
        tie_embeddings=(not modern) if cfg.tie_embeddings is None else cfg.tie_embeddings,
        qk_norm=cfg.qk_norm is not False,
        embed_norm=cfg.embed_norm is not False,
        rope_theta=cfg.rope_theta or 10000.0,
        norm_eps=cfg.norm_eps,
        mlp_hidden=cfg.mlp_hidden,
    )


def ladder_table() -> list[dict]:
    """One row per rung: name, depth, heads, width, approximate non-embedding parameters."""
    rows = []
    for name, depth in LADDER.items():
        L, H, d = shape_for_depth(depth)
        rows.append({"name": name, "n_layer": L, "n_head": H, "n_embd": d,
                     "params_nonembed": nonembed_params_estimate(depth),
                     "log10": round(math.log10(nonembed_params_estimate(depth)), 2)})  # fmt: skip
    return rows
