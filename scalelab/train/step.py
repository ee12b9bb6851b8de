"""One optimizer step: gradient accumulation over micro-batches, clipping, the optimizers' update; and the
first step of a compiled run, which compiles, is timed apart and falls back to eager should compilation fail."""

from __future__ import annotations

import time
import warnings
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


def first_compiled_step(
    model: torch.nn.Module, fwd: torch.nn.Module, opts: list, sampler, tc: TrainConfig, lr_scale: float,
    ctx: AbstractContextManager, d: dd.Dist, device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module, float, str | None]:  # fmt: skip
    """`train_step` through the compiled `fwd`, which compiles it; return (loss, grad norm, the forward to use
    from now on, seconds taken: compilation plus this step, why compilation failed or None).

    Should compilation fail (no C++ compiler, an op inductor cannot lower), warn and redo the step eagerly
    from the same batch (no parameter has moved: compilation happens in the forward and backward), so that
    the run goes on as with `train.compile` off. An error of the model itself recurs eagerly and is raised.
    """
    snapshot = sampler.state_dict()
    t0 = time.perf_counter()
    try:
        loss, gnorm = train_step(model, fwd, opts, sampler, tc, lr_scale, ctx, d, device)
        return loss, gnorm, fwd, time.perf_counter() - t0, None
    except Exception as e:  # noqa: BLE001 - whatever the compiler raised
        failure = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
    warnings.warn(f"torch.compile failed ({failure}); training without it (train.compile=false skips the attempt)",
                  RuntimeWarning, stacklevel=2)  # fmt: skip
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    sampler.load_state_dict(snapshot)
    fwd = dd.apply_ddp(model, d, device)
    loss, gnorm = train_step(model, fwd, opts, sampler, tc, lr_scale, ctx, d, device)
    return loss, gnorm, fwd, time.perf_counter() - t0, failure
