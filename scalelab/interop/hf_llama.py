"""scalelab's `modern` recipe <-> the Llama family (Llama, Mistral, Qwen2, Qwen3), both ways.

The Llama family is pre-norm RMSNorm + rotary + SwiGLU (Touvron et al. 2023, arXiv 2302.13971);
Qwen3 adds a per-head RMSNorm of queries and keys (QK-norm). scalelab's `modern` recipe computes the
same function once these differences are absorbed into the weights or the config, exactly:

1. scalelab may RMS-normalise the input embedding (`embed_norm`, on by default); the Llama family does
   not. A function of the token alone: the exported table holds the normalised rows. An imported
   model gets `embed_norm=False` unless its rows already have RMS 1 (a scalelab export).
2. scalelab's norms have no weights. An export writes weights of one; an import folds each pre-norm
   weight into the linear layers that read the norm's output (q/k/v, gate/up, the output head).
   The final norm's weight cannot be folded into a head tied to the input embedding: such a model
   is imported untied (the same function, one more table), unless that weight is all ones.
3. scalelab rotates (x1, x2) by -theta, HF's `rotate_half` by +theta. Negating the second half of
   every query and key head (rows and biases of q_proj and k_proj) turns one into the other: the
   rotated vectors differ only in the sign of their second halves, which cancels in q . k (and
   RMS-norm commutes with the sign change).
4. Grouped-query attention (`num_key_value_heads` < heads, Ainslie et al. 2023, arXiv 2305.13245):
   scalelab has one key/value head per query head, so each K/V head's weights are repeated into the
   query heads that share it. The logits are identical; the K/V weights (and the KV cache) grow by
   heads / kv_heads.
5. Biases: scalelab's `bias` puts one on every linear layer; a model with biases on some (Qwen2: q, k,
   v only) imports with zeros on the others.
6. A sliding attention window (Mistral) equals full attention on sequences no longer than the window:
   the imported context is capped at the window.

What has no equivalent (another rope type or scaling, a head_dim other than hidden/heads, an
activation other than SiLU, QK-norm weights other than one) is refused by name.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from scalelab.errors import UserError
from scalelab.model.gpt import GPTConfig

FAMILY = ("llama", "mistral", "qwen2", "qwen3")
ROPE_THETA, EPS_RMS = 10000.0, 1e-6  # scalelab's defaults (model/gpt.py)


def swiglu_hidden(n_embd: int) -> int:
    """scalelab's default SwiGLU width (model/gpt.py MLP): 8/3 of the width rounded up to a multiple of 8."""
    return int(8 * n_embd / 3 + 7) // 8 * 8


def mlp_width(cfg: GPTConfig) -> int:
    return cfg.mlp_hidden or swiglu_hidden(cfg.n_embd)


def eps(cfg: GPTConfig) -> float:
    return cfg.norm_eps or EPS_RMS


# ----------------------------------------------------------------------------- export


def family_for(cfg: GPTConfig) -> str:
    """'qwen3' (QK-norm on) or 'llama' (off) for a modern config, or a UserError naming what has no equivalent."""
    problems = []
    if cfg.mlp != "swiglu":
        problems.append(f"model.mlp={cfg.mlp!r} (ReLU^2 and GELU MLPs are not gated: the Llama family needs "
                        "'swiglu')")  # fmt: skip
    if cfg.bias and cfg.qk_norm:
        problems.append("model.bias=true with QK-norm (Qwen3 has no MLP biases: use model.bias=false, or "
                        "model.qk_norm=false to export as Llama, which has them)")  # fmt: skip
    if cfg.tie_embeddings and cfg.embed_norm:
        problems.append("model.tie_embeddings=true (scalelab normalises the input embedding but not the "
                        "output head, so the two cannot share one table: use model.tie_embeddings=false, or "
                        "model.embed_norm=false)")  # fmt: skip
    if problems:
        raise UserError("the modern recipe exports as Qwen3 (with QK-norm) or Llama (without) only with "
                        "standard options; not exportable: " + "; ".join(problems))  # fmt: skip
    return "qwen3" if cfg.qk_norm else "llama"


def hf_config(cfg: GPTConfig, arch: str, common: dict):
    import transformers

    kwargs = dict(
        hidden_size=cfg.n_embd, intermediate_size=mlp_width(cfg), num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.block_size, rms_norm_eps=eps(cfg), attention_bias=cfg.bias,
        attention_dropout=cfg.dropout, rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        **common,
    )  # fmt: skip
    if arch == "qwen3":
        return transformers.Qwen3Config(use_sliding_window=False, **kwargs)
    return transformers.LlamaConfig(mlp_bias=cfg.bias, **kwargs)


def flip_second_halves(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Negate rows D/2..D-1 of every head of a (H*D, C) query or key projection, or of its (H*D,) bias
    (its own inverse)."""
    rows = w.reshape(n_head, 2, -1, *w.shape[1:]).clone()  # (H, 2, D/2[, C])
    rows[:, 1] = -rows[:, 1]
    return rows.view_as(w)


def to_hf_state(sd: dict[str, torch.Tensor], cfg: GPTConfig, arch: str) -> dict[str, torch.Tensor]:
    """scalelab state dict (fp32 copies) -> the Llama/Qwen3 model's state dict."""
    C, D, H, out = cfg.n_embd, cfg.head_dim, cfg.n_head, {}
    wte = sd["wte.weight"]
    out["model.embed_tokens.weight"] = F.rms_norm(wte, (C,), eps=eps(cfg)) if cfg.embed_norm else wte
    for i in range(cfg.n_layer):
        s, h = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = sd[s + "attn.c_attn.weight"].split(C, dim=0)
        out[h + "self_attn.q_proj.weight"] = flip_second_halves(q, H)
        out[h + "self_attn.k_proj.weight"] = flip_second_halves(k, H)
        out[h + "self_attn.v_proj.weight"] = v.contiguous()
        out[h + "self_attn.o_proj.weight"] = sd[s + "attn.c_proj.weight"]
        if cfg.bias:
            bq, bk, bv = sd[s + "attn.c_attn.bias"].split(C)
            out[h + "self_attn.q_proj.bias"] = flip_second_halves(bq, H)
            out[h + "self_attn.k_proj.bias"] = flip_second_halves(bk, H)
            out[h + "self_attn.v_proj.bias"] = bv.contiguous()
            out[h + "self_attn.o_proj.bias"] = sd[s + "attn.c_proj.bias"]
            for mod, hf in (("c_gate", "gate_proj"), ("c_fc", "up_proj"), ("c_proj", "down_proj")):
                out[h + f"mlp.{hf}.bias"] = sd[s + f"mlp.{mod}.bias"]
        if arch == "qwen3":
            out[h + "self_attn.q_norm.weight"] = torch.ones(D)
            out[h + "self_attn.k_norm.weight"] = torch.ones(D)
        out[h + "input_layernorm.weight"] = torch.ones(C)
        out[h + "post_attention_layernorm.weight"] = torch.ones(C)
        for mod, hf in (("c_gate", "gate_proj"), ("c_fc", "up_proj"), ("c_proj", "down_proj")):
            out[h + f"mlp.{hf}.weight"] = sd[s + f"mlp.{mod}.weight"]
    out["model.norm.weight"] = torch.ones(C)
    out["lm_head.weight"] = sd["lm_head.weight"]
    return out


# ----------------------------------------------------------------------------- import


def _rope(hf) -> tuple[str, float | None]:
    """(rope type, theta) from a transformers 5 (`rope_parameters`) or 4 (`rope_theta`) config."""
    params = getattr(hf, "rope_parameters", None) or {}
    scaling = getattr(hf, "rope_scaling", None) or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    return kind, params.get("rope_theta", getattr(hf, "rope_theta", None))


def _context(hf) -> int:
    """The positions over which scalelab's full causal attention computes what the HF model computes."""
    window = getattr(hf, "sliding_window", None)
    uses_window = hf.model_type == "mistral" or getattr(hf, "use_sliding_window", False)
    if uses_window and window:
        return min(hf.max_position_embeddings, window)
    return hf.max_position_embeddings


def config_from_hf(hf) -> GPTConfig:
    """The modern GPTConfig for a Llama-family HF config, or a UserError naming what differs. Biases,
    embedding norm and tying are settled from the weights afterwards (`settle_from_weights`)."""
    C, H = hf.hidden_size, hf.num_attention_heads
    n_kv = getattr(hf, "num_key_value_heads", None) or H
    head_dim = getattr(hf, "head_dim", None) or C // H
    rope_type, theta = _rope(hf)
    checks = [
        (C % H == 0 and head_dim == C // H, f"head_dim={head_dim} (scalelab uses hidden_size/heads={C // H})"),
        (H % n_kv == 0, f"num_key_value_heads={n_kv} does not divide num_attention_heads={H}"),
        ((C // H) % 2 == 0, f"an odd head dimension {C // H} (rotary needs an even one)"),
        (hf.hidden_act == "silu", f"hidden_act={hf.hidden_act!r} (SwiGLU needs 'silu')"),
        (rope_type == "default" and theta, f"rope_type={rope_type!r} (scalelab has the default rotary only, "
                                           "no scaling)"),
        (getattr(hf, "pretraining_tp", 1) in (None, 1), f"pretraining_tp={getattr(hf, 'pretraining_tp', 1)}"),
    ]  # fmt: skip
    bad = [why for ok, why in checks if not ok]
    if bad:
        raise UserError(f"this {hf.model_type} model has options scalelab's modern recipe cannot compute: "
                        + "; ".join(bad))  # fmt: skip
    return GPTConfig(recipe="modern", n_layer=hf.num_hidden_layers, n_head=H, n_embd=C, block_size=_context(hf),
                     vocab_size=hf.vocab_size, bias=False, mlp="swiglu", tie_embeddings=False,
                     qk_norm=hf.model_type == "qwen3", embed_norm=False, rope_theta=float(theta),
                     norm_eps=None if hf.rms_norm_eps == EPS_RMS else float(hf.rms_norm_eps),
                     mlp_hidden=None if hf.intermediate_size == swiglu_hidden(C) else hf.intermediate_size)  # fmt: skip


def settle_from_weights(cfg: GPTConfig, hsd: dict[str, torch.Tensor], tied: bool) -> GPTConfig:
    """Biases, embedding norm and tying as the weights have them (see the module docstring, 1, 2, 5)."""
    emb = hsd["model.embed_tokens.weight"].float()
    rms = emb.pow(2).mean(-1).add(eps(cfg)).sqrt()
    embed_norm = bool((rms - 1).abs().max() < 1e-4)  # a scalelab export: its rows are normalised
    final = hsd["model.norm.weight"]
    keep_tied = tied and not embed_norm and bool((final == 1).all())
    bias = any(k.endswith(".bias") for k in hsd)
    return dataclasses.replace(cfg, bias=bias, embed_norm=embed_norm, tie_embeddings=keep_tied)


def from_hf_state(hsd: dict[str, torch.Tensor], cfg: GPTConfig, n_kv_head: int | None) -> dict:
    """The Llama-family state dict -> scalelab's (fp32), for a config from `settle_from_weights`."""
    hsd = {k: v.detach().float() for k, v in hsd.items()}
    C, H, D, out = cfg.n_embd, cfg.n_head, cfg.head_dim, {}
    out["wte.weight"] = hsd["model.embed_tokens.weight"]
    rep = H // (n_kv_head or H)

    def kv_heads(w: torch.Tensor) -> torch.Tensor:  # (Hkv*D[, C]) -> (H*D[, C]): GQA -> one K/V per head
        return w.reshape(-1, D, *w.shape[1:]).repeat_interleave(rep, dim=0).reshape(H * D, *w.shape[1:])

    for i in range(cfg.n_layer):
        s, h = f"blocks.{i}.", f"model.layers.{i}."
        if cfg.qk_norm:
            for norm in ("q_norm", "k_norm"):
                if (hsd[h + f"self_attn.{norm}.weight"] - 1).abs().max() > 1e-6:
                    raise UserError(f"layer {i} has {norm} weights other than 1; scalelab's QK-norm has no "
                                    "weights, so this model computes another function")  # fmt: skip
        g1, g2 = hsd[h + "input_layernorm.weight"], hsd[h + "post_attention_layernorm.weight"]
        q, k, v = (hsd[h + f"self_attn.{n}_proj.weight"] * g1 for n in "qkv")  # fold the pre-norm weight
        out[s + "attn.c_attn.weight"] = torch.cat([flip_second_halves(q, H), flip_second_halves(kv_heads(k), H),
                                                   kv_heads(v)])  # fmt: skip
        out[s + "attn.c_proj.weight"] = hsd[h + "self_attn.o_proj.weight"]
        out[s + "mlp.c_gate.weight"] = hsd[h + "mlp.gate_proj.weight"] * g2
        out[s + "mlp.c_fc.weight"] = hsd[h + "mlp.up_proj.weight"] * g2
        out[s + "mlp.c_proj.weight"] = hsd[h + "mlp.down_proj.weight"]
        if cfg.bias:

            def bias(name: str, size: int, h: str = h) -> torch.Tensor:  # zeros where the HF layer has none
                return hsd.get(h + name + ".bias", torch.zeros(size))

            bq = bias("self_attn.q_proj", H * D)
            bk, bv = (kv_heads(bias(f"self_attn.{n}_proj", H * D // rep)) for n in "kv")
            out[s + "attn.c_attn.bias"] = torch.cat([flip_second_halves(bq, H), flip_second_halves(bk, H), bv])
            out[s + "attn.c_proj.bias"] = bias("self_attn.o_proj", C)
            out[s + "mlp.c_gate.bias"] = bias("mlp.gate_proj", mlp_width(cfg))
            out[s + "mlp.c_fc.bias"] = bias("mlp.up_proj", mlp_width(cfg))
            out[s + "mlp.c_proj.bias"] = bias("mlp.down_proj", C)
    head = hsd.get("lm_head.weight", out["wte.weight"])
    out["lm_head.weight"] = out["wte.weight"] if cfg.tie_embeddings else head * hsd["model.norm.weight"]
    return out
