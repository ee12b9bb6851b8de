"""Document sources: the embedded default corpus, text files, JSONL and Hugging Face datasets.

A source is named by one string:
- `stdlib`: the running Python's own standard-library `.py` files (real code with English
  docstrings, present on every machine, no network): the embedded default corpus;
- a text file, a folder (every non-binary file under it) or a glob (`data/*.txt`);
- a `.jsonl` / `.jsonl.gz` file whose records hold the text in a field (default `text`);
- `hf:NAME[:CONFIG][@SPLIT]` (a Hugging Face hub dataset) or `hf-disk:PATH` (one saved with
  `save_to_disk`); these need the `hf` extra.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scalelab.errors import UserError

SOURCE_HELP = (
    "give 'stdlib' (the embedded corpus), a text file, a folder, a glob, a .jsonl/.jsonl.gz file, "
    "'hf:NAME' or 'hf-disk:PATH'"
)


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def stdlib_files() -> list[Path]:
    """The standard library's .py files, sorted, without installed third-party packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts]
    return sorted(files)


def _read_text(path: Path) -> str | None:
    """A file's text, or None when it looks binary (NUL bytes)."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        return None
    return raw.decode("utf-8", errors="replace")


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
    with opener(path, "rt", encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
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
    if source == "stdlib":
        root = Path(sysconfig.get_paths()["stdlib"])
        for f in stdlib_files():
            text = _read_text(f)
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
    if source == "stdlib":
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
