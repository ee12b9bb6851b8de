"""One optimizer step: gradient accumulation over micro-batches, clipping, the optimizers' update."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from scalelab.config import TrainConfig
from scalelab.train import distributed as dd
from scalelab.train.optim import set_lr


def train_step(
    model: torch.nn.Module, fwd: torch.nn.Module, opts: list, sampler, tc: TrainConfig, lr_scale: float,
    ctx: AbstractContextManager, d: dd.Dist, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Do one step at `lr_scale` times the peak rates; return (mean micro-batch loss, grad norm), unsynced.

    `fwd` is the model as wrapped for the forward pass (compiled, DDP); gradients are reduced across
    processes only on the last micro-batch.
    """
    set_lr(opts, lr_scale)
    loss_sum = 0.0
    for micro in range(tc.grad_accum):
        x, y = sampler.next(device)  # (B, T), (B, T)
        sync = fwd.no_sync() if d.enabled and micro < tc.grad_accum - 1 else nullcontext()
        with sync, ctx:
            _, loss = fwd(x, y, return_logits=False)  # chunked loss: no full fp32 logits
        (loss / tc.grad_accum).backward()
        loss_sum += loss.detach()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or float("inf"))
    for opt in opts:
        opt.step()
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    return loss_sum / tc.grad_accum, gnorm
