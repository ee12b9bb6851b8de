"""Optimizers: AdamW (fused on CUDA and CPU) and Muon for 2-D weights with AdamW for the rest.

Muon (Jordan et al. 2024) replaces each 2-D weight's momentum update by its nearest
semi-orthogonal matrix, computed with a few Newton-Schulz iterations of a quintic polynomial.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from scalelab.config import TrainConfig


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T for each g = U S V^T (batched over leading dims), by the quintic iteration
    X <- aX + (bA + cA^2)X, A = XX^T.

    The coefficients (3.4445, -4.7750, 2.0315) push all singular values towards 1 quickly without
    needing convergence; runs in bfloat16 on CUDA and float32 elsewhere.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)
    for _ in range(steps):
        A = x @ x.mT
        x = a * x + (b * A + c * A @ A) @ x
    if transposed:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum, then orthogonalise the update of each 2-D weight (nesterov by default).

    Weights of the same shape are orthogonalised together in one batched iteration, which saves
    most of the per-matrix overhead on CPU and kernel launches on GPU.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5):  # fmt: skip
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay, ns_steps=ns_steps))  # fmt: skip

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            by_shape: dict[tuple, list] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(tuple(p.shape), []).append(p)
            for shape, params in by_shape.items():
                updates = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                    buf.mul_(group["momentum"]).add_(p.grad)
                    updates.append(p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf)
                ortho = newton_schulz(torch.stack(updates), group["ns_steps"])
                scale = max(1.0, shape[0] / shape[1]) ** 0.5
                for p, u in zip(params, ortho.unbind(0)):
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(u, alpha=-group["lr"] * scale)


FUSED_DEVICES = ("cuda", "cpu")  # torch's fused AdamW kernels: one pass over each parameter per step


def _adamw(groups, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused where torch has the kernel (on the CPU too, where it beat foreach by ~8% of a
    step of the 4 x 128 char model: benchmarks/RESULTS.md, Throughput), else foreach. Same update."""
    fused = device.type in FUSED_DEVICES
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None,
                             foreach=None if fused else True)  # fmt: skip


def build_optimizers(model: nn.Module, cfg: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """AdamW with decay on 2-D weights only; or Muon on the blocks' 2-D weights plus AdamW for the rest.

    Each param group carries `base_lr`, which the schedule multiplies.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        decay = [p for n, p in named if p.dim() >= 2]
        no_decay = [p for n, p in named if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
            {"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr},
        ]
        return [_adamw(groups, cfg, device)]
    hidden = [p for n, p in named if p.dim() == 2 and n.startswith("blocks.")]
    hidden_ids = {id(p) for p in hidden}
    rest = [p for n, p in named if id(p) not in hidden_ids]
    embed_like = [p for p in rest if p.dim() >= 2]
    scalars = [p for p in rest if p.dim() < 2]
    adam = _adamw(
        [
            {"params": embed_like, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
            {"params": scalars, "weight_decay": 0.0, "base_lr": cfg.lr},
        ],
        cfg,
        device,
    )
    muon = Muon([{"params": hidden, "base_lr": cfg.muon_lr}], lr=cfg.muon_lr)
    return [muon, adam]


def set_lr(optimizers: list[torch.optim.Optimizer], factor: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
