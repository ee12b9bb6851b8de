"""The mapping between scalelab's GPT and the standard Hugging Face architectures, both ways.

- `gpt2` recipe <-> `GPT2LMHeadModel` (Radford et al. 2019): the same computation; HF keeps its
  linear weights as Conv1D, (in, out), so they are transposed; a bias-free scalelab model gets
  zero biases.
- `modern` recipe <-> `Qwen3ForCausalLM` (rotary, RMSNorm, SwiGLU, QK-norm): the same computation
  once three differences are absorbed into the weights, exactly:
  1. scalelab normalises the input embedding (weight-free RMSNorm); Qwen3 does not. A per-token
     function of the token alone, so the exported table holds the normalised rows.
  2. scalelab's norms have no weights; Qwen3's get weights of one (and an import folds Qwen3's
     pre-norm weights into the linear layers that read the norm's output).
  3. scalelab rotates (x1, x2) by -theta, Qwen3 (`rotate_half`) by +theta. Negating the second half
     of every query and key head (rows of q_proj and k_proj) turns one into the other: the rotated
     vectors differ only in the sign of their second halves, which cancels in q . k, and RMS-norm
     commutes with the sign change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scalelab.errors import UserError
from scalelab.model.gpt import GPTConfig

ROPE_THETA = 10000.0  # scalelab.model.gpt.rotary_tables' base
EPS_LAYERNORM, EPS_RMS = 1e-5, 1e-6


def swiglu_hidden(n_embd: int) -> int:
    """scalelab's SwiGLU width (model/gpt.py MLP): 8/3 of the width rounded up to a multiple of 8."""
    return int(8 * n_embd / 3 + 7) // 8 * 8


def architecture_for(cfg: GPTConfig) -> str:
    """'gpt2' or 'qwen3', or a UserError naming the option that has no standard equivalent."""
    if cfg.logit_softcap:
        raise UserError(f"model.logit_softcap={cfg.logit_softcap} has no equivalent in GPT-2 or Llama/Qwen3 models; "
                        "export a model trained without it (model.logit_softcap unset)")  # fmt: skip
    if cfg.recipe == "gpt2":
        if cfg.mlp != "gelu":
            raise UserError(f"model.mlp={cfg.mlp!r} with the gpt2 recipe has no standard equivalent (GPT-2 "
                            "uses GELU); export a gpt2 model with model.mlp='gelu', or a modern one with "
                            "'swiglu'")  # fmt: skip
        return "gpt2"
    problems = []
    if cfg.mlp != "swiglu":
        problems.append(f"model.mlp={cfg.mlp!r} (ReLU^2 and GELU MLPs are not gated: Llama/Qwen3 need 'swiglu')")
    if cfg.bias:
        problems.append("model.bias=true (Qwen3 has no MLP biases: use model.bias=false)")
    if cfg.tie_embeddings:
        problems.append("model.tie_embeddings=true (scalelab normalises the input embedding but not the "
                        "output head, so the two cannot share one table in Qwen3: use "
                        "model.tie_embeddings=false)")  # fmt: skip
    if problems:
        raise UserError("the modern recipe exports as Qwen3 (rotary + RMSNorm + SwiGLU + QK-norm) only with "
                        "standard options; not exportable: " + "; ".join(problems))  # fmt: skip
    return "qwen3"


def hf_config(cfg: GPTConfig, arch: str, eot_id: int):
    """The transformers config of the equivalent architecture."""
    import transformers

    common = {"vocab_size": cfg.vocab_size, "bos_token_id": eot_id, "eos_token_id": eot_id,
              "tie_word_embeddings": cfg.tie_embeddings}  # fmt: skip
    if arch == "gpt2":
        return transformers.GPT2Config(
            n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head, n_inner=None,
            activation_function="gelu_new", resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
            layer_norm_epsilon=EPS_LAYERNORM, **common,
        )  # fmt: skip
    return transformers.Qwen3Config(
        hidden_size=cfg.n_embd, intermediate_size=swiglu_hidden(cfg.n_embd), num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head, head_dim=cfg.head_dim, hidden_act="silu",
        max_position_embeddings=cfg.block_size, rms_norm_eps=EPS_RMS, attention_bias=False,
        attention_dropout=cfg.dropout, use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA}, **common,
    )  # fmt: skip


def _flip_second_halves(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Negate rows D/2..D-1 of every head of a (H*D, C) query or key projection (its own inverse)."""
    rows = w.view(n_head, 2, -1, w.size(-1)).clone()  # (H, 2, D/2, C)
    rows[:, 1] = -rows[:, 1]
    return rows.view_as(w)


def to_hf_state(sd: dict[str, torch.Tensor], cfg: GPTConfig, arch: str) -> dict[str, torch.Tensor]:
    """scalelab state dict -> the HF model's state dict (fp32 copies)."""
    sd = {k: v.detach().float().clone() for k, v in sd.items()}
    C, out = cfg.n_embd, {}
    if arch == "gpt2":
        zeros = torch.zeros
        out["transformer.wte.weight"] = sd["wte.weight"]
        out["transformer.wpe.weight"] = sd["wpe.weight"]
        for i in range(cfg.n_layer):
            s, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ln in ("ln_1", "ln_2"):
                out[h + ln + ".weight"] = sd[s + ln + ".weight"]
                out[h + ln + ".bias"] = sd.get(s + ln + ".bias", zeros(C))
            for mod, hf in (("attn.c_attn", "attn.c_attn"), ("attn.c_proj", "attn.c_proj"), ("mlp.c_fc", "mlp.c_fc"),
                            ("mlp.c_proj", "mlp.c_proj")):  # fmt: skip
                w = sd[s + mod + ".weight"]  # (out, in) -> Conv1D (in, out)
                out[h + hf + ".weight"] = w.t().contiguous()
                out[h + hf + ".bias"] = sd.get(s + mod + ".bias", zeros(w.size(0)))
        out["transformer.ln_f.weight"] = sd["ln_f.weight"]
        out["transformer.ln_f.bias"] = sd.get("ln_f.bias", zeros(C))
        out["lm_head.weight"] = sd["lm_head.weight"]
        return out
    ones, D = torch.ones, cfg.head_dim
    out["model.embed_tokens.weight"] = F.rms_norm(sd["wte.weight"], (C,), eps=EPS_RMS)
    for i in range(cfg.n_layer):
        s, h = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = sd[s + "attn.c_attn.weight"].split(C, dim=0)
        out[h + "self_attn.q_proj.weight"] = _flip_second_halves(q, cfg.n_head)
        out[h + "self_attn.k_proj.weight"] = _flip_second_halves(k, cfg.n_head)
        out[h + "self_attn.v_proj.weight"] = v.contiguous()
        out[h + "self_attn.o_proj.weight"] = sd[s + "attn.c_proj.weight"]
        out[h + "self_attn.q_norm.weight"] = ones(D)
        out[h + "self_attn.k_norm.weight"] = ones(D)
        out[h + "input_layernorm.weight"] = ones(C)
        out[h + "post_attention_layernorm.weight"] = ones(C)
        out[h + "mlp.gate_proj.weight"] = sd[s + "mlp.c_gate.weight"]
        out[h + "mlp.up_proj.weight"] = sd[s + "mlp.c_fc.weight"]
        out[h + "mlp.down_proj.weight"] = sd[s + "mlp.c_proj.weight"]
    out["model.norm.weight"] = ones(C)
    out["lm_head.weight"] = sd["lm_head.weight"]
    return out


# ----------------------------------------------------------------------------- import


def _rope(hf) -> tuple[str, float | None]:
    """(rope type, theta) from a transformers 5 (`rope_parameters`) or 4 (`rope_theta`) config."""
    params = getattr(hf, "rope_parameters", None) or {}
    scaling = getattr(hf, "rope_scaling", None) or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    return kind, params.get("rope_theta", getattr(hf, "rope_theta", None))


def gpt_config_from_hf(hf) -> GPTConfig:
    """The scalelab GPTConfig computing what the HF config describes, or a UserError naming what differs."""
    kind = hf.model_type
    if kind == "gpt2":
        bad = []
        if hf.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            bad.append(f"activation_function={hf.activation_function!r} (scalelab's gpt2 uses tanh-GELU)")
        if hf.n_inner not in (None, 4 * hf.n_embd):
            bad.append(f"n_inner={hf.n_inner} (scalelab's MLP is 4 x n_embd = {4 * hf.n_embd})")
        if abs(hf.layer_norm_epsilon - EPS_LAYERNORM) > 1e-9:
            bad.append(f"layer_norm_epsilon={hf.layer_norm_epsilon} (scalelab uses {EPS_LAYERNORM})")
        if not hf.scale_attn_weights or hf.scale_attn_by_inverse_layer_idx:
            bad.append("attention scaling other than 1/sqrt(head_dim)")
        if bad:
            raise UserError("this GPT-2 model differs from scalelab's gpt2 recipe: " + "; ".join(bad))
        return GPTConfig(recipe="gpt2", n_layer=hf.n_layer, n_head=hf.n_head, n_embd=hf.n_embd,
                         block_size=hf.n_positions, vocab_size=hf.vocab_size, bias=True, mlp="gelu",
                         tie_embeddings=bool(hf.tie_word_embeddings))  # fmt: skip
    if kind in ("llama", "mistral", "qwen2"):
        raise UserError(
            f"a {kind} model has no QK-norm, and scalelab's modern recipe always normalises queries and keys "
            "(and the input embedding), so it cannot compute the same function; import GPT-2 models, or Qwen3 "
            "models exported by scalelab. (Needs GPTConfig.qk_norm / embed_norm options in scalelab/model/gpt.py.)"
        )
    if kind != "qwen3":
        raise UserError(f"model_type {kind!r} cannot be imported; scalelab imports 'gpt2' and 'qwen3' folders")
    C, H = hf.hidden_size, hf.num_attention_heads
    rope_type, theta = _rope(hf)
    checks = [
        (hf.head_dim == C // H and C % H == 0, f"head_dim={hf.head_dim} (scalelab uses hidden_size/heads={C // H})"),
        (hf.intermediate_size == swiglu_hidden(C),
         f"intermediate_size={hf.intermediate_size} (scalelab's SwiGLU width for {C} is {swiglu_hidden(C)})"),
        (hf.hidden_act == "silu", f"hidden_act={hf.hidden_act!r} (SwiGLU needs 'silu')"),
        (rope_type == "default" and theta == ROPE_THETA, f"rope {rope_type} theta={theta} (scalelab: default, 1e4)"),
        (not hf.attention_bias, "attention_bias=true"),
        (not getattr(hf, "use_sliding_window", False), "use_sliding_window=true"),
        (not hf.tie_word_embeddings, "tie_word_embeddings=true"),
        (abs(hf.rms_norm_eps - EPS_RMS) < 1e-12, f"rms_norm_eps={hf.rms_norm_eps} (scalelab uses {EPS_RMS})"),
    ]  # fmt: skip
    bad = [why for ok, why in checks if not ok]
    if bad:
        raise UserError("this Qwen3 model differs from scalelab's modern recipe: " + "; ".join(bad))
    return GPTConfig(recipe="modern", n_layer=hf.num_hidden_layers, n_head=H, n_embd=C,
                     block_size=hf.max_position_embeddings, vocab_size=hf.vocab_size, bias=False, mlp="swiglu",
                     tie_embeddings=False)  # fmt: skip


def from_hf_state(hsd: dict[str, torch.Tensor], cfg: GPTConfig, n_kv_head: int | None = None) -> dict:
    """The HF model's state dict -> scalelab's (fp32), for a config from `gpt_config_from_hf`."""
    hsd = {k: v.detach().float() for k, v in hsd.items()}
    C, out = cfg.n_embd, {}
    if cfg.recipe == "gpt2":
        out["wte.weight"], out["wpe.weight"] = hsd["transformer.wte.weight"], hsd["transformer.wpe.weight"]
        for i in range(cfg.n_layer):
            s, h = f"blocks.{i}.", f"transformer.h.{i}."
            for ln in ("ln_1", "ln_2"):
                out[s + ln + ".weight"], out[s + ln + ".bias"] = hsd[h + ln + ".weight"], hsd[h + ln + ".bias"]
            for mod in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                out[s + mod + ".weight"] = hsd[h + mod + ".weight"].t().contiguous()
                out[s + mod + ".bias"] = hsd[h + mod + ".bias"]
        out["ln_f.weight"], out["ln_f.bias"] = hsd["transformer.ln_f.weight"], hsd["transformer.ln_f.bias"]
        out["lm_head.weight"] = hsd.get("lm_head.weight", out["wte.weight"])
        return out
    emb = hsd["model.embed_tokens.weight"]
    rms = emb.pow(2).mean(-1).sqrt()
    if (rms - 1).abs().max() > 1e-3:
        raise UserError(f"the input embedding rows have RMS {rms.min():.3g}..{rms.max():.3g}, not 1: scalelab's "
                        "modern recipe normalises the embedding, so this model computes another function "
                        "(only Qwen3 models exported by scalelab import exactly)")  # fmt: skip
    out["wte.weight"] = emb
    H, D = cfg.n_head, cfg.head_dim
    rep = H // (n_kv_head or H)
    for i in range(cfg.n_layer):
        s, h = f"blocks.{i}.", f"model.layers.{i}."
        for norm in ("q_norm", "k_norm"):
            w = hsd[h + f"self_attn.{norm}.weight"]
            if (w - 1).abs().max() > 1e-6:
                raise UserError(f"layer {i} has {norm} weights other than 1; scalelab's QK-norm has no weights, "
                                "so this model computes another function")  # fmt: skip
        g1, g2 = hsd[h + "input_layernorm.weight"], hsd[h + "post_attention_layernorm.weight"]
        q = hsd[h + "self_attn.q_proj.weight"] * g1  # fold the pre-norm weight into the reading layers
        k, v = (hsd[h + f"self_attn.{n}_proj.weight"] * g1 for n in ("k", "v"))
        k, v = (w.view(-1, D, C).repeat_interleave(rep, dim=0).reshape(H * D, C) for w in (k, v))  # GQA -> MHA
        out[s + "attn.c_attn.weight"] = torch.cat([_flip_second_halves(q, H), _flip_second_halves(k, H), v])
        out[s + "attn.c_proj.weight"] = hsd[h + "self_attn.o_proj.weight"]
        out[s + "mlp.c_gate.weight"] = hsd[h + "mlp.gate_proj.weight"] * g2
        out[s + "mlp.c_fc.weight"] = hsd[h + "mlp.up_proj.weight"] * g2
        out[s + "mlp.c_proj.weight"] = hsd[h + "mlp.down_proj.weight"]
    out["lm_head.weight"] = hsd["lm_head.weight"] * hsd["model.norm.weight"]
    return out
