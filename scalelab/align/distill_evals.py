"""Evaluations of one model with and without a prompt, side by side (Askell et al. 2021, section 2).

Every evaluation that scores text takes an optional `Prompt` and reports both numbers on the same
items: the loss on a data set (`loss_side_by_side`), binary choice (`choice_side_by_side`),
preference-model accuracy on comparisons (`pm_side_by_side`), samples (`sample_side_by_side`), and a
format probe used to show what a prompt (or its distillation) does (`upper_share`). Each result
carries the prompt's token accounting (`PromptFit.to_dict()`); texts cut to fit the context with
the prompt are counted, never dropped silently.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from scalelab.align.distill import plain_loss
from scalelab.prompting import Prompt, fit_prompt, source_tokens, text_windows


def loss_side_by_side(model, tokenizer, source: str, prompt: Prompt | None = None, *, window: int | None = None,
                      n_windows: int = 64, seed: int = 0, max_documents: int | None = None,
                      device: str | torch.device = "cpu") -> dict[str, Any]:  # fmt: skip
    """Mean next-token loss (nats/token) on text windows of a data source, unprompted and prompted.

    With a prompt, the windows are as long as the room the prompt leaves (or `window`), and both
    losses are over exactly the same text tokens.
    """
    context = model.cfg.block_size
    out: dict[str, Any] = {}
    ids = None
    if prompt is not None:
        ids, fit = fit_prompt(prompt, tokenizer, context, min_room=2 if window is None else window)
        out["prompt"] = fit.to_dict() | {"source": prompt.source}
        length = window or fit.room
    else:
        length = window or context
    tokens = source_tokens(source, tokenizer, "all", max_documents=max_documents,
                           max_tokens=max(8 * n_windows * length, 1 << 16))  # fmt: skip
    windows = text_windows(tokens, length, n_windows, seed)
    out.update(loss=plain_loss(model, windows, tokenizer.eot_id, device=device), window=length, n_windows=len(windows),
               tokens=int(windows.size), data=source)  # fmt: skip
    if ids is not None:
        out["loss_prompted"] = plain_loss(model, windows, tokenizer.eot_id, ids, device=device)
        out["delta"] = out["loss_prompted"] - out["loss"]
    return out


def _prompt_room(pm, prompt: Prompt) -> dict:
    """The prompt's accounting in a PM's context, which also holds [eot] ... [eot] around the text."""
    _, fit = fit_prompt(prompt, pm.tokenizer, pm.context - 2, min_room=1)
    return fit.to_dict() | {"source": prompt.source}


def choice_side_by_side(pm, items, prompt: Prompt | None = None) -> dict[str, Any]:
    """Binary-choice accuracy (HHH-style items) of a PM or LM, unprompted and with the prompt before each query."""
    from scalelab.align.pm import TruncationCounts
    from scalelab.evals.choice_format import score_choice

    def run(prefix: str) -> tuple[Any, TruncationCounts]:
        first = [pm.encode(prefix + item.query, item.responses[0]) for item in items]
        second = [pm.encode(prefix + item.query, item.responses[1]) for item in items]
        counts = TruncationCounts()
        for text in first + second:
            counts.add(text)
        return score_choice(items, pm.score_texts(first).numpy(), pm.score_texts(second).numpy()), counts

    result, counts = run("")
    out: dict[str, Any] = {"accuracy": result.accuracy, "n": result.n, "per_category": result.per_category,
                           "n_truncated": counts.n_truncated, "scoring": pm.scoring}  # fmt: skip
    if prompt is not None:
        out["prompt"] = _prompt_room(pm, prompt)
        prompted, pcounts = run(prompt.text)
        out.update(accuracy_prompted=prompted.accuracy, per_category_prompted=prompted.per_category,
                   n_truncated_prompted=pcounts.n_truncated)  # fmt: skip
    return out


def pm_side_by_side(pm, comparisons, prompt: Prompt | None = None, seed: int = 0) -> dict[str, Any]:
    """Accuracy (95% bootstrap interval) and ECE of a PM on comparisons, unprompted and with the prompt."""
    from scalelab.align.pm import encode_pairs
    from scalelab.align.pm_train import evaluate_pm

    pairs = encode_pairs(pm, comparisons)
    out: dict[str, Any] = {**evaluate_pm(pm, pairs, seed=seed).summary(), "n_truncated": pairs.counts.n_truncated}
    if prompt is not None:
        out["prompt"] = _prompt_room(pm, prompt)
        prompted = [replace(c, prompt=prompt.text + c.prompt) for c in comparisons]
        ppairs = encode_pairs(pm, prompted)
        ev = evaluate_pm(pm, ppairs, seed=seed).summary()
        out.update({f"{k}_prompted": v for k, v in ev.items() if k != "n_test"})
        out["n_truncated_prompted"] = ppairs.counts.n_truncated
    return out


@torch.no_grad()
def sample_side_by_side(model, tokenizer, text: str, prompt: Prompt | None, tokens: int, temperature: float,
                        top_k: int | None, seed: int) -> dict[str, Any]:  # fmt: skip
    """A continuation of `text` without and (if given) with the prompt before it, from the same seed."""
    from scalelab.model.generate import generate

    def one(prefix_ids: list[int]) -> str:
        ids = [tokenizer.eot_id, *prefix_ids, *[int(i) for i in tokenizer.encode(text)]] if text or prefix_ids else \
            [tokenizer.eot_id]  # fmt: skip
        gen = torch.Generator().manual_seed(seed)
        out = generate(model, torch.tensor([ids]), tokens, temperature=temperature, top_k=top_k, generator=gen)
        return tokenizer.decode(out[0, len(ids) :].tolist())

    out: dict[str, Any] = {"text": text, "sample": one([])}
    if prompt is not None:
        ids, fit = fit_prompt(prompt, tokenizer, model.cfg.block_size, min_room=1)
        out.update(sample_prompted=one(ids), prompt=fit.to_dict() | {"source": prompt.source})
    return out


@torch.no_grad()
def upper_share(model, tokenizer, prompt_ids: list[int] | None = None, *, n_samples: int = 32, tokens: int = 24,
                seed: int = 0) -> float:  # fmt: skip
    """Share of upper-case letters among the letters a model writes from the start of a document
    (after [eot] + prompt): a format a prompt can set and a tiny model can follow."""
    from scalelab.model.generate import generate

    ids = torch.tensor([[tokenizer.eot_id, *(prompt_ids or [])]] * n_samples)
    gen = torch.Generator().manual_seed(seed)
    out = generate(model, ids, tokens, temperature=1.0, top_k=None, generator=gen)
    upper = lower = 0
    for row in out[:, ids.size(1) :].tolist():
        letters = [c for c in tokenizer.decode(row) if c.isascii() and c.isalpha()]
        upper += sum(c.isupper() for c in letters)
        lower += sum(c.islower() for c in letters)
    return upper / max(1, upper + lower)

