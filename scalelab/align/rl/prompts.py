"""Prompts of an RL run: built in (from the embedded corpus) or read from a file, split train / eval.

The builtin prompts exist on every machine without a download: function headers of the running
Python's standard library (``def name(args):`` lines, de-indented, with their newline and the
indentation of the body), taken in the corpus's sorted order. The policy writes the body; a PM
trained on code comparisons (``code:stdlib``) scores it.
"""

from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path

from scalelab.errors import UserError

HEADER = re.compile(r"^[ \t]*(def [A-Za-z_][A-Za-z0-9_]*\([^()\n]*\)(?: -> [^:\n]+)?:)[ \t]*$", re.M)
SPLIT_SEED = 1234  # the eval prompts do not change with the run's seed: runs compare on the same ones


def builtin_prompts(n: int, *, max_chars: int = 48, per_document: int = 2) -> list[str]:
    """Up to `n` distinct function headers (12..max_chars characters) from the stdlib corpus, deterministic."""
    return list(_builtin(n, max_chars, per_document))


@functools.lru_cache(maxsize=8)
def _builtin(n: int, max_chars: int, per_document: int) -> tuple[str, ...]:
    from scalelab.data.sources import iter_documents

    seen: set[str] = set()
    out: list[str] = []
    for doc in iter_documents("stdlib"):
        taken = 0
        for m in HEADER.finditer(doc.text):
            header = m.group(1)
            if not 12 <= len(header) <= max_chars or header in seen or not header.isascii():
                continue
            seen.add(header)
            out.append(header + "\n    ")
            taken += 1
            if len(out) >= n:
                return tuple(out)
            if taken >= per_document:
                break
    return tuple(out)


def read_prompt_file(path: str | Path, field: str = "prompt") -> list[str]:
    """Prompts of a file: JSONL records holding `field`, or one prompt per non-empty text line."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"prompt file {str(path)!r} not found; give a file of prompts (text lines or JSONL) "
                        "or 'builtin'")  # fmt: skip
    text = p.read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"prompt file {p} is empty; put one prompt per line (or JSONL with a {field!r} field)")
    if p.suffix == ".jsonl" or lines[0].lstrip().startswith("{"):
        prompts = []
        for no, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError as e:
                raise UserError(f"{p} line {no}: not JSON ({e}); fix the line or use a plain text file") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise UserError(f"{p} line {no}: no string field {field!r}; set prompt_field to the field "
                                "holding the prompt")  # fmt: skip
            prompts.append(record[field])
        lines = prompts
    if not any(s.strip() for s in lines):
        raise UserError(f"prompt file {p} holds only empty prompts; give at least one non-empty prompt")
    return lines


def load_prompts(spec: str, *, n_builtin: int = 256, field: str = "prompt") -> list[str]:
    """'builtin' or a prompt file -> the prompt texts."""
    if spec == "builtin":
        return builtin_prompts(n_builtin)
    return read_prompt_file(spec, field)


def split_prompts(prompts: list[str], n_eval: int) -> tuple[list[str], list[str]]:
    """(train, eval): `n_eval` prompts held out by a fixed shuffle; a single prompt serves both."""
    if len(prompts) < 2:
        return list(prompts), list(prompts)
    order = list(range(len(prompts)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_eval = min(n_eval, len(prompts) // 2)
    held = sorted(order[:n_eval])
    train = [prompts[i] for i in sorted(order[n_eval:])]
    return train, [prompts[i] for i in held]


def encode_prompts(prompts: list[str], tokenizer, *, context: int, max_new_tokens: int, what: str) -> list[list[int]]:
    """Token ids of each prompt; a prompt that leaves no room for the response is a UserError naming it."""
    out = []
    room = context - max_new_tokens
    for i, text in enumerate(prompts):
        ids = [int(t) for t in tokenizer.encode(text)] if text else []
        if not ids:
            ids = [tokenizer.eot_id]  # an empty prompt: start a fresh document
        if len(ids) > room:
            raise UserError(f"{what} prompt {i + 1} has {len(ids)} tokens, but the policy's context of {context} "
                            f"minus max_new_tokens={max_new_tokens} leaves {room}; shorten the prompt or lower "
                            "max_new_tokens")  # fmt: skip
        out.append(ids)
    return out
