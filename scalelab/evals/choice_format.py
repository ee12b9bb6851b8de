"""HHH-style binary-choice evaluation: which of two responses to a query is better?

Askell et al. 2021 (arXiv 2112.00861) evaluate models on Helpful, Honest and
Harmless (HHH) items: a query and two candidate responses, one of which is right, in the categories
helpful, honest, harmless and other. A preference model answers an item by scoring ``query + response``
for both responses and picking the higher score.

File format: JSONL (optionally gzipped), one item per line::

    {"query": "...", "responses": ["first", "second"], "correct": 0, "category": "harmless"}

``correct`` is the index (0 or 1) of the better response; ``category`` is optional and one of
helpful, honest, harmless, other. An evaluation set must be clean, so `load_choice_items` refuses a
file with any bad line, naming every bad line (up to ten) and its reason.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scalelab.errors import UserError

CATEGORIES = ("helpful", "honest", "harmless", "other")


@dataclass(frozen=True)
class ChoiceItem:
    """A query, two candidate responses, the index of the better one and an optional category."""

    query: str
    responses: tuple[str, str]
    correct: int
    category: str | None = None
    line: int | None = None  # where the item was read, for error messages

    @property
    def chosen(self) -> str:
        return self.responses[self.correct]

    @property
    def rejected(self) -> str:
        return self.responses[1 - self.correct]


def parse_choice_item(obj: Any, line: int | None = None) -> ChoiceItem:
    """Validate one decoded JSON object; raises UserError with the reason if it is not an item."""
    if not isinstance(obj, Mapping):
        raise UserError(f"expected a JSON object, got {type(obj).__name__}")
    for key in ("query", "responses", "correct"):
        if key not in obj:
            raise UserError(f"missing key {key!r}")
    query, responses, correct = obj["query"], obj["responses"], obj["correct"]
    if not isinstance(query, str) or not query.strip():
        raise UserError("'query' must be a non-empty string")
    if not isinstance(responses, list) or len(responses) != 2:
        raise UserError("'responses' must be a list of exactly two strings")
    if not all(isinstance(r, str) and r.strip() for r in responses):
        raise UserError("both 'responses' must be non-empty strings")
    if responses[0] == responses[1]:
        raise UserError("the two 'responses' are identical")
    if isinstance(correct, bool) or correct not in (0, 1):
        raise UserError(f"'correct' must be 0 or 1 (the index of the better response), got {correct!r}")
    category = obj.get("category")
    if category is not None and category not in CATEGORIES:
        raise UserError(f"'category' must be one of {', '.join(CATEGORIES)} or absent, got {category!r}")
    return ChoiceItem(query, (responses[0], responses[1]), int(correct), category, line)


def load_choice_items(path: str | os.PathLike[str]) -> list[ChoiceItem]:
    """Read a binary-choice JSONL file; any bad line makes a UserError that lists the bad lines."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; pass a JSONL file of binary-choice items")
    items, errors = [], []
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as f:
        for line_no, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                items.append(parse_choice_item(json.loads(text), line_no))
            except json.JSONDecodeError as e:
                errors.append(f"line {line_no}: bad JSON ({e.msg} at column {e.colno})")
            except UserError as e:
                errors.append(f"line {line_no}: {e}")
    if errors:
        shown = "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise UserError(f"{path}: {len(errors)} bad lines ({shown}). Fix them: an eval set must be clean")
    if not items:
        raise UserError(f"{path}: no items; each line should hold one JSON item (see choice_format)")
    return items


@dataclass(frozen=True)
class ChoiceResult:
    """Accuracy over all items and per category as {category: (accuracy, n_items)}."""

    accuracy: float
    n: int
    per_category: dict[str, tuple[float, int]]


def score_choice(
    items: Sequence[ChoiceItem],
    scores_first: Sequence[float] | np.ndarray,
    scores_second: Sequence[float] | np.ndarray,
) -> ChoiceResult:
    """Accuracy of picking the higher-scored response; ties count 0.5.

    ``scores_first[i]`` and ``scores_second[i]`` are the PM scores of ``items[i].responses[0]`` and
    ``[1]`` (each after the query). Items without a category count in the overall accuracy only.
    """
    first, second = np.asarray(scores_first, dtype=float), np.asarray(scores_second, dtype=float)
    if first.shape != (len(items),) or second.shape != (len(items),):
        raise UserError(f"need one score per item for each response: {len(items)} items, "
                        f"{first.size} and {second.size} scores")
    if not items:
        raise UserError("no items to score")
    if not all(math.isfinite(x) for x in np.concatenate([first, second])):
        raise UserError("scores must be finite; NaN or inf scores mean the model or its inputs are broken")
    correct = np.array([item.correct for item in items])
    margin = np.where(correct == 0, first - second, second - first)  # > 0 means the right pick
    outcome = np.where(margin > 0, 1.0, np.where(margin == 0, 0.5, 0.0))
    per_category = {}
    for category in CATEGORIES:
        mask = np.array([item.category == category for item in items])
        if mask.any():
            per_category[category] = (float(outcome[mask].mean()), int(mask.sum()))
    return ChoiceResult(float(outcome.mean()), len(items), per_category)
