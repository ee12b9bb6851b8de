"""The mapping between scalelab's GPT and the standard Hugging Face architectures, both ways.

- `gpt2` recipe <-> `GPT2LMHeadModel` (Radford et al. 2019): the same computation; HF keeps its
  linear weights as Conv1D, (in, out), so they are transposed; a bias-free scalelab model gets
  zero biases.
- `modern` recipe <-> the Llama family: `Qwen3ForCausalLM` with QK-norm, `LlamaForCausalLM` without;
  imports also from Mistral and Qwen2 folders. See `hf_llama` for why the computation is identical.
"""

from __future__ import annotations

import torch

from scalelab.errors import UserError
from scalelab.interop import hf_llama
from scalelab.model.gpt import GPTConfig

EPS_LAYERNORM = 1e-5  # scalelab's gpt2 LayerNorm (model/gpt.py Norm)
HF_GELU = {"gelu": "gelu_new", "gelu_exact": "gelu"}
"""scalelab's gpt2 MLP nonlinearity -> transformers' GPT-2 `activation_function` (tanh-GELU, exact GELU)."""


def architecture_for(cfg: GPTConfig) -> str:
    """'gpt2', 'qwen3' or 'llama', or a UserError naming the option that has no standard equivalent."""
    if cfg.logit_softcap:
        raise UserError(f"model.logit_softcap={cfg.logit_softcap} has no equivalent in GPT-2 or Llama/Qwen3 models; "
                        "export a model trained without it (model.logit_softcap unset)")  # fmt: skip
    if cfg.recipe == "gpt2":
        if cfg.mlp not in HF_GELU:
            raise UserError(f"model.mlp={cfg.mlp!r} with the gpt2 recipe has no standard equivalent (GPT-2 "
                            "uses GELU); export a gpt2 model with model.mlp='gelu' or 'gelu_exact', or a modern "
                            "one with 'swiglu'")  # fmt: skip
        return "gpt2"
    return hf_llama.family_for(cfg)


def hf_config(cfg: GPTConfig, arch: str, eot_id: int):
    """The transformers config of the equivalent architecture."""
    import transformers

    common = {"vocab_size": cfg.vocab_size, "bos_token_id": eot_id, "eos_token_id": eot_id,
              "tie_word_embeddings": cfg.tie_embeddings}  # fmt: skip
    if arch == "gpt2":
        return transformers.GPT2Config(
            n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
            activation_function=HF_GELU[cfg.mlp], resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout, layer_norm_epsilon=cfg.norm_eps or EPS_LAYERNORM, n_inner=cfg.mlp_hidden, **common,
        )  # fmt: skip
    return hf_llama.hf_config(cfg, arch, common)


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
    return hf_llama.to_hf_state(sd, cfg, arch)


# ----------------------------------------------------------------------------- import


def gpt_config_from_hf(hf) -> GPTConfig:
    """The scalelab GPTConfig computing what the HF config describes, or a UserError naming what differs."""
    kind = hf.model_type
    if kind == "gpt2":
        bad = []
        mlp = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu": "gelu_exact"}.get(hf.activation_function)
        if mlp is None:
            bad.append(f"activation_function={hf.activation_function!r} (scalelab's gpt2 has tanh-GELU "
                       "'gelu_new' or exact 'gelu')")  # fmt: skip
        if not hf.scale_attn_weights or hf.scale_attn_by_inverse_layer_idx:
            bad.append("attention scaling other than 1/sqrt(head_dim)")
        if bad:
            raise UserError("this GPT-2 model differs from scalelab's gpt2 recipe: " + "; ".join(bad))
        return GPTConfig(recipe="gpt2", n_layer=hf.n_layer, n_head=hf.n_head, n_embd=hf.n_embd,
                         block_size=hf.n_positions, vocab_size=hf.vocab_size, bias=True, mlp=mlp,
                         tie_embeddings=bool(hf.tie_word_embeddings),
                         norm_eps=None if hf.layer_norm_epsilon == EPS_LAYERNORM else float(hf.layer_norm_epsilon),
                         mlp_hidden=None if hf.n_inner in (None, 4 * hf.n_embd) else hf.n_inner)  # fmt: skip
    if kind not in hf_llama.FAMILY:
        raise UserError(f"model_type {kind!r} cannot be imported; scalelab imports "
                        f"{', '.join(('gpt2',) + hf_llama.FAMILY)} folders")  # fmt: skip
    return hf_llama.config_from_hf(hf)


def from_hf_state(hsd: dict[str, torch.Tensor], cfg: GPTConfig, n_kv_head: int | None = None) -> dict:
    """The HF model's state dict -> scalelab's (fp32), for a config from `gpt_config_from_hf`."""
    hsd = {k: v.detach().float() for k, v in hsd.items()}
    out = {}
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
    return hf_llama.from_hf_state(hsd, cfg, n_kv_head)
