"""Context distillation: a model without the prompt trained to act as the model with it.

Askell et al. 2021 (arXiv 2112.00861, section 3.1): instead of prepending a prompt to every
context, fine-tune the model to minimise KL(p(x | prompt) || p_theta(x)) over a corpus, where p is
the prompted (frozen) model and p_theta the student, initialised from the same weights and run
without the prompt. The teacher's next-token distributions are stored once as top-k log-probs
plus a remainder bucket (`distill_cache`), so the objective at each position is the KL between
two distributions over k + 1 outcomes (`topk_kl`).

The student is a normal run of the store: a config (`DistillSpec`, hashed to reuse finished runs),
checkpoints in ``<run>/ckpt`` in the training loop's format (so `load_for_inference`, a PM
backbone ``run:NAME`` and an RL policy load it), resumption from the newest checkpoint, metrics,
``progress.json``. `distill_context` is ``scalelab distill context``; `distill_worker` is the
sweep's run kind "distill".
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from scalelab.align.distill_cache import REST_FLOOR, TeacherCache, build_cache, cache_key, effective_k
from scalelab.errors import UserError
from scalelab.prompting import Prompt, batches, fit_prompt, load_prompt, source_tokens, text_windows
from scalelab.store import RUN_REF, completed_group_run


def topk_kl(student_logits: torch.Tensor, top_ids: torch.Tensor, top_logp: torch.Tensor, rest_logp: torch.Tensor,
            full: bool = False) -> torch.Tensor:  # fmt: skip
    """KL(teacher || student) per position over the teacher's top-k tokens plus one remainder bucket.

    student_logits (B, L, V); top_ids / top_logp (B, L, k) and rest_logp (B, L) from the teacher.
    KL = sum_i p_i (log p_i - log q_i) + p_rest (log p_rest - log q_rest), q_rest the student's mass
    outside the teacher's top k (Askell et al. 2021, section 3.1). `full`: k is the whole vocabulary
    and the remainder term is dropped. Returns (B, L).
    """
    log_q = torch.log_softmax(student_logits.float(), dim=-1)  # (B, L, V)
    p_top = top_logp.exp()
    kl = (p_top * (top_logp - log_q.gather(-1, top_ids))).sum(-1)  # (B, L)
    if full:
        return kl
    rest_q = log_q.scatter(-1, top_ids, float("-inf")).logsumexp(-1)  # (B, L)
    p_rest = rest_logp.exp()
    rest_term = torch.where(rest_logp > REST_FLOOR, p_rest * (rest_logp - rest_q), torch.zeros_like(kl))
    return kl + rest_term


@dataclass
class DistillSpec:
    """Everything one context-distillation run depends on; saved with the run and hashed."""

    model: str
    """The teacher (and the student's start): a run id / name, a run or checkpoint folder, or 'run:NAME'."""
    prompt: str
    """A prompt file or a shipped prompt name ('assistant'); hashed by content."""
    data: str = "stdlib"
    """The corpus: a data source as in `data.source` (stdlib, a file, a folder, a glob, a .jsonl)."""
    top_k: int = 32
    """Teacher log-probs kept per position (the paper keeps 50); the rest is one remainder bucket."""
    window: int | None = None
    """Text tokens per window; default min(64, the room the prompt leaves in the context)."""
    n_windows: int = 512
    """Training windows in the teacher cache (tokens = n_windows * window)."""
    n_heldout: int = 64
    """Held-out windows (documents the student never trains on) for the KL and the alignment tax."""
    max_documents: int | None = None
    """Read at most this many documents of the corpus."""
    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-4
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ckpt_every: int = 100
    log_every: int = 10
    seed: int = 0
    base_config_hash: str | None = None
    """With ``model = 'run:NAME'``: the config hash that run must have (a study's plan sets it)."""
    device: str = "auto"
    threads: int | None = None
    name: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "n_windows", "n_heldout", "ckpt_every", "log_every"):
            if getattr(self, key) < 1:
                raise UserError(f"distill {key} must be at least 1, got {getattr(self, key)}")
        if self.window is not None and self.window < 2:
            raise UserError(f"distill window must be at least 2 tokens, got {self.window}")
        if self.top_k < 1:
            raise UserError(f"distill top_k must be at least 1, got {self.top_k}; the paper keeps 50")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DistillSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown distill run keys {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**d)

    def config_hash(self) -> str:
        """Hash of what changes the result: no name, group or threads; the prompt by its content."""
        d = self.to_dict()
        for key in ("name", "group", "threads", "log_every"):
            d.pop(key)
        d["prompt"] = load_prompt(self.prompt).digest
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_model(spec: DistillSpec, workdir: Path) -> str:
    """The teacher's path: ``run:NAME`` is the completed run of that name in the spec's group."""
    if not spec.model.startswith(RUN_REF):
        return spec.model
    run = completed_group_run(workdir, spec.model[len(RUN_REF) :], spec.group, spec.base_config_hash,
                              f"model {spec.model!r}")  # fmt: skip
    return str(workdir / "runs" / run["id"])


def weights_digest(checkpoint: str | Path) -> str:
    h = hashlib.sha256()
    with open(Path(checkpoint) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass
class Prepared:
    """The teacher, its prompt and the two caches (train, held-out) of one run."""

    teacher: torch.nn.Module
    tokenizer: object
    prompt: Prompt
    prompt_ids: list[int]
    prompt_fit: dict
    train: TeacherCache
    heldout: TeacherCache
    k: int
    k_note: str | None
    cache_stats: dict
    teacher_path: str


def prepare(spec: DistillSpec, workdir: Path, device: torch.device) -> Prepared:
    """Load the teacher, fit the prompt, pick the text windows and build (or reuse) both caches."""
    from scalelab.train.checkpoint import load_for_inference

    teacher, tokenizer, info = load_for_inference(resolve_model(spec, workdir), workdir, "cpu")
    prompt = load_prompt(spec.prompt)
    context = teacher.cfg.block_size
    window = spec.window or min(64, context - len(fit_prompt(prompt, tokenizer, context, 2)[0]))
    prompt_ids, fit = fit_prompt(prompt, tokenizer, context, min_room=window)
    k, note = effective_k(spec.top_k, teacher.cfg.vocab_size)
    root = workdir / "cache" / "distill"
    digest = weights_digest(info["path"])
    caches, stats = [], {}
    for split, n in (("train", spec.n_windows), ("heldout", spec.n_heldout)):
        tokens = source_tokens(spec.data, tokenizer, split, max_documents=spec.max_documents,
                               max_tokens=max(4 * n * window, 1 << 16))  # fmt: skip
        windows = text_windows(tokens, window, n, seed=spec.seed + (split == "heldout"))
        key = cache_key(digest, tokenizer.spec(), prompt.digest, windows, k)
        about = {"teacher": info["path"], "teacher_digest": digest, "tokenizer": tokenizer.spec(),
                 "prompt": prompt.source, "prompt_digest": prompt.digest, "data": spec.data, "split": split}
        cache, st = build_cache(teacher, tokenizer, prompt_ids, windows, k, root, key=key, about=about,
                                batch_size=spec.batch_size, device=device)  # fmt: skip
        if cache.manifest.get("tokenizer") != tokenizer.spec():
            raise UserError(f"the teacher cache {cache.folder} was made with another tokenizer than the model's; "
                            "delete it and run again")  # fmt: skip
        caches.append(cache)
        stats[split] = st
    return Prepared(teacher, tokenizer, prompt, prompt_ids, fit.to_dict() | {"window": window}, caches[0], caches[1],
                    k, note, stats, info["path"])  # fmt: skip


def _student_inputs(windows: np.ndarray, eot_id: int, device) -> torch.Tensor:
    w = torch.from_numpy(np.array(windows, dtype=np.int64))
    return torch.cat([torch.full((len(w), 1), eot_id, dtype=torch.long), w[:, :-1]], dim=1).to(device)  # (B, L)


def _targets(cache: TeacherCache, rows, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's top-k ids (B, L, k), log-probs (B, L, k) and remainder log-mass (B, L) of some rows."""
    ids = torch.from_numpy(np.array(cache.top_ids[rows], dtype=np.int64)).to(device)
    logp = torch.from_numpy(np.array(cache.top_logp[rows])).to(device)
    rest = torch.from_numpy(np.array(cache.rest_logp[rows])).to(device)
    return ids, logp, rest


@torch.no_grad()
def heldout_kl(model, cache: TeacherCache, eot_id: int, batch_size: int = 32, device="cpu") -> float:
    """Mean KL(teacher with prompt || model without) per position over a cache."""
    was, total = model.training, 0.0
    model.eval()
    for sl in batches(len(cache), batch_size):
        logits, _ = model(_student_inputs(cache.windows[sl], eot_id, device))
        total += float(topk_kl(logits, *_targets(cache, sl, device), full=cache.full).sum())
    model.train(was)
    return total / cache.windows.size


@torch.no_grad()
def plain_loss(model, windows: np.ndarray, eot_id: int, prompt_ids: list[int] | None = None, batch_size: int = 32,
               device="cpu") -> float:  # fmt: skip
    """Mean next-token loss (nats) on text windows, with [eot] (+ prompt) before each: the alignment tax's measure."""
    from scalelab.prompting import contexts

    was, total = model.training, 0.0
    model.eval()
    for sl in batches(len(windows), batch_size):
        x, offset = contexts(np.asarray(windows[sl]), prompt_ids, eot_id)
        logits, _ = model(torch.from_numpy(x).to(device))
        L = windows.shape[1]
        lp = torch.log_softmax(logits[:, offset : offset + L].float(), -1)
        y = torch.from_numpy(np.array(windows[sl], dtype=np.int64)).to(device)
        total += float(-lp.gather(-1, y.unsqueeze(-1)).sum())
    model.train(was)
    return total / windows.size


class CacheBatches:
    """Batches of cache rows: a seeded permutation per epoch; its position is saved in checkpoints."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed, self.epoch, self.pos = n, min(batch_size, n), seed, 0, 0

    def next_rows(self) -> np.ndarray:
        if self.pos + self.batch_size > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        rows = np.sort(order[self.pos : self.pos + self.batch_size])
        self.pos += self.batch_size
        return rows

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


def _lr_scale(spec: DistillSpec, step: int) -> float:
    if step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.min_lr_ratio + (1 - spec.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def distill_step(student, opt, cache: TeacherCache, rows: np.ndarray, eot_id: int, grad_clip: float, device) -> float:
    """One optimizer step on the mean top-k KL of a batch of cache rows; returns the loss."""
    x = _student_inputs(cache.windows[rows], eot_id, device)  # (B, L)
    logits, _ = student(x)  # (B, L, V)
    loss = topk_kl(logits, *_targets(cache, rows, device), full=cache.full).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), grad_clip or float("inf"))
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())

