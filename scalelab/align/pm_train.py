"""Training and evaluating a preference model with one of the three objectives of Askell et al. 2021.

`train_pm` runs AdamW over length-grouped batches of encoded comparisons with a warmup + cosine
schedule; the objective decides what a step computes (see `objectives.py`):

- ``ranked``: the head scores chosen and rejected sequences, L = softplus(r_rejected - r_chosen);
- ``binary``: the same scores, each a logit of "this response is good", L = BCE (chosen 1, rejected 0);
- ``imitation``: the language-model loss on the chosen responses only.

`evaluate_pm` scores held-out pairs (head score, or summed log-probability for imitation) and reports
pairwise accuracy with a bootstrap interval and the calibration of P(A > B) = sigmoid(r_A - r_B)
(ECE, reliability bins), with the existing `evals.accuracy` and `evals.calibration`.

Preference-model pre-training (PMP, Askell et al. 2021, section 5) is `train_pm` on an automatic
comparison set with the ranked loss, followed by `train_pm` on the target comparisons.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from scalelab.align.objectives import OBJECTIVES, binary_loss, imitation_loss, ranked_loss
from scalelab.align.pm import EncodedPairs, PreferenceModel, collate
from scalelab.atomic import write_json
from scalelab.errors import RunDiverged, UserError
from scalelab.evals.accuracy import AccuracyResult, pairwise_accuracy
from scalelab.evals.calibration import CalibrationResult, calibration
from scalelab.train.progress import TrainProgress
from scalelab.train.schedule import lr_factor

LogFn = Callable[[int, str, float], None]  # (step, metric name, value)


@dataclass
class PMTrainConfig:
    """How one PM training stage runs (fine-tuning, or PMP with ``objective='ranked'``)."""

    objective: str = "ranked"
    """'ranked', 'binary' or 'imitation' (Askell et al. 2021, section 4)."""
    epochs: float = 1.0
    """Passes over the training comparisons; ignored when `steps` is set."""
    steps: int | None = None
    """Optimizer steps; overrides `epochs`."""
    min_steps: int = 0
    """Lower bound on the steps derived from `epochs` (small sets still get trained)."""
    batch_size: int = 16
    """Comparisons per optimizer step (2 sequences each for ranked and binary)."""
    lr: float = 3e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    """Cosine decay ends at this fraction of the peak lr."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 disables."""
    seed: int = 0
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UserError(f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}")
        if self.batch_size < 1 or self.lr <= 0 or (self.steps is not None and self.steps < 1) or self.epochs <= 0:
            raise UserError(f"need batch_size >= 1, lr > 0, epochs > 0 and steps >= 1 (or unset); got "
                            f"batch_size={self.batch_size}, lr={self.lr}, epochs={self.epochs}, steps={self.steps}")

    def total_steps(self, n_pairs: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(self.min_steps, math.ceil(self.epochs * n_pairs / self.batch_size), 1)

    def to_dict(self) -> dict:
        return asdict(self)


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random,
                           group: int = 16) -> Iterator[list[int]]:  # fmt: skip
    """Endless shuffled batches of indices; each window of ``group`` batches is sorted by length first.

    Batches then hold sequences of similar length (little padding) while their order stays random.
    For pairs, give each pair's longer side as its length: a batch is padded to its longest sequence.
    """
    n = len(lengths)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        batches = []
        for start in range(0, n, batch_size * group):
            window = sorted(order[start : start + batch_size * group], key=lambda i: lengths[i])
            batches += [window[i : i + batch_size] for i in range(0, len(window), batch_size)]
        rng.shuffle(batches)
        yield from batches


def _optimizer(pm: PreferenceModel, cfg: PMTrainConfig) -> torch.optim.AdamW:
    params = [p for p in pm.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def step_loss(pm: PreferenceModel, pairs: EncodedPairs, batch: list[int], objective: str) -> tuple[torch.Tensor, int]:
    """The objective's loss on a batch of pair indices, and the number of tokens it read."""
    if objective == "imitation":
        b = collate([pairs.chosen[i] for i in batch]).to(pm.device)
        return imitation_loss(pm.backbone.logits(b.idx, b.lengths), b.targets), int(b.lengths.sum())
    texts = [pairs.chosen[i] for i in batch] + [pairs.rejected[i] for i in batch]
    b = collate(texts).to(pm.device)
    scores = pm.head_scores(b)  # (2B,)
    n = len(batch)
    if objective == "ranked":
        return ranked_loss(scores[:n], scores[n:]), int(b.lengths.sum())
    labels = torch.cat([torch.ones(n), torch.zeros(n)]).to(scores.device)
    return binary_loss(scores, labels), int(b.lengths.sum())


def train_pm(pm: PreferenceModel, pairs: EncodedPairs, cfg: PMTrainConfig, *, log: LogFn | None = None,
             progress: bool = False, step_offset: int = 0, progress_file: Path | None = None) -> dict:  # fmt: skip
    """Train ``pm`` in place on encoded comparisons; returns steps, pairs/s, tokens/s and the last loss.

    ``log(step, name, value)`` receives the training loss and lr every few steps (``step_offset`` is
    added, so that a fine-tuning stage continues the step count of a PMP stage). ``progress_file``
    is replaced at every log step with the sweep driver's progress record (see `write_progress`).
    """
    if len(pairs) == 0:
        raise UserError("no training comparisons; check the data file and the train/test split")
    if cfg.objective == "imitation" and pm.objective != "imitation":
        raise UserError("the imitation objective trains the language-model head; build the PM with objective "
                        "'imitation' (a PM with a scalar head cannot be trained by imitation)")
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    total = cfg.total_steps(len(pairs))
    # the padded length of a batch is its longest sequence: group pairs by their longer side
    lengths = [max(len(a.ids), len(b.ids)) for a, b in zip(pairs.chosen, pairs.rejected)]
    batches = length_grouped_batches(lengths, cfg.batch_size, rng)
    opt = _optimizer(pm, cfg)
    cuda = pm.device.type == "cuda"
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    bar = TrainProgress(enabled=progress)
    bar.start(total, 0)
    # dropout off while training (eval mode: a deterministic forward), as TRL's RewardTrainer does by default
    # (disable_dropout=True); dropout's masks cost a third of an HF GPT-2 step on CPU
    pm.eval()
    n_pairs, n_tokens, loss_value, t0 = 0, 0, float("nan"), time.perf_counter()
    every = max(1, total // 50)
    try:
        for step in range(total):
            factor = lr_factor(step, total, cfg.warmup_steps, "cosine", cfg.min_lr_ratio, 0.0)
            for group in opt.param_groups:
                group["lr"] = cfg.lr * factor
            batch = next(batches)
            with ctx:
                loss, tokens = step_loss(pm, pairs, batch, cfg.objective)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(pm.parameters(), cfg.grad_clip or float("inf"))
            opt.step()
            opt.zero_grad(set_to_none=True)
            n_pairs += len(batch)
            n_tokens += tokens
            if step % every == 0 or step == total - 1:
                loss_value = loss.item()
                if not (math.isfinite(loss_value) and math.isfinite(float(gnorm))):
                    raise RunDiverged(f"PM loss became {loss_value} (grad norm {float(gnorm)}) at step {step + 1}; "
                                      "lower the learning rate")
                if log is not None:
                    log(step_offset + step + 1, "loss", loss_value)
                    log(step_offset + step + 1, "lr", cfg.lr * factor)
                elapsed = time.perf_counter() - t0
                bar.update(step + 1, loss_value, n_tokens / elapsed if elapsed > 0 else 0.0)
                if progress_file is not None:
                    write_progress(progress_file, step_offset + step + 1, step_offset + total, loss_value,
                                   n_tokens / elapsed if elapsed > 0 else None, elapsed,
                                   elapsed / (step + 1) * (total - step - 1))  # fmt: skip
    finally:
        bar.stop()
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    pm.eval()
    return {"steps": total, "pairs_seen": n_pairs, "wall_s": wall, "pairs_per_s": n_pairs / wall if wall else 0.0,
            "tokens_per_s": n_tokens / wall if wall else 0.0, "final_loss": loss_value}  # fmt: skip


def write_progress(path: Path, step: int, iters: int, loss: float, tokens_per_s: float | None, elapsed_s: float,
                   eta_s: float | None) -> None:  # fmt: skip
    """Replace ``path`` atomically with the progress record the sweep driver polls (same keys as LM runs)."""
    record = {"step": step, "iters": iters, "loss": loss if math.isfinite(loss) else None, "val_loss": None,
              "tokens_per_s": tokens_per_s, "elapsed_s": elapsed_s, "eta_s": eta_s, "pid": os.getpid(),
              "host": socket.gethostname(), "time": time.time()}  # fmt: skip
    write_json(path, record)


@dataclass
class PMEvaluation:
    """Scores of held-out pairs, accuracy with its bootstrap interval, and calibration."""

    scores_chosen: np.ndarray
    scores_rejected: np.ndarray
    accuracy: AccuracyResult
    calibration: CalibrationResult

    def summary(self) -> dict:
        return {"accuracy": self.accuracy.value, "accuracy_ci": list(self.accuracy.ci), "n_test": self.accuracy.n,
                "ece": self.calibration.ece}  # fmt: skip


def evaluate_pm(pm: PreferenceModel, pairs: EncodedPairs, *, batch_size: int = 64, seed: int = 0,
                n_bins: int = 10) -> PMEvaluation:  # fmt: skip
    """Accuracy (ties count half, 95% bootstrap interval) and folded calibration of ``pm`` on ``pairs``."""
    if len(pairs) == 0:
        raise UserError("no test comparisons to evaluate on; give more data or a larger test fraction")
    chosen = pm.score_texts(pairs.chosen, batch_size).double().numpy()
    rejected = pm.score_texts(pairs.rejected, batch_size).double().numpy()
    return PMEvaluation(chosen, rejected, pairwise_accuracy(chosen, rejected, seed=seed),
                        calibration(chosen, rejected, n_bins=n_bins))  # fmt: skip
