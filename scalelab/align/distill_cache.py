"""The prompted teacher's next-token distributions, computed once and memory-mapped.

Context distillation (Askell et al. 2021, arXiv 2112.00861, section 3.1) stores the prompted
model's top-k log-probabilities at every position of a corpus (the paper keeps the top 50) and
lumps the rest of the vocabulary into one "remainder" bucket, so that the student's objective is
a KL between two distributions over k + 1 outcomes. Here a cache folder holds, for N text
windows of L tokens:

    windows.i32    (N, L)     the text tokens (the student's input is [eot] + window[:-1])
    top_ids.i32    (N, L, k)  the teacher's k most likely next tokens at each position
    top_logp.f32   (N, L, k)  their log-probabilities under the teacher
    rest_logp.f32  (N, L)     log of the remainder mass 1 - sum(top-k), floored at REST_FLOOR
    manifest.json             shapes, k, the key and what it was made of, written last

It is written into a temporary folder and renamed into place in one step, so a reader sees a
complete cache or none; a cache whose key matches is reused, never rewritten. The key covers the
teacher's weights, the tokenizer, the prompt, the text windows and k.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scalelab.atomic import building_dir
from scalelab.errors import UserError
from scalelab.prompting import batches, contexts

CACHE_VERSION = 1
REST_FLOOR = -80.0
"""log of a remainder mass that is zero to float precision: keeps every stored number finite."""
FILES = {"windows": ("windows.i32", np.int32), "top_ids": ("top_ids.i32", np.int32),
         "top_logp": ("top_logp.f32", np.float32), "rest_logp": ("rest_logp.f32", np.float32)}  # fmt: skip


def cache_key(teacher_digest: str, tokenizer_spec: dict, prompt_digest: str, windows: np.ndarray, k: int) -> str:
    """What makes two caches the same: teacher weights, tokenizer, prompt, the exact text windows and k."""
    h = hashlib.sha256()
    for part in (f"v{CACHE_VERSION}", teacher_digest, json.dumps(tokenizer_spec, sort_keys=True), prompt_digest,
                 f"k={k}", f"shape={windows.shape}"):  # fmt: skip
        h.update(part.encode() + b"\0")
    h.update(np.ascontiguousarray(windows, dtype=np.int32).tobytes())
    return h.hexdigest()[:20]


def effective_k(k: int, vocab_size: int) -> tuple[int, str | None]:
    """k, or the vocabulary size when k exceeds it (then the cache holds the full distribution), and a note."""
    if k < 1:
        raise UserError(f"top-k must be at least 1, got {k}; the paper keeps 50")
    if k >= vocab_size:
        return vocab_size, (f"top-k {k} >= the vocabulary ({vocab_size} tokens): the cache holds the full "
                            "distribution (k = vocabulary, no remainder bucket)")  # fmt: skip
    return k, None


@dataclass
class TeacherCache:
    """A cache opened read-only: numpy memmaps of the files above and the manifest."""

    folder: Path
    manifest: dict
    windows: np.ndarray
    top_ids: np.ndarray
    top_logp: np.ndarray
    rest_logp: np.ndarray

    @property
    def k(self) -> int:
        return int(self.manifest["k"])

    @property
    def full(self) -> bool:
        """True when k covers the whole vocabulary (the remainder bucket is empty)."""
        return self.k >= int(self.manifest["vocab_size"])

    def __len__(self) -> int:
        return len(self.windows)

    @classmethod
    def open(cls, folder: Path) -> TeacherCache:
        manifest = json.loads((folder / "manifest.json").read_text())
        n, length, k = manifest["n"], manifest["length"], manifest["k"]
        shapes = _shapes(n, length, k)
        arrays = {}
        for name, (fname, dtype) in FILES.items():
            path = folder / fname
            want = int(np.prod(shapes[name])) * np.dtype(dtype).itemsize
            if not path.is_file() or path.stat().st_size != want:
                raise UserError(f"the teacher cache {folder} is damaged ({fname} is not {want} bytes); delete the "
                                "folder and run again to rebuild it")  # fmt: skip
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", shape=shapes[name])
        return cls(folder, manifest, **arrays)


@torch.no_grad()
def teacher_topk(model, x: torch.Tensor, offset: int, length: int, k: int, full: bool):
    """The teacher's top-k log-probs at the `length` positions from `offset` of inputs x (B, T).

    Returns ids (B, L, k), logp (B, L, k) and the remainder's log-mass (B, L) (REST_FLOOR when full).
    """
    logits, _ = model(x)
    logp = torch.log_softmax(logits[:, offset : offset + length].float(), dim=-1)  # (B, L, V)
    top_logp, top_ids = logp.topk(k, dim=-1)  # (B, L, k)
    if full:
        rest = torch.full(top_logp.shape[:2], REST_FLOOR)
    else:
        rest = logp.scatter(-1, top_ids, float("-inf")).logsumexp(-1).clamp_min(REST_FLOOR)  # (B, L)
    return top_ids, top_logp, rest


def _shapes(n: int, length: int, k: int) -> dict[str, tuple[int, ...]]:
    return {"windows": (n, length), "top_ids": (n, length, k), "top_logp": (n, length, k), "rest_logp": (n, length)}


def build_cache(model, tokenizer, prompt_ids: list[int], windows: np.ndarray, k: int, root: Path, *, key: str,
                about: dict, batch_size: int = 16, device: str | torch.device = "cpu"
                ) -> tuple[TeacherCache, dict]:  # fmt: skip
    """Open the cache of `key` under `root`, or compute and write it once; returns (cache, stats).

    stats: {"reused", "tokens" (text positions), "wall_s", "tokens_per_s"}.
    """
    folder = Path(root) / key
    if (folder / "manifest.json").is_file():
        return TeacherCache.open(folder), {"reused": True, "tokens": int(windows.size), "wall_s": 0.0,
                                           "tokens_per_s": None}  # fmt: skip
    n, length = windows.shape
    full = k >= model.cfg.vocab_size
    shapes = _shapes(n, length, k)
    model = model.to(device).eval()
    with building_dir(folder) as tmp:  # atomic: readers see the whole cache or none
        out = {name: np.memmap(tmp / f, dtype=dt, mode="w+", shape=shapes[name]) for name, (f, dt) in FILES.items()}
        out["windows"][:] = windows
        t0 = time.perf_counter()
        for sl in batches(n, batch_size):
            x, offset = contexts(windows[sl], prompt_ids, tokenizer.eot_id)
            ids, logp, rest = teacher_topk(model, torch.from_numpy(x).to(device), offset, length, k, full)
            out["top_ids"][sl], out["top_logp"][sl], out["rest_logp"][sl] = ids.cpu(), logp.cpu(), rest.cpu()
        wall = time.perf_counter() - t0
        for arr in out.values():
            arr.flush()
        del out
        manifest = {"version": CACHE_VERSION, "key": key, "n": n, "length": length, "k": k,
                    "vocab_size": model.cfg.vocab_size, "prompt_tokens": len(prompt_ids), "wall_s": wall,
                    "created": time.time(), **about}  # fmt: skip
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    stats = {"reused": False, "tokens": int(n * length), "wall_s": wall, "tokens_per_s": n * length / max(wall, 1e-9)}
    return TeacherCache.open(folder), stats
