"""The equivalence check of an export or import: scalelab's logits against the HF model's."""

from __future__ import annotations

import torch

from scalelab.errors import UserError

SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog. Scaling laws relate the loss of a language model to "
    "its parameters, its data and its compute.\n"
)
TOLERANCE = 1e-4  # fp32, on logits scaled to at most 1 (absolute below 1)


def probe_inputs(tokenizer, vocab_size: int, block_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids over the whole vocabulary, and real text (repeated to fill up to 64 positions)."""
    T = min(block_size, 64)
    gen = torch.Generator().manual_seed(seed)
    inputs = {"random": torch.randint(0, vocab_size, (2, T), generator=gen)}
    try:
        ids = tokenizer.encode(SAMPLE_TEXT * 8)[:T]
    except Exception:  # a char vocabulary without these characters: random ids only
        ids = []
    if len(ids):
        inputs["text"] = torch.as_tensor(ids, dtype=torch.long).view(1, -1)
    return inputs


@torch.no_grad()
def max_logit_diff(gpt, hf_model, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """{input name: max |scalelab logits - HF logits| / max(1, max |logits|)} in fp32."""
    gpt, hf_model = gpt.float().eval(), hf_model.float().eval()
    out = {}
    for name, ids in inputs.items():
        ours = gpt(ids)[0]  # (B, T, V)
        theirs = hf_model(input_ids=ids).logits  # (B, T, V)
        scale = max(1.0, float(ours.abs().max()))
        out[name] = float((ours - theirs).abs().max()) / scale
    return out


def require_match(diffs: dict[str, float], what: str, tolerance: float = TOLERANCE) -> None:
    bad = {k: v for k, v in diffs.items() if not v <= tolerance}
    if bad:
        raise UserError(f"{what}: the logits differ by {bad} (tolerance {tolerance}); nothing was written. "
                        "This is a bug in the conversion: please report it with the model's config")  # fmt: skip
