"""GPU check of the chunked cross-entropy at GPT-2 124M's output shape (12 x 1024 tokens, vocab 50,304).

bf16 autocast, as the engine trains: the loss and the gradients of the final hidden states and of the
head's weight by the plain path (full logits, then an fp32 copy) and by `chunked_cross_entropy`, their
differences, and the peak CUDA memory and time of each. Prints one JSON object.

    python benchmarks/gpu_chunked_loss.py
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from scalelab.model.loss import chunked_cross_entropy


def run(fn, x, w, t) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    x.grad = w.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = fn(x, w, t)
    loss.backward()
    torch.cuda.synchronize()
    dt, peak = time.perf_counter() - t0, torch.cuda.max_memory_allocated() - base
    return loss.detach(), x.grad.clone(), w.grad.clone(), dt, peak


def plain(x, w, t):
    logits = x @ w.t()
    return F.cross_entropy(logits.float(), t, ignore_index=-1)


def main() -> None:
    torch.manual_seed(0)
    n, c, v = 12 * 1024, 768, 50304
    x = torch.randn(n, c, device="cuda", requires_grad=True)
    w = (torch.randn(v, c, device="cuda") * 0.02).requires_grad_()
    t = torch.randint(0, v, (n,), device="cuda")
    out = {}
    for name, fn in (("plain", plain), ("chunked", chunked_cross_entropy)):
        run(fn, x, w, t)  # warm-up
        loss, gx, gw, dt, peak = run(fn, x, w, t)
        out[name] = {"loss": loss.item(), "ms": dt * 1000, "peak_extra_gb": peak / 2**30, "gx": gx, "gw": gw}
    p, q = out["plain"], out["chunked"]
    res = {"loss_diff": abs(p["loss"] - q["loss"]), "grad_x_max_diff": (p["gx"] - q["gx"]).abs().max().item(),
           "grad_w_max_diff": (p["gw"] - q["gw"]).abs().max().item(),
           **{f"{k}_{m}": out[k][m] for k in out for m in ("loss", "ms", "peak_extra_gb")}}  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
