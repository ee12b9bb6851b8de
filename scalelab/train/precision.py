"""A run's precision: `train.dtype` (autocast) and `train.matmul_precision` (torch's float32 matmul knob).

`train.dtype='bfloat16'` runs the forward under `torch.autocast` to bfloat16 on the run's device, the CPU
included: matmuls take and give bfloat16, and so do the ops between two of them (the MLP's activation); the
residual stream, hence the norms, stays float32, the loss is computed in float32, and parameters, gradients
and optimizer state are float32. CPU attention at short contexts is computed in float32 even then
(`scalelab.model.gpt.attention`: torch's bfloat16 CPU attention backward is 2-5x slower there).

`train.matmul_precision` is the float32 matmul precision of a run, set for the run and restored after.

It is torch's own knob (`torch.set_float32_matmul_precision`): 'highest' computes float32 matmuls in
float32; 'high' lets CUDA use TensorFloat-32; 'medium' lets them use bfloat16 inputs with float32
accumulation, which on a CPU with bfloat16 units (AMX, AVX512-BF16) makes oneDNN's matmuls 2-3x faster
(768 x 128 x 512: 0.69 -> 0.23 ms on one core of the dev machine). Parameters, optimizer state and every
other op stay float32. Attention keeps full precision on the CPU (`scalelab.model.gpt.attention`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from scalelab.model.gpt import keep_attention_full_precision


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16) and oneDNN is built in."""
    if not torch.backends.mkldnn.is_available():
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)  # a torch without the probes: False


def _warn_without_bf16_units(setting: str, instead: str, device: torch.device) -> None:
    """Warn that `setting` (a bfloat16 lever) may slow this run down, on a CPU that has no bfloat16 units."""
    if device.type == "cpu" and not cpu_has_bf16():
        warnings.warn(f"{setting} has no fast path on this CPU (no AMX or AVX512-BF16): its matmuls may be slower, "
                      f"not faster; {instead} here", RuntimeWarning, stacklevel=4)  # fmt: skip


def autocast(dtype: str, device: torch.device) -> AbstractContextManager:
    """The forward's context for `train.dtype`: 'auto' is bfloat16 on CUDA and float32 elsewhere."""
    if not (dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda")):
        return nullcontext()
    _warn_without_bf16_units("train.dtype='bfloat16'", "leave train.dtype at 'auto' (float32 on the CPU)", device)
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextmanager
def matmul_precision(level: str | None, device: torch.device) -> Iterator[None]:
    """Run the block at float32 matmul precision `level` (None: leave torch's setting as it is)."""
    if level is None:
        yield
        return
    if level == "medium":
        _warn_without_bf16_units("train.matmul_precision='medium'", "leave train.matmul_precision unset", device)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(level)
    guarded = keep_attention_full_precision(level != "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)
        keep_attention_full_precision(guarded)
