"""In-context copying and in-context learning, from per-token losses `model(idx, targets, reduction="none")`.

- Copying (Hernandez et al. 2022, arXiv 2205.10487, section 5: "loss on a passage copied many
  times in context"; TransformerLens's `induction_loss` is the two-copy case): a start token,
  then a passage repeated n_copies times; the loss on each copy. Copy 1 can only be predicted
  from what the model knows; copies 2+ can be copied from context, so a model that copies has
  copy_loss_later far below copy_loss_first. `probes.run_probes` reads these losses from the
  prefix-matching pass (Olsson's 25 random tokens x 4); `copy_losses` takes any passages,
  real text included.
- In-context learning score (Olsson et al. 2022): loss at token 500 minus loss at token 50 of a
  512-token context, on real held-out text. Scaled to a context of T tokens: positions
  round(50/512 T) and round(500/512 T), each averaged over a band of +-T//64 positions (a single
  position is noisy with a small batch). Negative = the model uses its context.
"""

from __future__ import annotations

import numpy as np
import torch

from scalelab.errors import UserError

OLSSON_CONTEXT, OLSSON_EARLY, OLSSON_LATE = 512, 50, 500


@torch.no_grad()
def token_losses(model, idx: torch.Tensor) -> torch.Tensor:
    """(B, S) ids -> (B, S - 1) loss of predicting each token from the ones before it, in eval mode."""
    device = next(model.parameters()).device
    idx = idx.to(device)
    was = model.training
    model.eval()
    try:
        _, loss = model(idx[:, :-1], idx[:, 1:], reduction="none")
    finally:
        model.train(was)
    return loss.float()


def copied_passages(passages: torch.Tensor, n_copies: int, bos: int) -> torch.Tensor:
    """(B, n) passages -> (B, 1 + n n_copies): the start token, then each passage n_copies times."""
    B = passages.size(0)
    return torch.cat([torch.full((B, 1), bos, dtype=torch.long), passages.long().repeat(1, n_copies)], dim=1)


def copy_losses_from(token_loss: np.ndarray | torch.Tensor, n: int, n_copies: int) -> dict:
    """Reduce per-token losses (B, n n_copies) of [start, passage x n_copies] to losses per copy.

    Target t (predicting token t + 1) belongs to copy t // n. Returns {"per_copy": [n_copies
    floats], "copy_loss_first": float, "copy_loss_later": float}.
    """
    if n_copies < 2:
        raise UserError(f"n_copies={n_copies}: copying needs at least 2 copies of the passage")
    loss = torch.as_tensor(np.asarray(token_loss), dtype=torch.float32)
    if loss.size(1) != n * n_copies:
        raise ValueError(f"per-token losses of width {loss.size(1)} do not match {n_copies} copies of {n} tokens")
    per_copy = loss.view(loss.size(0), n_copies, n).mean(dim=(0, 2))
    return {
        "per_copy": per_copy.tolist(),
        "copy_loss_first": float(per_copy[0]),
        "copy_loss_later": float(per_copy[1:].mean()),
    }


def copy_losses(model, passages: torch.Tensor, n_copies: int, bos: int) -> dict:
    """Mean loss on each copy of the passages (B, n) put n_copies times after `bos`: see `copy_losses_from`."""
    loss = token_losses(model, copied_passages(passages, n_copies, bos))  # (B, n n_copies)
    return copy_losses_from(loss.cpu(), passages.size(1), n_copies)


def icl_positions(context: int) -> tuple[int, int, int]:
    """(early, late, band) target positions for a context of `context` predicted tokens."""
    early = round(OLSSON_EARLY / OLSSON_CONTEXT * context)
    late = min(round(OLSSON_LATE / OLSSON_CONTEXT * context), context - 1)
    band = context // 64
    return early, late, band


def icl_score(model, windows: np.ndarray | torch.Tensor) -> dict:
    """Olsson et al. 2022 in-context learning score on held-out windows (..., S) of real text.

    Windows longer than the model's context + 1 are cut to fit. Returns {"icl_score": loss_late -
    loss_early, "loss_early", "loss_late", "early", "late", "band"} (positions index predicted tokens).
    """
    w = torch.as_tensor(np.asarray(windows), dtype=torch.long)
    w = w.reshape(-1, w.size(-1))[:, : model.cfg.block_size + 1]
    if w.size(1) < 8:
        raise UserError(f"held-out windows of {w.size(1)} tokens are too short for the in-context learning score; "
                        "pass windows of block_size + 1 tokens")  # fmt: skip
    loss = token_losses(model, w)  # (B, T)
    early, late, band = icl_positions(loss.size(1))

    def at(p: int) -> float:
        return float(loss[:, max(p - band, 0) : min(p + band + 1, loss.size(1))].mean())

    lo_early, lo_late = at(early), at(late)
    return {"icl_score": lo_late - lo_early, "loss_early": lo_early, "loss_late": lo_late,
            "early": early, "late": late, "band": band}  # fmt: skip
