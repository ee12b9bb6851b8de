"""Comparison sets for preference-model training: files, automatic sets named by keyword, and splits.

A set is named by one string (``--data`` and ``--pmp`` of ``scalelab pm train``):

- a file or dataset that `load_comparisons` reads (HH-RLHF JSONL, generic JSONL/CSV, HF datasets);
- ``code:SOURCE``: Python functions from the documents of SOURCE (e.g. ``code:stdlib``), each
  preferred to a minimally broken copy that fails to parse (gold known; `python_snippet_comparisons`);
- ``corruptions:SOURCE``: passages of SOURCE preferred to corrupted copies (shuffled sentences,
  swapped spans, another document, a character edit; `corruption_comparisons`);
- ``arith`` or ``arith:N``: N two-digit arithmetic questions, the right answer preferred (default 4000).

For PMP, Askell et al. 2021 (arXiv 2112.00861, section 5) binarise the automatic set: A > B becomes
"GOOD:A > BAD:A" and "BAD:B > GOOD:B" (`binarize`), which transferred better than ranked PMP.
Automatic sets keep only pairs that fit the PM context (a set is built, so the filter is part of
its definition and is counted); files are never filtered: long pairs are truncated and counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scalelab.data.comparisons import Comparison, LoadReport, load_comparisons
from scalelab.data.sources import iter_documents
from scalelab.data.synthetic_comparisons import (
    arithmetic_comparisons,
    binarize,
    corruption_comparisons,
    python_snippet_comparisons,
)
from scalelab.errors import UserError

KEYWORDS = ("code:", "corruptions:", "arith")
DEFAULT_ARITH = 4000


@dataclass
class ComparisonSet:
    """Comparisons with where they came from and what was skipped or filtered while building them."""

    comparisons: list[Comparison]
    source: str
    n_skipped: int = 0  # malformed lines skipped by the loader
    n_filtered_long: int = 0  # automatic pairs left out of the set because they exceed the context
    notes: list[str] = field(default_factory=list)
    report: LoadReport | None = None


def is_keyword(spec: str) -> bool:
    return spec.startswith(KEYWORDS[:2]) or spec == "arith" or spec.startswith("arith:")


def document_source(spec: str) -> str | None:
    """The document source of a ``code:`` or ``corruptions:`` keyword, else None."""
    for prefix in KEYWORDS[:2]:
        if spec.startswith(prefix):
            return spec[len(prefix) :] or "stdlib"
    return None


def _documents(source: str, max_documents: int | None, keep_doc: Callable[[int], bool] | None) -> list[str]:
    docs = [d.text for d in iter_documents(source, max_documents=max_documents)]
    return [t if keep_doc is None or keep_doc(i) else "" for i, t in enumerate(docs)]  # keep indices stable


def build_automatic(spec: str, *, seed: int = 0, max_pairs: int | None = None, max_documents: int | None = None,
                    fits: Callable[[Comparison], bool] | None = None, max_chars: int = 1200,
                    keep_doc: Callable[[int], bool] | None = None) -> ComparisonSet:  # fmt: skip
    """An automatic comparison set named by a keyword (see the module docstring).

    ``fits(c)`` says whether a pair fits the PM context; pairs that do not are left out and
    counted. ``keep_doc(i)`` selects documents by their index in the source (e.g. to keep the
    documents of a test split out of a PMP set). ``max_pairs`` stops after that many pairs.
    """
    if spec == "arith" or spec.startswith("arith:"):
        count = spec.partition(":")[2]
        if count and not count.isdigit():
            raise UserError(f"{spec!r}: write arith or arith:N with N a whole number of questions")
        n = int(count) if count else (max_pairs or DEFAULT_ARITH)
        candidates = iter(arithmetic_comparisons(n, seed=seed))
    else:
        source = document_source(spec)
        if source is None:
            raise UserError(f"{spec!r} is not an automatic set; use code:SOURCE, corruptions:SOURCE or arith[:N]")
        docs = _documents(source, max_documents, keep_doc)
        if spec.startswith("code:"):
            candidates = python_snippet_comparisons(docs, seed=seed, max_lines=12, max_per_source=12)
        else:
            candidates = corruption_comparisons(docs, seed=seed, max_chars=max_chars)
    out = ComparisonSet([], spec)
    for c in candidates:
        if fits is not None and not fits(c):
            out.n_filtered_long += 1
            continue
        out.comparisons.append(c)
        if max_pairs is not None and len(out.comparisons) >= max_pairs:
            break
    if not out.comparisons:
        raise UserError(f"{spec!r} gave no comparisons that fit the context; use a longer context or another set")
    if out.n_filtered_long:
        out.notes.append(f"{out.n_filtered_long} automatic pairs longer than the context were left out of the set")
    return out


def load_set(spec: str, *, format: str = "auto", seed: int = 0, max_pairs: int | None = None,
             fits: Callable[[Comparison], bool] | None = None, max_chars: int = 1200,
             keep_doc: Callable[[int], bool] | None = None) -> ComparisonSet:  # fmt: skip
    """A file (every pair kept, malformed lines counted) or an automatic set named by keyword."""
    if is_keyword(spec):
        return build_automatic(spec, seed=seed, max_pairs=max_pairs, fits=fits, max_chars=max_chars,
                               keep_doc=keep_doc)  # fmt: skip
    comparisons, report = load_comparisons(spec, format=format)
    if not comparisons:
        reasons = "; ".join(f"line {n}: {r}" for n, r in report.skipped[:3])
        raise UserError(f"{spec}: no usable comparisons ({report.summary()}{'; ' + reasons if reasons else ''}); "
                        "check the file and --format")
    if max_pairs is not None:
        comparisons = comparisons[:max_pairs]
    notes = [f"line {n}: {note}" for n, note in report.notes]
    return ComparisonSet(comparisons, spec, report.n_skipped, 0, notes, report)


def group_key(c: Comparison, index: int) -> str:
    """Pairs that share a group go to the same split: the same document, or the same (non-empty) prompt."""
    if "doc" in c.meta:
        return f"doc:{c.meta['doc']}"
    return f"prompt:{c.prompt}" if c.prompt.strip() else f"index:{index}"


def in_test_split(key: str, test_fraction: float, seed: int) -> bool:
    """A stable hash of (seed, key) below ``test_fraction``."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split_set(comparisons: Sequence[Comparison], test_fraction: float,
              seed: int = 0) -> tuple[list[Comparison], list[Comparison]]:  # fmt: skip
    """(train, test) by a hash of each pair's group (`group_key`), so no group spans both splits."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction must be between 0 and 1, got {test_fraction}")
    train, test = [], []
    for i, c in enumerate(comparisons):
        (test if in_test_split(group_key(c, i), test_fraction, seed) else train).append(c)
    if not train or not test:
        raise UserError(f"splitting {len(comparisons)} comparisons at test fraction {test_fraction} left an empty "
                        "split; give more data, another fraction or a separate --test file")
    return train, test


def pmp_set(spec: str, *, binary: bool = True, **kwargs) -> ComparisonSet:
    """A PMP set: `load_set` then, when ``binary``, `binarize` (Askell et al. 2021, section 5)."""
    out = load_set(spec, **kwargs)
    if binary:
        out.comparisons = binarize(out.comparisons)
        out.notes.append("binarised: each A > B gave GOOD:A > BAD:A and BAD:B > GOOD:B")
    return out
