"""Sampling with temperature and top-k, using a KV cache while the text fits the context."""

from __future__ import annotations

import torch

from scalelab.model.gpt import GPT, KVCache


def _next_token(logits: torch.Tensor, temperature: float, top_k: int | None, gen) -> torch.Tensor:
    """logits (B, V) -> token ids (B, 1)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=gen)


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend idx (B, T) by max_new_tokens sampled tokens; temperature 0 means greedy.

    With the cache each new token costs one position of compute; once the text outgrows the
    context, the last `block_size` tokens are re-encoded each step (a sliding window).
    """
    was_training = model.training
    model.eval()
    block = model.cfg.block_size
    cache = None
    if use_cache:
        p = next(model.parameters())
        cache = KVCache(model.cfg, idx.size(0), p.device, p.dtype)
    fed = 0  # how many tokens of idx the cache has seen
    for _ in range(max_new_tokens):
        if cache is not None and idx.size(1) <= block:
            logits, _ = model(idx[:, fed:], cache=cache)
            fed = idx.size(1)
        else:
            cache = None
            logits, _ = model(idx[:, -block:])
        nxt = _next_token(logits[:, -1, :], temperature, top_k, generator)
        idx = torch.cat((idx, nxt), dim=1)
    model.train(was_training)
    return idx
