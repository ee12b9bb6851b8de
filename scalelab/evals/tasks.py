"""Capability tasks scored two ways: a thresholded metric and a continuous one (Ganguli et al. 2022).

Ganguli et al. 2022 (arXiv 2202.07785, section 2.2) show that a capability such as 3-digit addition
can jump with scale while the loss falls smoothly. A jump in a *thresholded* metric (exact match)
can hide a smooth change in a *continuous* one (the log-probability of the answer), so every task
here is scored both ways from the same forward pass:

- `exact`: the share of examples whose greedy completion is exactly the answer (its tokens, the
  final newline included). One teacher-forced pass suffices: greedy decoding reproduces the answer
  iff at every answer position the argmax is the answer's token, given the answer's earlier tokens.
- `logprob`: the mean over examples of log p(answer | prompt), summed over the answer's tokens (nats).

The tasks, their generators and the train/eval seed streams are in `scalelab.data.task_mix`. Each
example is read as [end-of-document] + prompt + answer, the prompt and answer encoded separately
(so a BPE merge never crosses the boundary): the model sees an example as it sees one in training.
`make_task_eval` wraps the scoring as a training-time callback `(model, step) -> {name: float}` for
`train(..., extra_evals=[...])`; `task_evals_for(cfg, workdir)` builds it for a run whose config
names `data.eval_tasks` (the sweep worker does this for every run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scalelab.data.task_mix import TASKS, check_tasks, eval_examples
from scalelab.errors import UserError

N_EVAL = 64
"""Evaluation examples per task (the exact-match standard error is at most 0.5 / sqrt(64) = 0.06)."""


@dataclass(frozen=True)
class TaskBatch:
    """One task's evaluation examples as a padded batch."""

    tokens: torch.Tensor
    """(B, S) [eot] + prompt + answer, right-padded with eot."""
    answer_mask: torch.Tensor
    """(B, S - 1) True where the target (the next token) is an answer token."""


def encode_examples(examples: list[tuple[str, str]], tokenizer, block_size: int | None = None) -> TaskBatch:
    """Examples as a padded batch for one teacher-forced pass."""
    if not examples:
        raise UserError("no task examples to score; ask for at least one")
    rows, masks = [], []
    for prompt, answer in examples:
        p, a = np.asarray(tokenizer.encode(prompt)), np.asarray(tokenizer.encode(answer))
        ids = np.concatenate([[tokenizer.eot_id], p, a]).astype(np.int64)
        rows.append(ids)
        masks.append(np.concatenate([np.zeros(p.size, bool), np.ones(a.size, bool)]))
    S = max(r.size for r in rows)
    if block_size is not None and S - 1 > block_size:
        raise UserError(f"a task example holds {S} tokens, more than the model's context of {block_size} + 1; "
                        "raise model.block_size or drop the task")  # fmt: skip
    tokens = np.full((len(rows), S), tokenizer.eot_id, dtype=np.int64)
    mask = np.zeros((len(rows), S - 1), dtype=bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens[i, : r.size] = r
        mask[i, : m.size] = m
    return TaskBatch(torch.from_numpy(tokens), torch.from_numpy(mask))


def score_logits(logits: torch.Tensor, batch: TaskBatch) -> dict[str, np.ndarray]:
    """Per-example exact match (greedy completion = answer) and answer log-probability from logits (B, S-1, V)."""
    targets = batch.tokens[:, 1:].to(logits.device)  # (B, S-1)
    mask = batch.answer_mask.to(logits.device)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, S-1)
    hit = (logits.argmax(-1) == targets) | ~mask
    return {"exact": hit.all(dim=1).cpu().numpy().astype(float),
            "logprob": (logp * mask).sum(dim=1).cpu().numpy().astype(float)}  # fmt: skip


@torch.no_grad()
def score_task(model, batch: TaskBatch) -> dict[str, np.ndarray]:
    """Per-example exact match and answer log-probability of a model on a task batch."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        logits, _ = model(batch.tokens[:, :-1].to(device))  # (B, S-1, V)
    finally:
        model.train(was)
    return score_logits(logits, batch)


def task_batches(tasks, tokenizer, block_size: int | None = None, n: int = N_EVAL, seed: int = 0) -> dict:
    """{task: TaskBatch} of each task's fixed evaluation examples; an empty or unknown task set is a UserError."""
    return {t: encode_examples(eval_examples(t, n, seed), tokenizer, block_size) for t in check_tasks(tasks)}


def run_tasks(model, batches: dict[str, TaskBatch]) -> dict[str, dict[str, float]]:
    """{task: {"exact": share, "logprob": mean nats, "n": examples}} for one model."""
    out = {}
    for task, batch in batches.items():
        s = score_task(model, batch)
        out[task] = {"exact": float(s["exact"].mean()), "logprob": float(s["logprob"].mean()), "n": len(s["exact"])}
    return out


def metric_name(task: str, metric: str) -> str:
    """The name a task metric is logged under (split "eval"): task_<task>_<exact|logprob>."""
    return f"task_{task}_{metric}"


def make_task_eval(tasks, tokenizer, *, block_size: int | None = None, n: int = N_EVAL,
                   seed: int = 0) -> Callable[[torch.nn.Module, int], dict[str, float]]:  # fmt: skip
    """A training-time eval `(model, step) -> {task_<t>_exact, task_<t>_logprob}` on fixed examples."""
    batches = task_batches(tasks, tokenizer, block_size, n, seed)

    def task_eval(model, step: int) -> dict[str, float]:
        res = run_tasks(model, batches)
        return {metric_name(t, m): r[m] for t, r in res.items() for m in ("exact", "logprob")}

    return task_eval


def task_evals_for(cfg, workdir: str | Path) -> list:
    """The task evaluation callbacks of a run config: one when `data.eval_tasks` names tasks, else none."""
    if not cfg.data.eval_tasks:
        return []
    from scalelab.data.shards import prepare_shards

    shards = prepare_shards(cfg.data, Path(workdir) / "cache", progress=False)
    return [make_task_eval(cfg.data.eval_tasks, shards.tokenizer, block_size=cfg.model.block_size)]


__all__ = ["N_EVAL", "TASKS", "TaskBatch", "encode_examples", "make_task_eval", "metric_name", "run_tasks",
           "score_logits", "score_task", "task_batches", "task_evals_for"]  # fmt: skip
