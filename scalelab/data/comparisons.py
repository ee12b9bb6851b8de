"""Comparison data for preference models: a prompt, a preferred and a rejected response.

A preference model (PM) is trained on pairs with the ranked loss L_PM = log(1 + exp(r_bad - r_good))
(Askell et al. 2021, arXiv 2112.00861; Bai et al. 2022, arXiv 2204.05862). This
module holds the pair itself (`Comparison`), the loaders, and the left truncation that fits a pair
into the PM's context. It knows no tokenizer and no nn.Module.

Formats read by `load_comparisons`:

- ``hh``: the HH-RLHF release of Bai et al., JSONL (optionally gzipped) lines
  ``{"chosen": transcript, "rejected": transcript}`` whose turns start with ``"\\n\\nHuman:"`` and
  ``"\\n\\nAssistant:"``. Each pair is split by `split_hh_pair` into the shared dialogue prefix (up to
  and including the last shared ``"\\n\\nAssistant:"`` marker) and the two final responses.
- ``generic``: rows with ``prompt``, ``chosen``, ``rejected`` and an optional ``margin`` (a finite
  number >= 0), from JSONL, CSV, or a Hugging Face dataset (a local directory or a hub name).

Malformed lines (bad JSON, missing keys, invalid UTF-8, ...) are skipped and listed in the
`LoadReport` with their line numbers, and the first few reasons are logged as a warning (the CLI
prints it); with ``strict=True`` the first one raises a `UserError` that names the line and the reason.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalelab.errors import UserError

ASSISTANT = "\n\nAssistant:"
FORMATS = ("hh", "generic", "auto")
DIVERGED_POLICIES = ("split", "skip")
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")

log = logging.getLogger(__name__)

Row = Mapping[str, Any]
RowItem = tuple[int, "Row | None", "str | None"]  # (line number, row, reason it is malformed)


@dataclass(frozen=True)
class Comparison:
    """One preference: ``prompt + chosen`` is preferred to ``prompt + rejected``.

    ``margin`` is an optional strength of preference (>= 0); ``source`` names where the pair came
    from (a file name, ``"pmp:shuffle"``...); ``meta`` holds provenance such as the line number.
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float | None = None
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected", "source"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Comparison.{name} must be a str, got {type(getattr(self, name)).__name__}")
        if self.chosen == self.rejected:
            raise ValueError("Comparison.chosen equals Comparison.rejected; a comparison needs two texts")
        if self.margin is not None:
            reason = _margin_problem(self.margin)
            if reason:
                raise ValueError(f"Comparison.margin: {reason}")
            object.__setattr__(self, "margin", float(self.margin))


@dataclass
class LoadReport:
    """What a load did: how many pairs were kept, which lines were skipped and why.

    ``skipped`` lists (line number, reason) for lines that gave no comparison; ``notes`` lists
    (line number, note) for lines that were kept but are unusual (an empty HH response, HH
    transcripts that diverge before the final turn). ``unit`` is "line" for files, "row" for datasets.
    """

    source: str
    format: str
    n_loaded: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    unit: str = "line"

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line for a log: counts of loaded, skipped and noted lines."""
        return (f"{self.source} ({self.format}): {self.n_loaded} comparisons loaded, "
                f"{self.n_skipped} {self.unit}s skipped, {len(self.notes)} noted")

    def explain(self, limit: int = 5) -> str:
        """The first ``limit`` skipped lines with their reasons, e.g. "line 3: bad JSON (...)"."""
        if not self.skipped:
            return f"{self.source}: no {self.unit}s skipped"
        shown = "; ".join(f"{self.unit} {n}: {reason}" for n, reason in self.skipped[:limit])
        more = f"; and {self.n_skipped - limit} more" if self.n_skipped > limit else ""
        return (f"{self.source}: skipped {self.n_skipped} of {self.n_skipped + self.n_loaded} {self.unit}s "
                f"({shown}{more}); fix them, or load with strict=True to stop at the first")


class _PolicySkip(UserError):
    """A well-formed line skipped by a policy the caller chose; recorded, never raised."""


@dataclass(frozen=True)
class HHSplit:
    """An HH pair split into its shared dialogue prefix and the two final assistant responses."""

    prefix: str
    chosen: str
    rejected: str
    diverged: bool


def _canonical_transcript(text: str) -> str:
    # Real transcripts start with "\n\nHuman:"; trimming and re-adding "\n\n" makes the first marker
    # canonical even when a line has stray outer whitespace or Windows line endings.
    return "\n\n" + text.replace("\r\n", "\n").strip()


def split_hh_pair(chosen: str, rejected: str) -> HHSplit:
    """Split two HH-RLHF transcripts into (shared prefix, chosen response, rejected response).

    The prefix ends with the final ``"\\n\\nAssistant:"`` marker; responses are the text after it,
    stripped of outer whitespace (so ``prefix + " " + response`` rebuilds the transcript up to
    whitespace). Transcripts are trimmed and given a leading ``"\\n\\n"`` first.

    Divergence policy: when the two transcripts differ before their final assistant turn (5 of the
    2,312 pairs of harmless-base-test), the prefix is the longest common prefix cut back to its last
    complete ``"\\n\\nAssistant:"`` marker, and the rest of each transcript (which may hold further
    turns) is its response; ``diverged`` is then True. An empty response is allowed (one side of 4
    such pairs is empty in the real data). Raises `UserError` for pairs that give no comparison.
    """
    if not chosen.strip() or not rejected.strip():
        raise UserError(f"empty {'chosen' if not chosen.strip() else 'rejected'} transcript")
    a, b = _canonical_transcript(chosen), _canonical_transcript(rejected)
    if a == b:
        raise UserError("chosen and rejected transcripts are identical")
    if ASSISTANT not in a or ASSISTANT not in b:
        side = "chosen" if ASSISTANT not in a else "rejected"
        raise UserError(f"no {ASSISTANT.strip()!r} turn in the {side} transcript")
    end_a, end_b = a.rfind(ASSISTANT) + len(ASSISTANT), b.rfind(ASSISTANT) + len(ASSISTANT)
    diverged = a[:end_a] != b[:end_b]
    if diverged:
        common = os.path.commonprefix([a, b])
        marker = common.rfind(ASSISTANT)
        if marker < 0:
            raise UserError("the transcripts share no Assistant turn")
        end_a = end_b = marker + len(ASSISTANT)
    response_a, response_b = a[end_a:].strip(), b[end_b:].strip()
    if response_a == response_b:
        raise UserError("chosen and rejected final responses are identical (after trimming whitespace)")
    return HHSplit(prefix=a[:end_a], chosen=response_a, rejected=response_b, diverged=diverged)


def _margin_problem(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"margin must be a number or null, got {type(value).__name__}"
    if not math.isfinite(value) or value < 0:
        return f"margin must be finite and >= 0 (a negative margin means the pair is reversed), got {value}"
    return None


def _require_strings(row: Row, keys: Sequence[str]) -> None:
    for key in keys:
        if key not in row:
            raise UserError(f"missing key {key!r}")
        if not isinstance(row[key], str):
            raise UserError(f"{key!r} must be a string, got {type(row[key]).__name__}")


def _hh_row(row: Row, line_no: int, source: str, diverged_policy: str) -> tuple[Comparison, str | None]:
    """(comparison, note) for an HH row; raises UserError with the reason when it gives none."""
    _require_strings(row, _REQUIRED["hh"])
    parts = split_hh_pair(row["chosen"], row["rejected"])
    notes = []
    if parts.diverged:
        if diverged_policy == "skip":
            raise _PolicySkip("transcripts diverge before the final Assistant turn (diverged='skip')")
        notes.append("transcripts diverge before the final Assistant turn; split at the last shared one")
    for side in ("chosen", "rejected"):
        if not getattr(parts, side):
            notes.append(f"empty {side} response")
    meta = {"line": line_no, "diverged": parts.diverged}
    comparison = Comparison(parts.prefix, parts.chosen, parts.rejected, None, source, meta)
    return comparison, "; ".join(notes) or None


_GENERIC_KEYS = ("prompt", "chosen", "rejected", "margin", "source", "meta")
_REQUIRED = {"hh": ("chosen", "rejected"), "generic": ("prompt", "chosen", "rejected")}


def _generic_row(row: Row, line_no: int, source: str) -> Comparison:
    """The comparison in a generic row; raises UserError with the reason when it gives none."""
    _require_strings(row, _REQUIRED["generic"])
    for key in ("chosen", "rejected"):
        if not row[key]:  # a response of blanks is a response (an over-optimised policy writes them)
            raise UserError(f"empty {key!r}")
    if row["chosen"] == row["rejected"]:
        raise UserError("'chosen' equals 'rejected'")
    margin = row.get("margin")
    if isinstance(margin, str):  # CSV cells are strings; an empty cell means no margin
        try:
            margin = float(margin) if margin.strip() else None
        except ValueError:
            raise UserError(f"margin {margin!r} is not a number") from None
    problem = _margin_problem(margin)
    if problem:
        raise UserError(problem)
    meta: dict[str, Any] = {"line": line_no}
    if isinstance(row.get("meta"), Mapping):
        meta.update(row["meta"])
    meta.update({k: v for k, v in row.items() if k not in _GENERIC_KEYS})
    row_source = row.get("source") if isinstance(row.get("source"), str) and row.get("source") else source
    return Comparison(row["prompt"], row["chosen"], row["rejected"], margin, row_source, meta)


def _rows_jsonl(path: Path) -> Iterator[RowItem]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError:
                yield line_no, None, "line is not valid UTF-8"
                continue
            if not text.strip():
                continue  # blank lines (a trailing newline) are not data
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield line_no, None, f"bad JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(obj, dict):
                yield line_no, None, f"line is a JSON {type(obj).__name__}, not an object"
                continue
            yield line_no, obj, None


def _rows_csv(path: Path) -> tuple[list[str], list[RowItem]]:
    """Header and rows of a CSV file, read whole (comparison CSVs are small next to JSONL sets)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    # invalid UTF-8 bytes become lone surrogates, so that the row holding them is skipped with a reason
    with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        items: list[RowItem] = []
        start = reader.line_num + 1
        for record in reader:
            if any(isinstance(v, str) and _has_bad_bytes(v) for v in record.values()):
                items.append((start, None, "line is not valid UTF-8"))
            elif None in record:
                items.append((start, None, "more cells than header columns"))
            elif any(v is None for v in record.values()):
                items.append((start, None, "fewer cells than header columns"))
            else:
                items.append((start, record, None))
            start = reader.line_num + 1
    return columns, items


def _has_bad_bytes(text: str) -> bool:
    """Whether ``text`` holds bytes that were not valid UTF-8 (decoded with errors='surrogateescape')."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _rows_hf(name: str, split: str | None) -> tuple[list[str], Iterator[RowItem]]:
    """Rows of a local `datasets` directory (save_to_disk or loadable files) or a hub dataset."""
    try:
        import datasets  # optional: pip install scalelab[hf]
    except ImportError:
        raise UserError("reading a Hugging Face dataset needs 'datasets': pip install scalelab[hf]") from None
    path = Path(name)
    if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        data = datasets.load_from_disk(str(path))
    else:
        data = datasets.load_dataset(name) if split is None else datasets.load_dataset(name, split=split)
    if isinstance(data, dict):  # a DatasetDict: one dataset per split
        splits = list(data.keys())
        if split is None and len(splits) != 1:
            raise UserError(f"{name} has splits {splits}; pass split= to choose one")
        if split is not None and split not in splits:
            raise UserError(f"{name} has no split {split!r}; its splits are {splits}")
        data = data[split if split is not None else splits[0]]
    columns = list(data.column_names)
    return columns, ((i, dict(row), None) for i, row in enumerate(data, start=1))


def _format_of_keys(keys: Iterable[str]) -> str | None:
    keys = set(keys)
    return next((fmt for fmt in ("generic", "hh") if set(_REQUIRED[fmt]) <= keys), None)


def _open_rows(path: Path, format: str, split: str | None) -> tuple[str, Iterable[RowItem], str]:
    """(format, rows, unit) of a file or dataset, detecting the format when it is "auto"."""
    name = str(path)
    if path.is_file() and name.endswith(JSONL_SUFFIXES):
        rows: Iterator[RowItem] = _rows_jsonl(path)
        if format != "auto":
            return format, rows, "line"
        peeked = list(itertools.islice(rows, 100))  # the first JSON object decides
        first = next((row for _, row, _ in peeked if row is not None), {})
        fmt = _format_of_keys(first)
        if fmt is None:
            raise UserError(f"cannot detect the format of {path}: the first JSON object has keys "
                            f"{sorted(first)}; generic needs prompt, chosen, rejected; hh needs chosen, "
                            "rejected. Fix the keys or pass format='hh' or format='generic'")
        return fmt, itertools.chain(peeked, rows), "line"
    if path.is_file() and name.endswith(CSV_SUFFIXES):
        (columns, items), unit = _rows_csv(path), "line"
    elif path.is_file():
        raise UserError(f"{path}: unknown file type; use one of {', '.join(JSONL_SUFFIXES + CSV_SUFFIXES)} "
                        "or a Hugging Face dataset directory")
    elif path.is_dir() or (not path.exists() and "/" in name and not name.startswith((".", "/"))):
        (columns, items), unit = _rows_hf(name, split), "row"  # a directory or a hub name "org/name"
    else:
        raise UserError(f"{path}: no such file or dataset directory; check the path")
    fmt = format if format != "auto" else (_format_of_keys(columns) or "generic")
    missing = [c for c in _REQUIRED[fmt] if c not in columns]
    if missing:
        raise UserError(f"{path}: columns {columns} lack {missing} for format {fmt!r}; hh needs chosen, "
                        "rejected; generic needs prompt, chosen, rejected")
    return fmt, items, unit


def load_comparisons(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    strict: bool = False,
    diverged: str = "split",
    split: str | None = None,
    source: str | None = None,
) -> tuple[list[Comparison], LoadReport]:
    """Load comparisons from JSONL(.gz), CSV(.gz) or a Hugging Face dataset; see the module docstring.

    ``format`` is "hh", "generic" or "auto" (by extension and keys: a CSV header, dataset columns or
    the first JSON object with ``prompt`` is generic, with only ``chosen``/``rejected`` is hh). A
    directory, or a hub name "org/name" that is not a path, is read with `datasets` (``split`` picks
    the split). ``diverged`` is the HH divergence policy: "split" (keep, see `split_hh_pair`) or
    "skip" (skip and list in the report, never an error). ``strict=True`` raises a `UserError` at the
    first malformed line instead of skipping it. ``source`` tags the comparisons (default: the file
    name). Returns the comparisons and a `LoadReport`.
    """
    if format not in FORMATS:
        raise UserError(f"unknown comparison format {format!r}; valid formats are {', '.join(FORMATS)}")
    if diverged not in DIVERGED_POLICIES:
        raise UserError(f"unknown diverged policy {diverged!r}; valid: {', '.join(DIVERGED_POLICIES)}")
    path = Path(path)
    fmt, rows, unit = _open_rows(path, format, split)
    report = LoadReport(source=str(path), format=fmt, unit=unit)
    comparisons: list[Comparison] = []
    tag = source if source is not None else path.name
    for line_no, row, reason in rows:
        note, by_policy = None, False
        if row is not None:
            try:
                if fmt == "hh":
                    comparison, note = _hh_row(row, line_no, tag, diverged)
                else:
                    comparison = _generic_row(row, line_no, tag)
            except UserError as e:
                reason, by_policy = str(e), isinstance(e, _PolicySkip)
        if reason is not None:
            if strict and not by_policy:
                raise UserError(f"{path} {unit} {line_no}: {reason}. Fix or remove that {unit}, or load with "
                                "strict=False to skip malformed lines (they are listed in the LoadReport)")
            report.skipped.append((line_no, reason))
            continue
        comparisons.append(comparison)
        if note:
            report.notes.append((line_no, note))
    report.n_loaded = len(comparisons)
    if report.skipped:
        log.warning(report.explain())
    return comparisons, report


def save_comparisons(comparisons: Iterable[Comparison], path: str | os.PathLike[str]) -> int:
    """Write comparisons as generic JSONL (gzipped if the name ends in .gz); returns the count.

    `load_comparisons` reads the file back to equal comparisons (``meta`` must be JSON-serialisable).
    """
    path = Path(path)
    n = 0
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for c in comparisons:
            meta = {k: v for k, v in c.meta.items() if k != "line"}  # "line" is where it is read back
            row = {"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected, "margin": c.margin,
                   "source": c.source or None, "meta": meta or None}
            f.write(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n")
            n += 1
    return n


@dataclass(frozen=True)
class Truncation:
    """Token ids of prefix + response after left truncation.

    ``n_prefix`` prefix tokens were kept (the response starts at ``ids[n_prefix]``);
    ``n_prefix_dropped`` and ``n_response_dropped`` say what was cut.
    """

    ids: list[int]
    n_prefix: int
    n_prefix_dropped: int
    n_response_dropped: int

    @property
    def truncated(self) -> bool:
        return self.n_prefix_dropped + self.n_response_dropped > 0

    @property
    def response_truncated(self) -> bool:
        return self.n_response_dropped > 0


def truncate_left(prefix_ids: Sequence[int], response_ids: Sequence[int], max_tokens: int) -> Truncation:
    """Fit prefix + response into ``max_tokens`` by dropping tokens from the LEFT of the prefix.

    The response is what the PM judges, so it is kept whole and the oldest dialogue turns go first
    (the PM context is 1024 in Askell et al. 2021). If the response alone exceeds ``max_tokens``, the
    whole prefix is dropped and the response keeps its first ``max_tokens`` tokens: its start is what
    answers the prompt, and the score token the caller appends must follow the kept text. Pass the
    context length minus the tokens you append (e.g. 1 for an end-of-context token). Callers should
    count ``result.truncated`` and report it rather than drop long pairs silently.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise UserError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    n_prefix, n_response = len(prefix_ids), len(response_ids)
    if n_response >= max_tokens:
        return Truncation(list(response_ids[:max_tokens]), 0, n_prefix, n_response - max_tokens)
    keep = min(n_prefix, max_tokens - n_response)
    ids = list(prefix_ids[n_prefix - keep:]) + list(response_ids)
    return Truncation(ids, keep, n_prefix - keep, 0)
