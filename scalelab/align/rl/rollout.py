"""Rollouts: sample a batch of responses from the policy with the KV cache, exactly, without padding inside.

Prompts of different lengths are left-padded, and two hooks make the padded batch exact (the GPT
has no attention-mask argument): real tokens never attend to pad tokens, and with learned
positions each row counts positions from its own first token. One prefill, then one cached
forward per new token for the whole batch; the result equals sampling each prompt alone. A row
stops at its first end token (kept in the response); later positions are padding. The returned
tensors are right-padded (every row starts at position 0), so training forwards need no mask.

The training tensors are *response-aligned*: column j of a (B, R) tensor is the j-th response token,
`action_pos[b, j]` the position whose logits predict it. PPO, RLOO and the KL work on those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scalelab.errors import UserError
from scalelab.model.gpt import GPT, KVCache

PAD_ID = 0  # what fills the tensors after a row's end; always masked out


@dataclass
class Rollout:
    """One batch of sampled responses and the tensors that train on them."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    """Sampled tokens of each response, the end token included when produced, no padding."""
    ended: list[bool]
    """True when the response stopped at an end token (False: cut at max_new_tokens)."""
    tokens: torch.Tensor
    """(B, T) prompt + response, right-padded with PAD_ID."""
    action_pos: torch.Tensor
    """(B, R) position of `tokens` whose logits predict response token j (clamped inside padding)."""
    response_tokens: torch.Tensor
    """(B, R) response token j of each row, PAD_ID after its end."""
    response_mask: torch.Tensor
    """(B, R) bool, True on real response tokens."""
    logprobs: torch.Tensor
    """(B, R) log-probability of each sampled token under the tempered policy (0 on padding)."""
    temperature: float = 1.0

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def response_lengths(self) -> torch.Tensor:
        """(B,) number of response tokens (end token included)."""
        return self.response_mask.sum(dim=1)

    def decode(self, tokenizer) -> list[str]:
        """The response texts, end token dropped."""
        eot = tokenizer.eot_id
        return [tokenizer.decode([t for t in r if t != eot]) for r in self.response_ids]

    def to(self, device: torch.device | str) -> Rollout:
        return Rollout(self.prompt_ids, self.response_ids, self.ended, self.tokens.to(device),
                       self.action_pos.to(device), self.response_tokens.to(device), self.response_mask.to(device),
                       self.logprobs.to(device), self.temperature)  # fmt: skip

    def select(self, rows: Sequence[int]) -> Rollout:
        """The rollout restricted to some rows (minibatches)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.tokens.device)
        pick = [int(i) for i in rows]
        return Rollout([self.prompt_ids[i] for i in pick], [self.response_ids[i] for i in pick],
                       [self.ended[i] for i in pick], self.tokens[idx], self.action_pos[idx],
                       self.response_tokens[idx], self.response_mask[idx], self.logprobs[idx],
                       self.temperature)  # fmt: skip


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, gen) -> torch.Tensor:
    """logits (B, V) -> token ids (B,)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits.float(), dim=-1), 1, generator=gen).squeeze(1)


def tempered_logprobs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """log-softmax of logits / temperature (temperature 0 counts as 1): the policy PPO trains."""
    t = temperature if temperature > 0 else 1.0
    return F.log_softmax(logits.float() / t, dim=-1)


class _LeftPadding:
    """Hooks that make a left-padded batch compute exactly what each row computes alone.

    Row b has `pad[b]` pad tokens before its prompt. Two hooks (TransformerLens-style, hooks.py):
    - ``blocks.{i}.attn.pattern``: a real query never attends to a pad key (the pattern is masked
      and renormalised: softmax over the real keys only); pad queries see only pads, so no row of
      the pattern is ever empty;
    - ``embed`` (learned positions only): each row's tokens get positions counted from its own
      first real token. Rotary positions need nothing: attention sees only position differences.
    """

    def __init__(self, model: GPT, pad: torch.Tensor, total: int):
        self.model, self.pad = model, pad  # (B,)
        self.past = 0  # tokens before the current forward (the cache's position)
        pos = torch.arange(total, device=pad.device)
        self.real = pos[None, :] >= pad[:, None]  # (B, total) True on real tokens

    def pattern(self, p: torch.Tensor, name: str) -> torch.Tensor:
        B, H, T, S = p.shape  # queries are the last T of the S positions
        block = self.real[:, S - T : S, None] & ~self.real[:, None, :S]  # (B, T, S) real query, pad key
        p = p.masked_fill(block[:, None], 0.0)
        return p / p.sum(dim=-1, keepdim=True)

    def embed(self, x: torch.Tensor, name: str) -> torch.Tensor:
        wpe = self.model.wpe
        T = x.size(1)
        shared = torch.arange(self.past, self.past + T, device=x.device)  # (T,) what the model added
        own = (shared[None, :] - self.pad[:, None]).clamp(min=0)  # (B, T) each row's own positions
        return x + wpe(own) - wpe(shared)[None]

    def hooks(self) -> list:
        found = [(lambda n: n.endswith("attn.pattern"), self.pattern)]
        return found + ([("embed", self.embed)] if self.model.wpe is not None else [])


@torch.no_grad()
def sample_responses(
    policy: GPT,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    eot_id: int,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> Rollout:
    """Sample one response per prompt; each stops at its first `eot_id` (kept) or after max_new_tokens.

    Prompts are left-padded and the pad tokens masked out by hooks (`_LeftPadding`), so one
    prefill and `max_new_tokens` cached steps serve the whole batch, exactly as if each prompt were
    sampled alone. The recorded log-probabilities are those of the tempered policy (top-k not
    applied), the distribution that PPO's ratio and the KL penalty use (Ziegler et al. 2019).
    """
    prompts = [list(map(int, p)) for p in prompt_ids]
    if not prompts:
        raise UserError("no prompts to sample from; give at least one prompt")
    if any(len(p) == 0 for p in prompts):
        raise UserError("an empty prompt cannot be continued; give every prompt at least one token")
    block = policy.cfg.block_size
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > block:
        raise UserError(f"a prompt of {longest} tokens plus max_new_tokens={max_new_tokens} exceeds the policy's "
                        f"context of {block}; shorten the prompts or lower max_new_tokens")  # fmt: skip
    was_training = policy.training
    policy.eval()
    device = next(policy.parameters()).device
    B, total = len(prompts), longest + max_new_tokens
    lens = torch.tensor([len(p) for p in prompts], device=device)  # (B,)
    pad = longest - lens  # (B,) left padding of each row
    buf = torch.full((B, total), PAD_ID, dtype=torch.long, device=device)  # (B, T) left-padded
    for b, p in enumerate(prompts):
        buf[b, longest - len(p) : longest] = torch.tensor(p, dtype=torch.long)
    logp_buf = torch.zeros(B, total, device=device)  # log-prob of the token at each position
    done = torch.zeros(B, dtype=torch.bool, device=device)
    ended = torch.zeros(B, dtype=torch.bool, device=device)
    resp_len = torch.zeros(B, dtype=torch.long, device=device)
    padding = _LeftPadding(policy, pad, total)
    hooks = padding.hooks() if bool((pad > 0).any()) else []
    cache = KVCache(policy.cfg, B, device, next(policy.parameters()).dtype) if use_cache else None
    with policy.hooks(hooks):
        if cache is not None:
            logits, _ = policy(buf[:, :longest], cache=cache)
        for pos in range(longest, total):
            if cache is None:
                padding.past = 0
                logits, _ = policy(buf[:, :pos])
            last = logits[:, -1, :]  # (B, V) predicts position pos
            sampled = _sample(last, temperature, top_k, generator)  # (B,)
            token = torch.where(done, PAD_ID, sampled)
            buf[:, pos] = token
            lp = tempered_logprobs(last, temperature).gather(1, token[:, None]).squeeze(1)
            logp_buf[:, pos] = torch.where(done, 0.0, lp)
            resp_len += (~done).long()
            ended |= ~done & (token == eot_id)
            done |= (token == eot_id) | (resp_len >= max_new_tokens)
            if bool(done.all()):
                break
            if cache is not None:
                padding.past = pos
                logits, _ = policy(buf[:, pos : pos + 1], cache=cache)
    policy.train(was_training)
    # shift every row left by its padding: prompt at 0..len-1, then the response (the training layout)
    shift = (torch.arange(total, device=device)[None, :] + pad[:, None]).clamp(max=total - 1)  # (B, T)
    return _assemble(prompts, buf.gather(1, shift), logp_buf.gather(1, shift), lens, resp_len, ended, temperature)


def _assemble(prompts, buf, logp_buf, lens, resp_len, ended, temperature) -> Rollout:
    """Cut the lock-step buffer into the response-aligned training tensors."""
    B = len(prompts)
    R = max(1, int(resp_len.max()))
    T = int((lens + resp_len).max())
    j = torch.arange(R, device=buf.device)[None, :]  # (1, R)
    mask = j < resp_len[:, None]  # (B, R)
    tok_pos = (lens[:, None] + j).clamp(max=buf.size(1) - 1)  # (B, R) position of response token j
    response_tokens = torch.where(mask, buf.gather(1, tok_pos), PAD_ID)
    logprobs = torch.where(mask, logp_buf.gather(1, tok_pos), 0.0)
    tokens = buf[:, :T].clone()
    keep = torch.arange(T, device=buf.device)[None, :] < (lens + resp_len)[:, None]
    tokens = torch.where(keep, tokens, PAD_ID)
    action_pos = (tok_pos - 1).clamp(max=T - 2 if T >= 2 else 0)
    rl = resp_len.tolist()
    responses = [buf[b, int(lens[b]) : int(lens[b]) + rl[b]].tolist() for b in range(B)]
    return Rollout(prompts, responses, ended.tolist(), tokens, action_pos, response_tokens, mask, logprobs,
                   temperature)  # fmt: skip


def policy_logprobs(model: GPT, rollout: Rollout, temperature: float | None = None,
                    hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """(logp (B, R), entropy (B, R), final hidden states at action positions (B, R, C) or None).

    One full forward over the right-padded tokens: causal attention makes it exact on real
    positions, whatever follows them.
    """
    t = rollout.temperature if temperature is None else temperature
    captured: dict[str, torch.Tensor] = {}
    if hidden:
        with model.hooks([("final", lambda x, name: captured.__setitem__("h", x))]):
            logits, _ = model(rollout.tokens)  # (B, T, V)
    else:
        logits, _ = model(rollout.tokens)
    idx = rollout.action_pos  # (B, R)
    picked = logits.gather(1, idx[:, :, None].expand(-1, -1, logits.size(-1)))  # (B, R, V)
    logp_all = tempered_logprobs(picked, t)
    logp = logp_all.gather(2, rollout.response_tokens[:, :, None]).squeeze(2)  # (B, R)
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, R)
    h = None
    if hidden:
        hs = captured["h"]  # (B, T, C)
        h = hs.gather(1, idx[:, :, None].expand(-1, -1, hs.size(-1)))  # (B, R, C)
    return logp, entropy, h


def rollout_from_ids(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *, eot_id: int,
                     device: torch.device | str = "cpu", temperature: float = 1.0) -> Rollout:  # fmt: skip
    """Given (not sampled) responses as a Rollout, for scoring their log-probabilities (DPO, tests)."""
    prompts = [list(map(int, p)) for p in prompt_ids]
    responses = [list(map(int, r)) for r in response_ids]
    lens = torch.tensor([len(p) for p in prompts], device=device)
    resp_len = torch.tensor([len(r) for r in responses], device=device)
    if (lens < 1).any() or (resp_len < 1).any():
        raise UserError("every prompt and every response needs at least one token")
    buf = torch.full((len(prompts), int((lens + resp_len).max()) + 1), PAD_ID, dtype=torch.long, device=device)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        buf[b, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
    ended = torch.tensor([bool(r) and r[-1] == eot_id for r in responses], device=device)
    return _assemble(prompts, buf, torch.zeros(buf.shape, device=device), lens, resp_len, ended, temperature)
