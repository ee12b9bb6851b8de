"""Out-of-distribution detection on a model's activations (Bai et al. 2022, arXiv 2204.05862, 5.4).

A text's activation vector at layer l is the residual stream after block l
(`blocks.{l}.resid_post`), mean-pooled over the text's real tokens (never over padding: texts are
right-padded and the model is causal, so padding changes neither the real positions nor the pool).
Per layer, `OODFit` holds class means and a shared covariance of in-distribution vectors
(`ood_stats.fit_gaussian`: Ledoit-Wolf shrinkage when there are fewer texts than dimensions);
new texts are scored by Mahalanobis distance and by the simplified relative Mahalanobis distance;
`ood_auroc_by_layer` reports the AUROC of both per layer with a bootstrap interval, and the
outlier-exposure curve (AUROC vs number of labelled outliers) at the best layer.

A fit is saved as `ood_fit.safetensors` + `ood_fit.json` (never pickle) and remembers the
tokenizer it was made with: scoring with a model of another tokenizer or width is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from scalelab.errors import UserError
from scalelab.evals.ood_stats import (
    GaussianFit,
    blas_one_thread,
    bootstrap_auroc,
    diagonal_mahalanobis,
    exposure_curve,
    fit_gaussian,
    mahalanobis,
)

Progress = Callable[[int, int], None]
EXPOSURE_MS = (1, 2, 4, 8, 16, 32)


class _Stop(Exception):
    """Raised by the last layer's hook: the final norm and the unembedding are not needed."""


def tokenizer_id(tokenizer) -> str:
    """A short hash of the tokenizer's full spec: two tokenizers with the same id encode alike."""
    return hashlib.sha256(json.dumps(tokenizer.spec(), sort_keys=True).encode()).hexdigest()[:16]


def check_tokenizer(model, tokenizer) -> None:
    """A clear error when the tokenizer cannot be the model's (ids beyond its vocabulary)."""
    vocab = model.cfg.vocab_size
    if tokenizer.vocab_size > vocab or tokenizer.eot_id >= vocab:
        raise UserError(
            f"the {tokenizer.kind} tokenizer has {tokenizer.vocab_size} tokens but the model only {vocab}: it "
            "belongs to another model; use the tokenizer saved with the model's checkpoint"
        )


def encode_texts(tokenizer, texts: list[str], max_tokens: int) -> list[np.ndarray]:
    """Token ids of each text, cut to `max_tokens`; an empty text becomes the end-of-document token."""
    ids = tokenizer.encode_batch(list(texts))
    return [a[:max_tokens] if len(a) else np.array([tokenizer.eot_id], dtype=np.int64) for a in ids]


def _pooled_batch(model, batch: torch.Tensor, mask: torch.Tensor, last: str) -> dict[int, torch.Tensor]:
    """{layer: (B, C) mean of resid_post over the masked-in positions} of one batch (B, T)."""
    pooled: dict[int, torch.Tensor] = {}
    weights = mask.float()[:, :, None]  # (B, T, 1)

    def pool(x: torch.Tensor, name: str) -> None:
        pooled[int(name.split(".")[1])] = (x.float() * weights).sum(1) / weights.sum(1)  # (B, C)
        if name == last:
            raise _Stop

    try:
        model.run_with_hooks(batch, fwd_hooks=[(lambda n: n.endswith(".resid_post"), pool)])
    except _Stop:
        pass
    return pooled


@torch.inference_mode()
def pooled_activations(model, tokenizer, texts: list[str], *, batch_size: int = 32, max_tokens: int | None = None,
                       progress: Progress | None = None, bf16: bool = False) -> np.ndarray:  # fmt: skip
    """(L, N, C) float32: residual stream after each of the L blocks, mean over each text's real tokens.

    Texts longer than the context (or `max_tokens`) are cut. Batches are formed by length, so that
    little compute goes to padding; the result is in the order of `texts`. `bf16`: run the matmuls
    in bfloat16 (autocast; about 3x less CPU time on CPUs with AMX, pooled values within ~1%).
    """
    check_tokenizer(model, tokenizer)
    limit = min(model.cfg.block_size, max_tokens or model.cfg.block_size)
    ids = encode_texts(tokenizer, texts, limit)
    n_layer, dim = model.cfg.n_layer, model.cfg.n_embd
    out = np.zeros((n_layer, len(ids), dim), dtype=np.float32)
    order = np.argsort([len(a) for a in ids], kind="stable")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    last = f"blocks.{n_layer - 1}.resid_post"
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            lengths = torch.tensor([len(ids[i]) for i in rows])
            batch = torch.full((len(rows), int(lengths.max())), tokenizer.eot_id, dtype=torch.long)
            for r, i in enumerate(rows):
                batch[r, : len(ids[i])] = torch.from_numpy(ids[i])
            mask = (torch.arange(batch.size(1))[None, :] < lengths[:, None]).to(device)  # (B, T)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                pooled = _pooled_batch(model, batch.to(device), mask, last)
            for layer, value in pooled.items():
                out[layer, rows] = value.cpu().numpy()
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    return out


@dataclass
class OODFit:
    """Per-layer Gaussian fits of a model's pooled activations on in-distribution texts."""

    layers: list[GaussianFit]
    meta: dict
    """n_fit, dim, n_layer, classes, max_tokens, bf16, tokenizer (kind, vocab_size, id), model (run id, path)."""

    @property
    def shrunk(self) -> bool:
        return any(f.shrunk for f in self.layers)

    def check_model(self, model, tokenizer) -> None:
        """Refuse a model whose tokenizer or shape differs from the one this fit was made with."""
        want = self.meta["tokenizer"]
        if tokenizer_id(tokenizer) != want["id"]:
            raise UserError(
                f"this OOD fit was made with a {want['kind']} tokenizer of {want['vocab_size']} tokens, but the model "
                f"uses a {tokenizer.kind} tokenizer of {tokenizer.vocab_size} tokens; refit with `scalelab ood fit` "
                "on this model"
            )
        if (model.cfg.n_layer, model.cfg.n_embd) != (self.meta["n_layer"], self.meta["dim"]):
            raise UserError(
                f"this OOD fit has {self.meta['n_layer']} layers of width {self.meta['dim']} but the model has "
                f"{model.cfg.n_layer} of width {model.cfg.n_embd}; refit with `scalelab ood fit` on this model"
            )

    def score_activations(self, acts: np.ndarray) -> dict[str, np.ndarray]:
        """{"mahalanobis": (L, N), "relative": (L, N)} of activations (L, N, C)."""
        with blas_one_thread():
            return self._score(acts)

    def _score(self, acts: np.ndarray) -> dict[str, np.ndarray]:
        full = np.stack([mahalanobis(f, a) for f, a in zip(self.layers, acts, strict=True)])
        diag = np.stack([diagonal_mahalanobis(f, a) for f, a in zip(self.layers, acts, strict=True)])
        return {"mahalanobis": full, "relative": full - diag}

    def score(self, model, tokenizer, texts: list[str], *, batch_size: int = 32,
              progress: Progress | None = None) -> dict[str, np.ndarray]:  # fmt: skip
        self.check_model(model, tokenizer)
        acts = pooled_activations(model, tokenizer, texts, batch_size=batch_size,
                                  max_tokens=self.meta["max_tokens"], progress=progress,
                                  bf16=bool(self.meta.get("bf16")))  # fmt: skip
        return self.score_activations(acts)

    def save(self, folder: str | Path) -> Path:
        """Write ood_fit.safetensors (means, precisions per layer) and ood_fit.json (the rest)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "means": np.stack([f.means for f in self.layers]),  # (L, K, C)
            "precision": np.stack([f.precision for f in self.layers]),  # (L, C, C)
            "precision_diag": np.stack([f.precision_diag for f in self.layers]),  # (L, C)
        }
        save_file(tensors, str(folder / "ood_fit.safetensors.tmp"))
        (folder / "ood_fit.safetensors.tmp").replace(folder / "ood_fit.safetensors")
        meta = {**self.meta, "shrunk": [f.shrunk for f in self.layers], "shrinkage": [f.shrinkage for f in self.layers]}
        (folder / "ood_fit.json.tmp").write_text(json.dumps(meta, indent=1))
        (folder / "ood_fit.json.tmp").replace(folder / "ood_fit.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> OODFit:
        folder = Path(folder)
        if not (folder / "ood_fit.json").is_file() or not (folder / "ood_fit.safetensors").is_file():
            raise UserError(f"{folder} holds no OOD fit (ood_fit.json + ood_fit.safetensors); run `scalelab ood fit`")
        try:
            meta = json.loads((folder / "ood_fit.json").read_text())
            t = load_file(str(folder / "ood_fit.safetensors"))
            layers = [GaussianFit(t["means"][i], t["precision"][i], t["precision_diag"][i], bool(meta["shrunk"][i]),
                                  float(meta["shrinkage"][i])) for i in range(len(t["means"]))]  # fmt: skip
        except (ValueError, KeyError, IndexError, OSError) as e:
            problem = f"{type(e).__name__}: {e}"
            raise UserError(f"{folder}: the OOD fit is unreadable ({problem}); run `scalelab ood fit` again") from None
        return cls(layers, meta)


def fit_activations(acts: np.ndarray, labels: list | None = None, meta: dict | None = None) -> OODFit:
    """An `OODFit` from activations (L, N, C), with optional class labels (N,) of any hashable kind."""
    classes: list = []
    codes = None
    if labels is not None:
        if len(labels) != acts.shape[1]:
            raise UserError(f"{len(labels)} labels for {acts.shape[1]} texts; give one label per text")
        classes = sorted({str(x) for x in labels})
        codes = np.array([classes.index(str(x)) for x in labels])
    with blas_one_thread():
        layers = [fit_gaussian(a, codes) for a in acts]
    base = {"n_fit": int(acts.shape[1]), "dim": int(acts.shape[2]), "n_layer": int(acts.shape[0]),
            "classes": classes or ["in"]}  # fmt: skip
    return OODFit(layers, {**base, **(meta or {})})


def fit_ood(model, tokenizer, texts: list[str], labels: list | None = None, *, batch_size: int = 32,
            max_tokens: int | None = None, progress: Progress | None = None,
            model_info: dict | None = None, bf16: bool = False) -> OODFit:  # fmt: skip
    """Fit per-layer class means and shared covariance of `model`'s pooled activations on `texts`."""
    acts = pooled_activations(model, tokenizer, texts, batch_size=batch_size, max_tokens=max_tokens, progress=progress,
                              bf16=bf16)  # fmt: skip
    tok = {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "id": tokenizer_id(tokenizer)}
    meta = {"max_tokens": max_tokens, "bf16": bf16, "model": model_info or {}, "tokenizer": tok}
    return fit_activations(acts, labels, meta)


def auroc_report(fit: OODFit, test_in: np.ndarray, test_out: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                 fit_in: np.ndarray | None = None, exposure_draws: int = 5) -> dict:  # fmt: skip
    """AUROC per layer (both scores, bootstrap CI) from activations (L, N, C); the exposure curve at the
    best layer when the fit activations `fit_in` are given."""
    with blas_one_thread():
        return _auroc_report(fit, test_in, test_out, n_boot, seed, fit_in, exposure_draws)


def _auroc_report(fit: OODFit, test_in: np.ndarray, test_out: np.ndarray, n_boot: int, seed: int,
                  fit_in: np.ndarray | None, exposure_draws: int) -> dict:  # fmt: skip
    s_in, s_out = fit.score_activations(test_in), fit.score_activations(test_out)
    layers = []
    for layer in range(len(fit.layers)):
        a, ci = bootstrap_auroc(s_in["mahalanobis"][layer], s_out["mahalanobis"][layer], n_boot, seed + layer)
        r, ci_r = bootstrap_auroc(s_in["relative"][layer], s_out["relative"][layer], n_boot, seed + layer)
        layers.append({"layer": layer, "auroc": a, "ci": list(ci), "auroc_rel": r, "ci_rel": list(ci_r),
                       "shrinkage": fit.layers[layer].shrinkage})  # fmt: skip
    best = max(layers, key=lambda row: row["auroc"])["layer"]
    result = {"layers": layers, "best_layer": best, "shrinkage": fit.shrunk, "n_fit": fit.meta["n_fit"],
              "dim": fit.meta["dim"], "n_in_test": int(test_in.shape[1]),
              "n_out_test": int(test_out.shape[1])}  # fmt: skip
    if fit_in is not None and exposure_draws > 0:
        ms = [m for m in EXPOSURE_MS if m < test_out.shape[1]]
        curve = exposure_curve(fit_in[best], test_in[best], test_out[best], ms, exposure_draws, seed)
        result["exposure"] = {"layer": best, "curve": curve}
    return result


def ood_auroc_by_layer(model, tokenizer, in_fit: list[str], in_test: list[str], out_test: list[str], *,
                       n_boot: int = 200, seed: int = 0, batch_size: int = 32, max_tokens: int | None = None,
                       labels: list | None = None, exposure_draws: int = 5, bf16: bool = False,
                       progress: Progress | None = None) -> dict:  # fmt: skip
    """AUROC per layer of Mahalanobis and relative Mahalanobis scores, fit on `in_fit`.

    Returns {"layers": [{"layer", "auroc", "ci", "auroc_rel", "ci_rel", "shrinkage"}], "best_layer",
    "shrinkage" (True when a covariance was shrunk: fewer fit texts than dimensions), "n_fit", "dim",
    "n_in_test", "n_out_test", "exposure": {"layer", "curve": [{"m", "auroc", "lo", "hi", "draws"}]}}.
    The exposure curve draws its m labelled outliers from `out_test` and scores the rest of it.
    """
    for name, texts in (("in_fit", in_fit), ("in_test", in_test), ("out_test", out_test)):
        if len(texts) < 2:
            raise UserError(f"{name} has {len(texts)} texts; OOD detection needs at least 2 in each set")

    def acts(texts: list[str]) -> np.ndarray:
        return pooled_activations(model, tokenizer, texts, batch_size=batch_size, max_tokens=max_tokens,
                                  progress=progress, bf16=bf16)  # fmt: skip

    a_fit = acts(in_fit)
    fit = fit_activations(a_fit, labels)
    return auroc_report(fit, acts(in_test), acts(out_test), n_boot=n_boot, seed=seed, fit_in=a_fit,
                        exposure_draws=exposure_draws)  # fmt: skip
