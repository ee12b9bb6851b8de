"""Document sources: the embedded default corpus, text files, JSONL and Hugging Face datasets.

A source is named by one string:
- `stdlib`: the running Python's own standard-library `.py` files (real code with English
  docstrings, present on every machine, no network): the embedded default corpus;
- `stdlib:prose` and `stdlib:code`, two distributions derived from it (data/prose_code.py): the
  English of its docstrings and comments, and its code with docstrings and comments removed (the
  text -> Python pair of the transfer study, Hernandez et al. 2021);
- a text file, a folder (every non-binary file under it) or a glob (`data/*.txt`);
- a `.jsonl` / `.jsonl.gz` file whose records hold the text in a field (default `text`);
- `hf:NAME[:CONFIG][@SPLIT]` (a Hugging Face hub dataset) or `hf-disk:PATH` (one saved with
  `save_to_disk`); these need the `hf` extra.

Text is read as UTF-8. Invalid byte sequences in a text or JSONL file are replaced with U+FFFD
rather than refused (one stray byte should not stop a corpus), and counted: a `DataWarning` names
the file, the number of replacements and the first line that had one.
"""

from __future__ import annotations

import functools
import glob
import gzip
import hashlib
import json
import os
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import UserError

SOURCE_HELP = (
    "give 'stdlib' (the embedded corpus), 'stdlib:prose' or 'stdlib:code' (its English, its code), "
    "a text file, a folder, a glob, a .jsonl/.jsonl.gz file, "
    "'hf:NAME' or 'hf-disk:PATH'"
)


DERIVED = ("stdlib:prose", "stdlib:code")
"""Sources derived from the embedded corpus: its English prose and its bare code."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str


@functools.cache
def stdlib_files() -> tuple[Path, ...]:
    """The standard library's .py files, sorted, without installed third-party packages. Walked once per
    process (0.3 s): a packed sweep worker trains many runs that read it."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts]
    return tuple(sorted(files))


class DataWarning(UserWarning):
    """Something in the corpus was repaired on reading (invalid UTF-8 replaced)."""


def _decode(raw: bytes) -> tuple[str, int, int | None]:
    """(text, invalid sequences replaced, byte offset of the first) of UTF-8 bytes."""
    try:
        return raw.decode("utf-8"), 0, None
    except UnicodeDecodeError as e:
        text = raw.decode("utf-8", errors="replace")
        return text, text.count("\ufffd") - raw.count("\ufffd".encode()), e.start


def _warn_replaced(path: Path, count: int, first_line: int) -> None:
    msg = (f"{path}: {count} invalid UTF-8 byte sequence(s) replaced with U+FFFD (first on line {first_line}); "
           "re-encode the file as UTF-8 to keep those characters")  # fmt: skip
    warnings.warn(msg, DataWarning, stacklevel=3)


def _read_text(path: Path, warn: bool = True) -> str | None:
    """A file's text, or None when it looks binary (NUL bytes)."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        return None
    text, bad, first = _decode(raw)
    if bad and warn:
        _warn_replaced(path, bad, raw[:first].count(b"\n") + 1)
    return text


def _is_glob(source: str) -> bool:
    return any(ch in source for ch in "*?[")


def _files_of(source: str) -> list[Path]:
    if _is_glob(source):
        files = [Path(p) for p in glob.glob(source, recursive=True)]
        return sorted(p for p in files if p.is_file())
    p = Path(source).expanduser()
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in f.parts[-1:]))
    return [p]


def _is_jsonl(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".jsonl", ".jsonl.gz", ".ndjson"))


def _iter_jsonl(path: Path, text_field: str) -> Iterator[Document]:
    opener = gzip.open if path.name.endswith(".gz") else open
    replaced, first_bad = 0, None
    with opener(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            line, bad, _ = _decode(raw)
            if bad:
                replaced += bad
                first_bad = first_bad or line_no
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{line_no}: not valid JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(record, dict) or text_field not in record:
                keys = list(record) if isinstance(record, dict) else type(record).__name__
                raise UserError(
                    f"{path}:{line_no}: no field {text_field!r} (found {keys}); set data.text_field to the right one"
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise UserError(f"{path}:{line_no}: field {text_field!r} is {type(text).__name__}, not text")
            yield Document(f"{path.name}:{line_no}", text)
    if replaced:
        _warn_replaced(path, replaced, first_bad)


def _iter_hf(source: str, text_field: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise UserError("Hugging Face datasets need the hf extra: pip install 'scalelab[hf]'") from None
    if source.startswith("hf-disk:"):
        ds = datasets.load_from_disk(source[len("hf-disk:") :])
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    else:
        spec, _, split = source[len("hf:") :].partition("@")
        name, _, conf = spec.partition(":")
        ds = datasets.load_dataset(name, conf or None, split=split or "train")
    if text_field not in ds.column_names:
        raise UserError(f"{source}: no column {text_field!r} (columns: {ds.column_names}); set data.text_field")
    for i, row in enumerate(ds):
        yield Document(f"{i}", row[text_field])


def iter_documents(source: str, text_field: str = "text", max_documents: int | None = None) -> Iterator[Document]:
    """Yield the documents of a source in a deterministic order."""
    count = 0
    for doc in _iter_all(source, text_field):
        if not doc.text:
            continue
        yield doc
        count += 1
        if max_documents is not None and count >= max_documents:
            return


def _iter_all(source: str, text_field: str) -> Iterator[Document]:
    if source in DERIVED:
        from scalelab.data.prose_code import derive

        for doc in _iter_all("stdlib", text_field):
            text = derive(source, doc.text)
            if text:
                yield Document(doc.id, text)
        return
    if source == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        for f in stdlib_files():
            text = _read_text(f, warn=False)  # a few test files there are Latin-1 on purpose
            if text is not None:
                yield Document(str(f.relative_to(root)), text)
        return
    if source.startswith(("hf:", "hf-disk:")):
        yield from _iter_hf(source, text_field)
        return
    files = _files_of(source)
    if not files or not files[0].exists():
        raise UserError(f"data source not found: {source!r}; {SOURCE_HELP}")
    for f in files:
        if _is_jsonl(f):
            yield from _iter_jsonl(f, text_field)
        else:
            text = _read_text(f)
            if text is not None:
                yield Document(str(f), text)


def fingerprint(source: str, text_field: str = "text") -> str:
    """A short hash that changes when the source's content may have changed (paths, sizes, mtimes)."""
    h = hashlib.sha256()
    if source in DERIVED:
        from scalelab.data.prose_code import DERIVE_VERSION

        h.update(f"{source} v{DERIVE_VERSION} {fingerprint('stdlib', text_field)}".encode())
    elif source == "stdlib":
        h.update(f"stdlib {sys.version} {sysconfig.get_paths()['stdlib']}".encode())
        files = stdlib_files()
        h.update(str(len(files)).encode())
        h.update(str(sum(os.path.getsize(f) for f in files)).encode())
    elif source.startswith(("hf:", "hf-disk:")):
        h.update(source.encode())
    else:
        files = _files_of(source)
        if not files or not files[0].exists():
            raise UserError(f"data source not found: {source!r}; {SOURCE_HELP}")
        for f in files:
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(text_field.encode())
    return h.hexdigest()[:16]
