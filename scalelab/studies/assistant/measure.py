"""The assistant study's evaluations of one size: the plain model without and with the prompt, and
its context-distilled student without the prompt, on the same held-out text and items."""

from __future__ import annotations

import math

import numpy as np
import torch

from scalelab.align.distill_evals import choice_side_by_side, upper_share
from scalelab.errors import UserError
from scalelab.evals.choice_format import ChoiceItem
from scalelab.prompting import batches, contexts, fit_prompt, source_tokens, text_windows

STARTS = ("plain", "prompted", "distilled")


@torch.no_grad()
def window_losses(model, windows: np.ndarray, eot_id: int, prompt_ids: list[int] | None = None) -> np.ndarray:
    """Mean next-token loss (nats) of each window: (N,)."""
    out = []
    for sl in batches(len(windows), 32):
        x, offset = contexts(windows[sl], prompt_ids, eot_id)
        logits, _ = model(torch.from_numpy(x))
        lp = torch.log_softmax(logits[:, offset : offset + windows.shape[1]].float(), -1)
        y = torch.from_numpy(np.array(windows[sl], dtype=np.int64))
        out.append(-lp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(-1))
    return torch.cat(out).numpy()


def mean_ci(values: np.ndarray, seed: int, n_boot: int = 1000) -> dict:
    """Mean and 95% bootstrap interval (over windows) of a per-window quantity."""
    rng = np.random.default_rng(seed)
    boots = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    return {"mean": float(values.mean()), "ci": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]}


def format_items(source: str, skip: int, n: int, seed: int, length: int = 40) -> list[ChoiceItem]:
    """Binary-choice items of the format: a line of a document the models never saw (the source's
    documents after the first `skip`, which make the corpus), as written vs in capitals; the
    capitalised one is 'correct' (it is what the prompt asks for)."""
    from scalelab.data.sources import iter_documents

    items: list[ChoiceItem] = []
    for i, doc in enumerate(iter_documents(source)):
        if i < skip:
            continue
        for line in doc.text.splitlines():
            s = line.strip()[:length]
            if len(s) >= 16 and sum(c.islower() for c in s) >= 8 and s.isascii():
                items.append(ChoiceItem("", (s.upper(), s), 0))
                break
        if len(items) >= n:
            break
    if len(items) < 4:
        raise UserError(f"only {len(items)} format-choice items in the documents of {source!r} after the first {skip} "
                        "(the corpus); lower corpus_documents so that some documents stay unseen")  # fmt: skip
    np.random.default_rng(seed).shuffle(items)
    return items


def measure_size(lm_dir, student_dir, prompt, config, corpus: str) -> dict:
    """Loss, format choice and format probe of the three starting points of one size."""
    from scalelab.align.backbones import GPTBackbone
    from scalelab.align.pm import PreferenceModel
    from scalelab.train.checkpoint import load_for_inference

    torch.manual_seed(config.seed)
    lm, tok, _ = load_for_inference(lm_dir)
    student, _, _ = load_for_inference(student_dir)
    ids, fit = fit_prompt(prompt, tok, lm.cfg.block_size, min_room=config.distill_window)
    tokens = source_tokens(corpus, tok, "heldout", max_tokens=1 << 18)
    windows = text_windows(tokens, config.distill_window, config.n_loss_windows, seed=config.seed + 11)
    losses = {"plain": window_losses(lm, windows, tok.eot_id), "prompted": window_losses(lm, windows, tok.eot_id, ids),
              "distilled": window_losses(student, windows, tok.eot_id)}  # fmt: skip
    loss = {k: mean_ci(v, config.seed) for k, v in losses.items()}
    tax = {"distilled": mean_ci(losses["distilled"] - losses["plain"], config.seed),
           "prompted": mean_ci(losses["prompted"] - losses["plain"], config.seed)}
    items = format_items(config.corpus, config.corpus_documents, config.n_choice, config.seed)
    plain = choice_side_by_side(PreferenceModel(GPTBackbone(lm), tok, "imitation"), items, prompt)
    distilled = choice_side_by_side(PreferenceModel(GPTBackbone(student), tok, "imitation"), items)
    choice = {"plain": plain["accuracy"], "prompted": plain["accuracy_prompted"], "distilled": distilled["accuracy"],
              "n": plain["n"]}  # fmt: skip
    choice["ci"] = {k: _binomial_ci(choice[k], choice["n"]) for k in STARTS}
    probe = {"plain": upper_share(lm, tok, None, n_samples=config.n_samples, seed=config.seed),
             "prompted": upper_share(lm, tok, ids, n_samples=config.n_samples, seed=config.seed),
             "distilled": upper_share(student, tok, None, n_samples=config.n_samples, seed=config.seed)}  # fmt: skip
    return {"loss": loss, "tax": tax, "choice": choice, "upper_share": probe, "prompt": fit.to_dict(),
            "window": config.distill_window, "n_windows": len(windows)}


def _binomial_ci(p: float, n: int) -> list[float]:
    half = 1.96 * math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))
    return [max(0.0, p - half), min(1.0, p + half)]


def ood_by_size(lm_dir, config) -> dict:
    """OOD AUROC per layer of one model (Bai et al. 2022, section on OOD), through `scalelab.evals.ood`."""
    try:
        from scalelab.data.ood_sets import benchmark
        from scalelab.evals.ood import ood_auroc_by_layer
    except ImportError as e:
        return {"error": f"the OOD evaluation is not available here ({e})"}
    from scalelab.train.checkpoint import load_for_inference

    lm, tok, _ = load_for_inference(lm_dir)
    try:
        in_texts, out_texts = benchmark(config.ood_benchmark, config.ood_n, config.seed)
        half = len(in_texts) // 2
        res = ood_auroc_by_layer(lm, tok, in_texts[:half], in_texts[half:], out_texts, seed=config.seed)
    except UserError as e:
        return {"error": str(e)}
    return {k: res[k] for k in ("layers", "best_layer", "shrinkage", "n_fit", "dim", "exposure") if k in res}
