"""A decoder-only GPT with two recipes, named hook points and a KV cache.

- `gpt2` (Radford et al. 2019): learned positions, LayerNorm, GELU MLP, tied embeddings, optional
  biases, the GPT-2 initialisation (N(0, 0.02), residual projections scaled by 1/sqrt(2 L)).
- `modern`: rotary positions (Su et al. 2021), RMSNorm, QK-norm, ReLU^2 or SwiGLU MLP, untied
  head, no biases, zero-initialised output projections, optional logit soft-cap.

Hook points carry stable names (`blocks.{i}.attn.pattern`, `blocks.{i}.resid_post`, ...), in the
manner of TransformerLens, so probes read activations by name: see `hooks.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalelab.model.hooks import HookedMixin, HookPoint
from scalelab.model.loss import chunked_cross_entropy


@dataclass(frozen=True)
class GPTConfig:
    """A fully resolved model shape (no defaults left open)."""

    recipe: str = "gpt2"
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    vocab_size: int = 257
    dropout: float = 0.0
    bias: bool = True
    mlp: str = "gelu"
    logit_softcap: float | None = None
    tie_embeddings: bool = True
    qk_norm: bool = True
    """modern: RMS-normalise queries and keys per head (off for Llama-family imports)."""
    embed_norm: bool = True
    """modern: RMS-normalise the input embedding (off for Llama-family imports)."""
    rope_theta: float = 10000.0
    """modern: the rotary base (Su et al. 2021; Llama 3 uses 5e5)."""
    norm_eps: float | None = None
    """Epsilon of every norm; None: the recipe's (1e-5 LayerNorm, 1e-6 RMSNorm)."""
    mlp_hidden: int | None = None
    """MLP width; None: 4 x n_embd (gelu, relu2), 8/3 x n_embd rounded up to 8 (swiglu)."""

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


class Norm(nn.Module):
    """LayerNorm (gpt2) or weight-free RMSNorm (modern)."""

    def __init__(self, dim: int, kind: str, bias: bool, eps: float | None = None):
        super().__init__()
        self.kind = kind
        self.eps = eps or (1e-5 if kind == "layernorm" else 1e-6)
        if kind == "layernorm":
            self.weight = nn.Parameter(torch.ones(dim))
            self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return F.layer_norm(x, (x.size(-1),), self.weight, self.bias, self.eps)
        return F.rms_norm(x, (x.size(-1),), eps=self.eps)


def rotary_tables(head_dim: int, length: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of shape (length, head_dim // 2) for rotary embeddings."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of x (B, H, T, D) by the angles of positions T."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class KVCache:
    """Keys and values of every layer, preallocated to the context length, for fast sampling."""

    def __init__(self, cfg: GPTConfig, batch: int, device, dtype):
        shape = (batch, cfg.n_head, cfg.block_size, cfg.head_dim)
        # never read before written (`update` returns the filled part only): no need to zero them
        self.k = [torch.empty(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.empty(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.pos = 0  # tokens already in the cache

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.size(2)
        self.k[layer][:, :, self.pos : self.pos + t] = k
        self.v[layer][:, :, self.pos : self.pos + t] = v
        end = self.pos + t
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def attention_mask(key_mask: torch.Tensor, past: int, T: int) -> torch.Tensor:
    """(B, 1, T, S) bool mask of T queries at positions past.. over S = past + T keys.

    A query sees the earlier real keys (`key_mask` (B, S), True on real tokens) and always itself,
    so that no row is empty (a pad query sees only itself: its output is finite and unused).
    """
    S = past + T
    if T == 1:  # one new token (a cached decoding step): every key is earlier or itself
        allowed = key_mask.clone()
        allowed[:, -1] = True
        return allowed[:, None, None, :]
    q_pos = torch.arange(past, S, device=key_mask.device)[:, None]  # (T, 1)
    k_pos = torch.arange(S, device=key_mask.device)[None, :]  # (1, S)
    allowed = ((k_pos <= q_pos) & key_mask[:, None, :S]) | (k_pos == q_pos)  # (B, T, S)
    return allowed[:, None]


_attention_full_precision = False
"""Whether CPU attention runs at full float32 precision whatever torch's matmul precision: set by
`scalelab.train.precision.matmul_precision` (a plain global, so that torch.compile guards on it)."""


def keep_attention_full_precision(on: bool) -> bool:
    """Set whether float32 CPU attention runs at 'highest' matmul precision; return the previous setting."""
    global _attention_full_precision
    before, _attention_full_precision = _attention_full_precision, on
    return before


FLOAT32_CPU_ATTENTION_MAX_KEYS = 128
"""Up to this many keys, bfloat16 CPU attention that needs a gradient is computed in float32 (`attention`)."""


def float32_cpu_attention(t: torch.Tensor, keys: int) -> bool:
    """Whether CPU attention over `keys` keys on `t` (queries, or the projection they come from) is computed in
    float32 although the run is in bfloat16 (bfloat16 tensors, or float32 ones under CPU autocast, which would
    cast them): at short contexts, when a gradient is needed. See `attention`."""
    return (t.device.type == "cpu" and keys <= FLOAT32_CPU_ATTENTION_MAX_KEYS and torch.is_grad_enabled()
            and t.requires_grad and (t.dtype == torch.bfloat16 or (t.dtype == torch.float32
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)))  # fmt: skip


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw) -> torch.Tensor:
    """`F.scaled_dot_product_attention`, with two CPU cases where torch's kernel is slow at short contexts:

    - bfloat16 (inputs, or autocast: `train.dtype='bfloat16'`) when a gradient is needed, up to
      `FLOAT32_CPU_ATTENTION_MAX_KEYS` keys: computed in float32, returned in bfloat16. Torch's bfloat16 CPU
      backward is 2-5x slower there ((12, 4, 64, 32) forward + backward on one core: 10.0 -> 2.1 ms cast
      included; (8, 8, 128, 64): 34 -> 17 ms), while at 256 keys and beyond bfloat16 is as fast or faster,
      and its forward alone is always faster.
    - float32 inputs when the run lets matmuls use bfloat16 (`train.matmul_precision='medium'`): kept at full
      float32 precision, since oneDNN's reduced-precision path makes the kernel ~10x slower at these shapes
      ((12, 4, 64, 32) forward + backward: 1.6 -> 17 ms), while it makes the linear layers 2-3x faster.

    Elsewhere (CUDA, long contexts, inference) it is the plain call."""
    if q.device.type == "cpu":
        if any(float32_cpu_attention(t, k.size(-2)) for t in (q, k, v)):
            return _float32_attention(q, k, v, **kw)
        if _attention_full_precision and q.dtype == torch.float32:
            return _full_precision_attention(q, k, v, **kw)
    return F.scaled_dot_product_attention(q, k, v, **kw)


def _float32_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw) -> torch.Tensor:
    mask = kw.get("attn_mask")
    if mask is not None and mask.is_floating_point():
        kw = {**kw, "attn_mask": mask.float()}
    with torch.autocast("cpu", enabled=False):  # else autocast would cast the inputs back to bfloat16
        y = attention(q.float(), k.float(), v.float(), **kw)  # .float(): no copy of a float32 tensor
    return y.to(torch.bfloat16)  # what the plain call returns for these inputs


def _set_precision(level: str):
    def hook(*_):
        torch.set_float32_matmul_precision(level)

    return hook


@torch.compiler.disable  # sets torch's global precision around one kernel (and its backward): eager only
def _full_precision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kw) -> torch.Tensor:
    level = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        y = F.scaled_dot_product_attention(q, k, v, **kw)
    finally:
        torch.set_float32_matmul_precision(level)
    if y.grad_fn is not None:  # its backward kernel too: run by autograd later, on this thread
        y.grad_fn.register_prehook(_set_precision("highest"))
        y.grad_fn.register_hook(_set_precision(level))
    return y


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.hook_pattern = HookPoint()  # (B, H, T, S) attention probabilities
        self.hook_z = HookPoint()  # (B, T, H, D) per-head outputs before c_proj

    def forward(self, x, rope=None, cache: KVCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` (B, 1, T, S) bool, True where a query may attend (`attention_mask`); None: plain causal."""
        B, T, C = x.shape
        H, D = self.cfg.n_head, self.cfg.head_dim
        past = cache.pos if cache is not None else 0
        qkv = self.c_attn(x)  # (B, T, 3C)
        if float32_cpu_attention(qkv, past + T):
            qkv = qkv.float()  # attention will be computed in float32: one cast here instead of one each
        q, k, v = qkv.split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        if self.cfg.recipe == "modern" and self.cfg.qk_norm:
            q = F.rms_norm(q, (D,), eps=self.cfg.norm_eps or 1e-6)  # QK-norm
            k = F.rms_norm(k, (D,), eps=self.cfg.norm_eps or 1e-6)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, H, past + T, D)
        S = k.size(2)
        if self.hook_pattern.active() or self.hook_z.active():
            y = self._explicit_attention(q, k, v, past, mask)
        else:
            drop = self.cfg.dropout if self.training else 0.0
            if mask is not None:
                y = attention(q, k, v, attn_mask=mask, dropout_p=drop)
            elif past == 0:
                y = attention(q, k, v, dropout_p=drop, is_causal=True)
            else:  # queries at positions past..past+T-1 see keys 0..their own position
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=past)
                y = attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2)  # (B, T, H, D)
        y = self.hook_z(y)
        return self.resid_drop(self.c_proj(y.reshape(B, T, C)))

    def _explicit_attention(self, q, k, v, past: int, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Materialise the pattern so that hooks can read or replace it."""
        T, S = q.size(2), k.size(2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, T, S)
        if mask is None:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=past)
        scores = scores.masked_fill(~mask, float("-inf"))
        pattern = self.hook_pattern(torch.softmax(scores.float(), dim=-1).to(q.dtype))
        return pattern @ v  # (B, H, T, D)


GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh_as_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh GELU written as x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), since
    0.5 (1 + tanh(u)) = sigmoid(2u): the same function, which inductor fuses around its fast exp."""
    return x * torch.sigmoid((2.0 * GELU_C) * (x + 0.044715 * x * x * x))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Hendrycks & Gimpel 2016, eq. 2).

    Eager: torch's kernel. Compiled for the CPU: `gelu_tanh_as_sigmoid`, because inductor's CPU code for
    tanh is slow (the GELU was 17.5% of a CPU step; fused this way its forward and backward cost less
    than the eager kernel's). Equal to the kernel, value and gradient, to float rounding (tested to 1e-6).
    """
    if torch.compiler.is_compiling() and x.device.type == "cpu":  # GPU code (triton) has a fast tanh
        return gelu_tanh_as_sigmoid(x)
    return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.kind = cfg.mlp
        hidden = cfg.mlp_hidden or 4 * cfg.n_embd
        if cfg.mlp == "swiglu":  # same parameter count as a 4x MLP
            hidden = cfg.mlp_hidden or int(8 * cfg.n_embd / 3 + 7) // 8 * 8
            self.c_gate = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.c_fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, hidden)
        if self.kind == "gelu":
            h = gelu_tanh(h)
        elif self.kind == "gelu_exact":
            h = F.gelu(h)
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = F.silu(self.c_gate(x)) * h
        return self.drop(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        norm = "layernorm" if cfg.recipe == "gpt2" else "rms"
        self.ln_1 = Norm(cfg.n_embd, norm, cfg.bias, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln_2 = Norm(cfg.n_embd, norm, cfg.bias, cfg.norm_eps)
        self.mlp = MLP(cfg)
        self.hook_resid_pre = HookPoint()  # (B, T, C)
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x, rope=None, cache: KVCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln_1(x), rope, cache, mask)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln_2(x))))


class GPT(HookedMixin, nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.recipe == "gpt2" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = Norm(cfg.n_embd, "layernorm" if cfg.recipe == "gpt2" else "rms", cfg.bias, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.hook_embed = HookPoint()  # (B, T, C)
        self.hook_final = HookPoint()  # (B, T, C) after the final norm
        if cfg.recipe == "modern":
            cos, sin = rotary_tables(cfg.head_dim, cfg.block_size, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()
        self.name_hooks()

    # -------------------------------------------------------------- initialisation
    def reset_parameters(self) -> None:
        std = 0.02
        for name, p in self.named_parameters():
            if p.dim() < 2:
                nn.init.zeros_(p) if name.endswith("bias") else nn.init.ones_(p)
            elif self.cfg.recipe == "gpt2":
                scale = 1 / math.sqrt(2 * self.cfg.n_layer) if name.endswith("c_proj.weight") else 1.0
                nn.init.normal_(p, 0.0, std * scale)
            elif name.endswith("c_proj.weight") or name == "lm_head.weight":
                nn.init.zeros_(p)  # modern: every block starts as the identity
            elif name == "wte.weight":
                nn.init.normal_(p, 0.0, 1.0)
            else:
                nn.init.normal_(p, 0.0, 1 / math.sqrt(p.size(1)))

    # -------------------------------------------------------------- forward
    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        reduction: str = "mean",
        return_logits: bool = True,
        key_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """idx (B, T) token ids -> logits (B, T, V) and, given targets (B, T), the loss.

        Padded batches (left padding, or rows that share a cached prefix): `key_mask` (B, past + T) bool,
        True on real tokens of the cache and of idx, hides the pad keys from every real query;
        `positions` (B, T) gives each new token's position (learned or rotary). Without `positions`, a
        `key_mask` counts each row's positions from its own first real token. Both None: every row
        starts at position 0 and attends causally (the path of training, unchanged).

        `reduction='none'` returns the per-token loss (B, T); targets equal to -1 are ignored.
        `return_logits=False` with targets (the training step): the mean loss by `chunked_cross_entropy`,
        which never builds the full (fp32) logits, and None for the logits.
        """
        B, T = idx.shape
        past = cache.pos if cache is not None else 0
        if past + T > self.cfg.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds the context of {self.cfg.block_size}")
        mask = None
        if key_mask is not None:
            if key_mask.shape != (B, past + T) or key_mask.dtype != torch.bool:
                raise ValueError(f"key_mask must be a bool tensor of shape {(B, past + T)} (batch, cached + new "
                                 f"tokens), got {key_mask.dtype} {tuple(key_mask.shape)}")  # fmt: skip
            mask = attention_mask(key_mask, past, T)  # (B, 1, T, S)
            if positions is None:  # each row counts from its own first real token
                positions = (key_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]  # (B, T)
        if positions is not None and positions.shape != (B, T):
            raise ValueError(f"positions must have shape {(B, T)}, got {tuple(positions.shape)}")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(past, past + T, device=idx.device) if positions is None else positions)
        else:
            x = F.rms_norm(x, (x.size(-1),), eps=self.cfg.norm_eps or 1e-6) if self.cfg.embed_norm else x
            rope = (self.rope_cos[past : past + T], self.rope_sin[past : past + T])
            if positions is not None:  # per-row angles, (B, 1, T, D / 2): broadcast over heads
                rope = (self.rope_cos[positions][:, None], self.rope_sin[positions][:, None])
        x = self.hook_embed(self.drop(x))
        for block in self.blocks:
            x = block(x, rope, cache, mask)
        x = self.hook_final(self.ln_f(x))
        if cache is not None:
            cache.pos += T
        if targets is not None and not return_logits and reduction == "mean":
            loss = chunked_cross_entropy(x.reshape(B * T, -1), self.lm_head.weight, targets.reshape(-1),
                                         self.cfg.logit_softcap)  # fmt: skip
            return None, loss
        logits = self.lm_head(x)  # (B, T, V)
        if self.cfg.logit_softcap:
            cap = self.cfg.logit_softcap
            logits = cap * torch.tanh(logits / cap)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction=reduction
        )
        if reduction == "none":
            loss = loss.view(B, T)
        return logits, loss

    # -------------------------------------------------------------- counting
    def param_counts(self) -> dict[str, int]:
        """Total, non-embedding (Kaplan et al. 2020) and matmul ('flops') parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        wte = self.wte.weight.numel()
        wpe = self.wpe.weight.numel() if self.wpe is not None else 0
        head = 0 if self.cfg.tie_embeddings else self.lm_head.weight.numel()
        return {
            "params": total,
            "params_nonembed": total - wte - wpe - head,
            # parameters used in a matmul per token: the output head, not the input lookup
            "params_flops": total - wpe - (wte if not self.cfg.tie_embeddings else 0),
        }
