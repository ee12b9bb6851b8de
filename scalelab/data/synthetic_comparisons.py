"""Automatic comparison sets whose preferred side is known: preference-model pre-training (PMP) data.

Askell et al. 2021 (arXiv 2112.00861) pre-train preference models on large automatic
comparison sets before fine-tuning on human comparisons, and find that *binary* PMP transfers better
than ranked PMP: each ranked pair A > B becomes the two comparisons "GOOD:A > BAD:A" and
"BAD:B > GOOD:B" (`binarize`). This module makes such sets from plain documents by corruption
(`corruption_comparisons`): the original passage is preferred to a damaged copy. Verifiable tasks
(arithmetic, Python code that parses) live in `synthetic_verifiable` and are re-exported here.

Everything is deterministic given ``seed`` and the order of the input documents.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Sequence

from scalelab.data.comparisons import Comparison
from scalelab.data.synthetic_verifiable import (
    ARITHMETIC_OPERATORS,
    BREAK_KINDS,
    arithmetic_comparisons,
    break_python,
    extract_functions,
    python_snippet_comparisons,
)
from scalelab.errors import UserError

__all__ = [
    "ARITHMETIC_OPERATORS",
    "BREAK_KINDS",
    "CORRUPTION_KINDS",
    "arithmetic_comparisons",
    "binarize",
    "break_python",
    "corruption_comparisons",
    "extract_functions",
    "python_snippet_comparisons",
    "split_units",
]

CORRUPTION_KINDS = ("shuffle", "swap_spans", "other_document", "char_edit")
_UNIT_BREAK = re.compile(r"((?<=[.!?])\s+|\n+)")  # after a sentence end, or at line breaks
_WORD_BREAK = re.compile(r"(\s+)")

Unit = tuple[str, str]  # (content, the whitespace that follows it)


def split_units(text: str) -> list[Unit]:
    """Sentences and lines of ``text`` as (content, following whitespace); empty pieces dropped.

    ``"".join(c + s for c, s in split_units(t))`` is ``t`` without leading whitespace.
    """
    parts = _UNIT_BREAK.split(text)
    contents, separators = parts[0::2], parts[1::2] + [""]
    return [(c, s) for c, s in zip(contents, separators, strict=True) if c.strip()]


def _join(units: Sequence[Unit]) -> str:
    return "".join(c + s for c, s in units)


def _shuffle(units: Sequence[Unit], rng: random.Random) -> str | None:
    """The units' contents permuted (separators stay in place), or None if no permutation differs."""
    contents = [c for c, _ in units]
    if len(set(contents)) < 2:
        return None
    shuffled = contents[:]
    for _ in range(10):
        rng.shuffle(shuffled)
        if shuffled != contents:
            break
    else:  # a rotation by one differs whenever two contents differ
        shuffled = contents[1:] + contents[:1]
    return _join([(c, s) for c, (_, s) in zip(shuffled, units, strict=True)]).rstrip()


def _swap_spans(text: str, rng: random.Random) -> str | None:
    """Two non-overlapping spans of words exchanged (whitespace stays in place), or None."""
    parts = _WORD_BREAK.split(text)
    words = parts[0::2]
    if len(set(words)) < 2:
        return None
    for _ in range(10):
        length = rng.randint(1, max(1, min(8, len(words) // 4)))
        i = rng.randint(0, len(words) - 2 * length)
        j = rng.randint(i + length, len(words) - length)
        if words[i:i + length] != words[j:j + length]:
            a, b = words[i:i + length], words[j:j + length]
            parts[0::2] = words[:i] + b + words[i + length:j] + a + words[j + length:]
            return "".join(parts)
    return None


def _char_edit(text: str, rng: random.Random) -> str | None:
    """One character-level edit (substitute, delete, insert or transpose) at a letter or digit."""
    positions = [i for i, ch in enumerate(text) if ch.isalnum()]
    if not positions:
        return None
    i = rng.choice(positions)
    op = rng.choice(("substitute", "delete", "insert", "transpose"))
    letters = "abcdefghijklmnopqrstuvwxyz"
    if op == "transpose" and i + 1 < len(text) and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if op == "delete" and len(text) > 1:
        return text[:i] + text[i + 1:]
    if op == "insert":
        return text[:i] + rng.choice(letters) + text[i:]
    return text[:i] + rng.choice([ch for ch in letters if ch != text[i].lower()]) + text[i + 1:]


def _other_document(chosen: str, doc: int, pool: Sequence[tuple[int, str]], rng: random.Random) -> str | None:
    """A continuation of about the same length taken from another document in ``pool``."""
    candidates = [text for d, text in pool if d != doc and text.strip() and text != chosen]
    if not candidates:
        return None
    text = rng.choice(candidates)
    if len(text) > len(chosen):  # cut at a word boundary near the chosen length
        cut = text.rfind(" ", 0, len(chosen) + 1)
        text = text[: cut if cut > 0 else len(chosen)].rstrip()
    return text if text != chosen else None


def _passage(units: Sequence[Unit], rng: random.Random, max_chars: int, min_units: int) -> list[Unit] | None:
    """A random contiguous window of at least ``min_units`` units and at most ``max_chars`` characters."""
    if len(units) < min_units:
        return None
    start = rng.randint(0, len(units) - min_units)
    window, size = [], 0
    for unit in units[start:]:
        size += len(unit[0]) + len(unit[1])
        if size > max_chars:
            break
        window.append(unit)
    return window if len(window) >= min_units else None


def corruption_comparisons(
    documents: Iterable[str],
    *,
    seed: int = 0,
    kinds: Sequence[str] = CORRUPTION_KINDS,
    max_chars: int = 1200,
    min_units: int = 3,
    pool_size: int = 256,
) -> Iterator[Comparison]:
    """Yield one comparison per usable document: its passage preferred to a corrupted copy.

    A passage is a random window of whole sentences/lines (``min_units`` or more, at most
    ``max_chars`` characters; documents with no such window are skipped). Its first half of units is
    the prompt and the rest is the continuation, so ``prompt + chosen`` is the passage. The rejected
    side is the continuation corrupted by one of ``kinds``:

    - ``shuffle``: its sentences/lines permuted (separators stay in place);
    - ``swap_spans``: two spans of 1-8 words exchanged;
    - ``other_document``: a continuation of similar length from another, earlier document (a pool of
      the last ``pool_size`` continuations, so the first document never gets this kind);
    - ``char_edit``: one character substituted, deleted, inserted or transposed.

    The kind is the least used so far among those that apply (ties broken at random), so kinds stay
    balanced. Each comparison carries ``source="pmp:<kind>"`` and ``meta={"kind", "doc"}``.
    """
    unknown = [k for k in kinds if k not in CORRUPTION_KINDS]
    if unknown or not kinds:
        valid = ", ".join(CORRUPTION_KINDS)
        raise UserError(f"unknown corruption kinds {unknown or list(kinds)}; valid: {valid}")
    if min_units < 2 or max_chars < 1:
        raise UserError(f"need min_units >= 2 and max_chars >= 1, got {min_units} and {max_chars}")
    rng = random.Random(seed)
    used = dict.fromkeys(kinds, 0)
    pool: list[tuple[int, str]] = []
    for doc, text in enumerate(documents):
        window = _passage(split_units(text), rng, max_chars, min_units)
        if window is None:
            continue
        n_prompt = len(window) // 2
        prompt, rest = _join(window[:n_prompt]), window[n_prompt:]
        chosen = _join(rest).rstrip()
        order = sorted(kinds, key=lambda k: (used[k], rng.random()))
        for kind in order:
            if kind == "shuffle":
                rejected = _shuffle(rest, rng)
            elif kind == "swap_spans":
                rejected = _swap_spans(chosen, rng)
            elif kind == "char_edit":
                rejected = _char_edit(chosen, rng)
            else:
                rejected = _other_document(chosen, doc, pool, rng)
            if rejected is not None and rejected != chosen:
                used[kind] += 1
                yield Comparison(prompt, chosen, rejected, None, f"pmp:{kind}", {"kind": kind, "doc": doc})
                break
        if len(pool) < pool_size:
            pool.append((doc, chosen))
        else:
            pool[rng.randrange(pool_size)] = (doc, chosen)


def _labelled(label: str, text: str) -> str:
    return f"{label} {text}" if text else label


def binarize(comparisons: Iterable[Comparison], good: str = "GOOD:", bad: str = "BAD:") -> list[Comparison]:
    """Binary PMP (Askell et al. 2021, arXiv 2112.00861): A > B gives "GOOD:A > BAD:A", "BAD:B > GOOD:B".

    The label is written in front of the response (``"GOOD: " + A``), i.e. in the context the PM
    reads just before the response, so the PM learns whether a label fits a response rather than
    which of two responses is better. The prompt is kept; margins are dropped (they measured A vs B).
    ``meta["binarized"]`` says which side ("chosen" or "rejected") the pair was built from.
    """
    if good == bad:
        raise UserError(f"the good and bad labels must differ, both are {good!r}")
    out = []
    for c in comparisons:
        source = f"{c.source}:binary" if c.source else "binary"
        out.append(Comparison(c.prompt, _labelled(good, c.chosen), _labelled(bad, c.chosen), None, source,
                              {**c.meta, "binarized": "chosen"}))
        out.append(Comparison(c.prompt, _labelled(bad, c.rejected), _labelled(good, c.rejected), None, source,
                              {**c.meta, "binarized": "rejected"}))
    return out
