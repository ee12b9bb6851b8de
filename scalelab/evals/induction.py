"""Prefix-matching (induction) scores per attention head, read from `blocks.{i}.attn.pattern`.

Olsson et al. 2022 ("In-context Learning and Induction Heads", Anthropic), used by Hernandez et
al. 2022 (arXiv 2205.10487, section 5) as the mechanism behind the repeated-data damage:

- Probe sequences: a start token, then n_random = 25 random tokens repeated n_repeats = 4 times.
  Tokens are drawn without replacement within a row, so each has one earlier occurrence per
  earlier repeat, from a pool that leaves out the most and least common tokens
  (`probe_token_pool`). When the model's context is shorter than 1 + 25 x 4, n_random shrinks to
  (block_size - 1) // n_repeats.
- Induction mask M[q, j] = 1 when token j - 1 equals token q and j - 1 < q: the duplicate-token
  mask shifted one column right, as in TransformerLens's head detector.
- `prefix_matching_scores` (Olsson, the main score): the attention from each token in a later
  repeat to the tokens that followed its earlier occurrences, sum_j A[q, j] M[q, j], averaged
  over those tokens (rows of M that are not empty) and the batch. A perfect induction head
  scores 1; a uniform head scores about (earlier occurrences) / (q + 1); a previous-token head 0.
- `detector_scores` (TransformerLens `detect_head(..., "induction_head", error_measure="mul")`):
  sum(A * M) / sum(A) over the whole sequence, rows of the first repeat included, so its ceiling
  here is (n_repeats - 1) n_random / (1 + n_repeats n_random), 0.74 for 25 x 4.
"""

from __future__ import annotations

import string

import numpy as np
import torch
import torch.nn.functional as F

from scalelab.errors import UserError

N_RANDOM, N_REPEATS = 25, 4  # Olsson et al. 2022
PATTERN_SUFFIX = ".attn.pattern"


def probe_token_pool(tokenizer=None, vocab_size: int | None = None, eot_id: int | None = None) -> np.ndarray:
    """Token ids the probes draw from: frequent enough to be learned, none of the most common.

    - byte: the printable non-space ASCII bytes 33..126 (drops whitespace, the most common bytes,
      and control / non-ASCII bytes, the rarest);
    - char: every character but whitespace and the end-of-document token;
    - BPE or unknown: the middle 80% of ids (BPE ids follow merge order, so the first are the
      base alphabet and most frequent merges and the last the rarest), without the eot token.
    """
    kind = getattr(tokenizer, "kind", None)
    vocab_size = vocab_size if vocab_size is not None else getattr(tokenizer, "vocab_size", None)
    eot_id = eot_id if eot_id is not None else getattr(tokenizer, "eot_id", None)
    if kind == "byte":
        pool = np.arange(33, 127)
    elif kind == "char":
        pool = np.array([i for i, c in enumerate(tokenizer.chars) if c not in string.whitespace], dtype=np.int64)
    elif vocab_size is not None:
        pool = np.arange(vocab_size // 10, vocab_size - vocab_size // 10)
    else:
        raise UserError("the probes need a tokenizer or a vocab_size to choose their random tokens")
    return pool[pool != eot_id].astype(np.int64) if eot_id is not None else pool.astype(np.int64)


def repeated_random_tokens(pool: np.ndarray, bos: int, batch: int, n_random: int, n_repeats: int,
                           seed: int) -> torch.Tensor:  # fmt: skip
    """(batch, 1 + n_random n_repeats): `bos`, then n_random distinct pool tokens repeated n_repeats times."""
    if pool.size < n_random:
        raise UserError(f"the probe token pool holds {pool.size} ids, fewer than the {n_random} random tokens "
                        "a sequence needs; use fewer random tokens or a larger vocabulary")  # fmt: skip
    rng = np.random.default_rng([seed, 31])
    rows = [np.tile(rng.choice(pool, size=n_random, replace=False), n_repeats) for _ in range(batch)]
    seq = np.concatenate([np.full((batch, 1), bos), np.stack(rows)], axis=1)
    return torch.from_numpy(seq.astype(np.int64))


def fit_to_context(block_size: int, n_random: int = N_RANDOM, n_repeats: int = N_REPEATS) -> int:
    """The number of random tokens per repeat that fits, with the start token, in the context."""
    n = min(n_random, (block_size - 1) // n_repeats)
    if n < 2:
        raise UserError(f"a context of {block_size} tokens cannot hold {n_repeats} repeats of 2 or more tokens; "
                        "use fewer repeats or a model with a longer block_size")  # fmt: skip
    return n


def induction_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, S) ids -> (B, S, S) float: 1 at [q, j] when token j - 1 equals token q, j - 1 < q."""
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, S, S) [q, k]
    dup = torch.tril(same, diagonal=-1)  # earlier duplicates only
    mask = torch.zeros_like(dup)
    mask[:, :, 1:] = dup[:, :, :-1]  # shift one column right: the token after the duplicate
    return mask.float()


def _reduce(pattern: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, S, S) pattern -> Olsson and TransformerLens 'mul' scores per head (H,)."""
    hit = (pattern.float() * mask[:, None]).sum(-1)  # (B, H, S) attention on the induction targets
    rows = (mask.sum(-1) > 0).float()[:, None]  # (B, 1, S): tokens with an earlier occurrence
    olsson = (hit * rows).sum((0, 2)) / rows.sum().clamp_min(1)
    detector = (hit.sum(-1) / pattern.float().sum((-1, -2))).mean(0)
    return olsson, detector


@torch.no_grad()
def head_scores(model, tokens: torch.Tensor, with_loss: bool = False) -> dict[str, np.ndarray]:
    """Both induction scores of every head, (n_layer, n_head) arrays, from one forward pass.

    The patterns are reduced inside the hooks, so memory stays that of one layer's pattern. With
    `with_loss`, also "token_loss" (B, S - 1): the loss of predicting each token from the ones
    before it, from the same pass (the copying probe reads it: see `copying.copy_losses_from`).
    """
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    mask = induction_mask(tokens)
    found: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def score(pattern: torch.Tensor, name: str) -> None:
        found[int(name.split(".")[1])] = _reduce(pattern, mask)

    was = model.training
    model.eval()
    try:
        with model.hooks([(lambda n: n.endswith(PATTERN_SUFFIX), score)]):
            logits, _ = model(tokens)  # (B, S, V)
    finally:
        model.train(was)
    if not found:
        raise UserError("the model exposes no `blocks.{i}.attn.pattern` hook points; probes need a scalelab GPT")
    layers = sorted(found)
    out = {
        "prefix_matching": torch.stack([found[i][0] for i in layers]).cpu().numpy(),
        "detector": torch.stack([found[i][1] for i in layers]).cpu().numpy(),
    }
    if with_loss:
        V = logits.size(-1)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, V), tokens[:, 1:].reshape(-1), reduction="none")
        out["token_loss"] = loss.view(tokens.size(0), -1).cpu().numpy()
    return out


def prefix_matching_scores(model, tokens: torch.Tensor) -> np.ndarray:
    """Olsson et al. 2022 prefix-matching score, (n_layer, n_head), on repeated random tokens."""
    return head_scores(model, tokens)["prefix_matching"]


def detector_scores(model, tokens: torch.Tensor) -> np.ndarray:
    """TransformerLens induction-head detector score ('mul'), (n_layer, n_head)."""
    return head_scores(model, tokens)["detector"]
