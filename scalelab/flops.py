"""FLOPs accounting and model FLOPs utilisation (MFU).

Training FLOPs per token = 6 N + 12 L H Q T (PaLM, Chowdhery et al. 2022, appendix B): N the
parameters used in matmuls (position embeddings excluded), L layers, H heads, Q head dimension,
T context. The attention term counts the QK^T and AV matmuls, forward and backward.
"""

from __future__ import annotations

# dense bf16 peaks (not the 2:4-sparse figures), FLOP/s
PEAK_BF16_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is 756e12
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def flops_per_token(params_flops: int, n_layer: int, n_head: int, head_dim: int, context: int) -> int:
    """Training FLOPs per token (forward + backward), PaLM appendix B."""
    return 6 * params_flops + 12 * n_layer * n_head * head_dim * context


def training_flops(params_flops: int, n_layer: int, n_head: int, head_dim: int, context: int, tokens: int) -> int:
    """C = (6N + 12 L H Q T) * D."""
    return flops_per_token(params_flops, n_layer, n_head, head_dim, context) * tokens


def peak_flops(device_name: str | None) -> float | None:
    """The bf16 dense peak of a CUDA device by name, or None (CPU or unknown card)."""
    if not device_name:
        return None
    for key, value in PEAK_BF16_FLOPS.items():
        if key.lower() in device_name.lower():
            if key == "H100" and "pcie" in device_name.lower():
                return 756e12
            return value
    return None


def mfu(flops_per_token_: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the device's peak."""
    if not peak:
        return None
    return flops_per_token_ * tokens_per_s / peak
