"""Rollouts: sample a batch of responses from the policy with the KV cache, exactly, without padding inside.

Prompts of different lengths are left-padded; the GPT's key-padding mask hides the pad tokens and
each row counts positions from its own first token (`GPT.forward(key_mask=...)`), so the batch
equals sampling each prompt alone. Rows with the same prompt (RLOO's k samples per prompt) share
one prefill: each distinct prompt is encoded once and its keys/values copied to its rows. Then one
cached forward per new token serves the whole batch. A row stops at its first end token (kept in the
response); later positions are padding. The returned tensors are right-padded (every row starts at
position 0).

The training tensors are *response-aligned*: column j of a (B, R) tensor is the j-th response token,
`action_pos[b, j]` the position whose logits predict it. PPO, RLOO and the KL work on those.
`policy_logprobs` computes them in one forward over the right-padded tokens, or, when rows share a
prompt, in two: the distinct prompts once (a differentiable shared prefix), then the responses of
every row against their prompt's keys and values. Both equal the rows' separate forwards.
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
    group: torch.Tensor | None = None
    """(B,) rows with the same prompt share an id (0..P-1); None: every row its own."""
    prompt_lens: torch.Tensor | None = None
    """(B,) prompt length of each row; None: from `prompt_ids`."""

    def __post_init__(self):
        device = self.tokens.device
        if self.group is None:
            self.group = torch.as_tensor(prompt_groups(self.prompt_ids), dtype=torch.long, device=device)
        if self.prompt_lens is None:
            self.prompt_lens = torch.tensor([len(p) for p in self.prompt_ids], dtype=torch.long, device=device)

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
                       self.logprobs.to(device), self.temperature, self.group.to(device),
                       self.prompt_lens.to(device))  # fmt: skip

    def select(self, rows: Sequence[int]) -> Rollout:
        """The rollout restricted to some rows (minibatches)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.tokens.device)
        pick = [int(i) for i in rows]
        return Rollout([self.prompt_ids[i] for i in pick], [self.response_ids[i] for i in pick],
                       [self.ended[i] for i in pick], self.tokens[idx], self.action_pos[idx],
                       self.response_tokens[idx], self.response_mask[idx], self.logprobs[idx],
                       self.temperature, torch.unique(self.group[idx], return_inverse=True)[1],
                       self.prompt_lens[idx])  # fmt: skip


def prompt_groups(prompts: Sequence[Sequence[int]]) -> list[int]:
    """Row -> id of its distinct prompt (0..P-1 in order of first appearance)."""
    ids: dict[tuple[int, ...], int] = {}
    return [ids.setdefault(tuple(p), len(ids)) for p in prompts]


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


class SharedPrefixCache:
    """The KV-cache interface of `GPT.forward` (`pos`, `update`) for rows that share prompts, differentiable.

    The first forward (the P distinct prefixes) stores each layer's keys and values; the next one
    (B rows) sees, per row, its prefix's keys and values followed by its own: the rows' separate
    forwards, with each shared prefix computed once. Gradients of the copies add up in the prefix.
    """

    def __init__(self, group: torch.Tensor):
        self.group = group  # (B,) row -> prefix
        self.pos = 0
        self.prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos == 0:  # the prefix forward: (P, H, Lp, D)
            self.prefix[layer] = (k, v)
            return k, v
        pk, pv = self.prefix[layer]
        return torch.cat((pk[self.group], k), dim=2), torch.cat((pv[self.group], v), dim=2)  # (B, H, Lp + T, D)


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

    Prompts are left-padded and the pad tokens masked out (`GPT.forward(key_mask=...)`); each
    distinct prompt is prefilled once; then `max_new_tokens` cached steps serve the whole batch,
    exactly as if each prompt were sampled alone. The recorded log-probabilities are those of the
    tempered policy (top-k not applied), the distribution that PPO's ratio and the KL penalty use
    (Ziegler et al. 2019).
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
    param = next(policy.parameters())
    device = param.device
    B, total = len(prompts), longest + max_new_tokens
    group = prompt_groups(prompts)
    gidx = torch.tensor(group, dtype=torch.long, device=device)  # (B,) row -> distinct prompt
    distinct = list({g: p for g, p in zip(group, prompts)}.values())  # (P) prompts, by id
    lens = torch.tensor([len(p) for p in prompts], device=device)  # (B,)
    pad = longest - lens  # (B,) left padding of each row
    first = torch.zeros(len(distinct), longest, dtype=torch.long, device=device)  # (P, L) left-padded
    for i, p in enumerate(distinct):
        first[i, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
    first_lens = torch.tensor([len(p) for p in distinct], device=device)  # (P,)
    first_real = torch.arange(longest, device=device)[None, :] >= (longest - first_lens)[:, None]  # (P, L)
    buf = torch.full((B, total), PAD_ID, dtype=torch.long, device=device)  # (B, T) left-padded
    buf[:, :longest] = first[gidx]
    real = torch.arange(total, device=device)[None, :] >= pad[:, None]  # (B, T) True from each row's first token
    logp_buf = torch.zeros(B, total, device=device)  # log-prob of the token at each position
    done = torch.zeros(B, dtype=torch.bool, device=device)
    steps = 0  # positions sampled so far
    with torch.inference_mode():  # less per-op overhead; the tensors it fills were made outside
        cache = None  # one prefill per distinct prompt, its keys/values copied to the rows that share it
        if use_cache:
            shared = SharedPrefixCache(gidx)
            logits, _ = policy(first, cache=shared, key_mask=first_real)  # (P, L, V)
            cache = KVCache(policy.cfg, B, device, param.dtype)
            for layer, (k, v) in shared.prefix.items():
                cache.k[layer][:, :, :longest] = k[gidx]
                cache.v[layer][:, :, :longest] = v[gidx]
            cache.pos = longest
            logits = logits[gidx, -1:]  # (B, 1, V)
        for pos in range(longest, total):  # a row's tokens after its end are cut off by _assemble
            if cache is None:
                logits, _ = policy(buf[:, :pos], key_mask=real[:, :pos])
            logp = tempered_logprobs(logits[:, -1, :], temperature)  # (B, V) predicts position pos
            if temperature > 0 and top_k is None:
                token = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)  # (B,)
            else:
                token = _sample(logits[:, -1, :], temperature, top_k, generator)
            buf[:, pos] = token
            logp_buf[:, pos] = logp.gather(1, token[:, None]).squeeze(1)
            steps += 1
            done |= token == eot_id
            if pos + 1 == total or bool(done.all()):
                break
            if cache is not None:
                logits, _ = policy(buf[:, pos : pos + 1], cache=cache, key_mask=real[:, : pos + 1],
                                   positions=(pos - pad)[:, None])  # fmt: skip
    is_end = buf[:, longest : longest + steps] == eot_id  # (B, steps)
    ended = is_end.any(dim=1)
    resp_len = torch.where(ended, is_end.int().argmax(dim=1) + 1, steps)  # (B,) up to the first end
    policy.train(was_training)
    # shift every row left by its padding: prompt at 0..len-1, then the response (the training layout)
    shift = (torch.arange(total, device=device)[None, :] + pad[:, None]).clamp(max=total - 1)  # (B, T)
    return _assemble(prompts, buf.gather(1, shift), logp_buf.gather(1, shift), lens, resp_len, ended, temperature,
                     gidx)  # fmt: skip


def _assemble(prompts, buf, logp_buf, lens, resp_len, ended, temperature, group=None) -> Rollout:
    """Cut the lock-step buffer into the response-aligned training tensors."""
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
    rows = buf.tolist()
    responses = [rows[b][n : n + r] for b, (n, r) in enumerate(zip(lens.tolist(), resp_len.tolist()))]
    return Rollout(prompts, responses, ended.tolist(), tokens, action_pos, response_tokens, mask, logprobs,
                   temperature, group, lens)  # fmt: skip


def _response_forward(model: GPT, rollout: Rollout) -> torch.Tensor | None:
    """(B, R, V) logits at the action positions via the shared prompt prefixes; None where that does not pay."""
    g, lens = rollout.group, rollout.prompt_lens
    B, R = rollout.action_pos.shape
    P = int(g.max()) + 1
    first = torch.full((P,), B, device=g.device).scatter_reduce(0, g, torch.arange(B, device=g.device), "amin")
    plen = lens[first] - 1  # (P,) the prefix is the prompt but its last token, which starts the suffix
    Lp = int(plen.max())
    if P == B or Lp == 0 or Lp + R > model.cfg.block_size:
        return None
    src = torch.arange(Lp, device=g.device)[None, :] - (Lp - plen)[:, None]  # (P, Lp) left-padded prefix
    real = src >= 0
    prefix = torch.where(real, rollout.tokens[first].gather(1, src.clamp(min=0)), PAD_ID)
    cache = SharedPrefixCache(g)
    model(prefix, cache=cache, key_mask=real)
    suffix = rollout.tokens.gather(1, rollout.action_pos)  # (B, R) last prompt token, then the response
    key_mask = torch.cat((real[g], torch.ones(B, R, dtype=torch.bool, device=g.device)), dim=1)  # (B, Lp + R)
    logits, _ = model(suffix, cache=cache, key_mask=key_mask, positions=rollout.action_pos)
    return logits


def policy_logprobs(model: GPT, rollout: Rollout, temperature: float | None = None,
                    hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """(logp (B, R), entropy (B, R), final hidden states at action positions (B, R, C) or None).

    Rows that share a prompt: the distinct prompts once, then every row's response against its
    prompt's cached keys/values (`SharedPrefixCache`). Otherwise one full forward over the
    right-padded tokens: causal attention makes it exact on real positions, whatever follows them.
    """
    t = rollout.temperature if temperature is None else temperature
    captured: list[torch.Tensor] = []
    with model.hooks([("final", lambda x, name: captured.append(x))] if hidden else []):
        picked = _response_forward(model, rollout)  # (B, R, V)
        shared = picked is not None
        if not shared:
            logits, _ = model(rollout.tokens)  # (B, T, V)
            picked = logits.gather(1, rollout.action_pos[:, :, None].expand(-1, -1, logits.size(-1)))
    logp_all = tempered_logprobs(picked, t)
    logp = logp_all.gather(2, rollout.response_tokens[:, :, None]).squeeze(2)  # (B, R)
    entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, R)
    h = None
    if hidden:
        hs = captured[-1]  # the last forward's final hidden states: (B, R, C) shared, else (B, T, C)
        h = hs if shared else hs.gather(1, rollout.action_pos[:, :, None].expand(-1, -1, hs.size(-1)))
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
