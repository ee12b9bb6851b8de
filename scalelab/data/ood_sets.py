"""OOD benchmarks built from data present on every machine, and texts from any source for `scalelab ood`.

`benchmark(name, n, seed) -> (in_texts, out_texts)`, n texts each:
- "far": snippets of Python library code (in) vs English prose, the docstrings of the same
  library (out): two kinds of text that any language model tells apart;
- "near": snippets of library code (in) vs snippets of the standard library's own test suite
  (`test/`, `*/tests/`, `test_*.py`) (out): both Python, same authors and style, so they are not
  trivially separable; what differs is the register (assertions, fixtures, literal test data);
- "hh": the opening human turns of the Anthropic HH harmless sample in `../shared/data/hh-rlhf`
  (in, real assistant prompts, Bai et al. 2022) vs the library's docstrings (out). Needs that
  file: `available()` lists the benchmarks present; asking for an absent one is a UserError.

Snippets: 8 consecutive code lines (no blank, comment-only or docstring lines), at most 400
characters; prose: a docstring's first paragraph of at least 80 characters, whitespace-joined.
Code comes from the embedded corpus (`source="stdlib"`), deterministic for a seed.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scalelab.data.sources import iter_documents, stdlib_files
from scalelab.errors import UserError

NAMES = ("near", "far", "hh")
SNIPPET_LINES = 8
MAX_CHARS = 400
PER_FILE = 4
PROSE_PER_FILE = 16
HH_NAME = Path("hh-rlhf") / "harmless-base-test.jsonl.gz"


def hh_path() -> Path | None:
    """The HH harmless sample in `shared/data` beside the checkout (`../shared/data`), or beside the
    folder of checkouts (a worktree in `wt/NAME`), or in $SCALELAB_SHARED_DATA; None when absent."""
    root = Path(__file__).resolve().parents[2]
    folders = [Path(os.environ["SCALELAB_SHARED_DATA"])] if os.environ.get("SCALELAB_SHARED_DATA") else []
    folders += [root.parent / "shared" / "data", root.parent.parent / "shared" / "data"]
    for folder in folders:
        if (folder / HH_NAME).is_file():
            return folder / HH_NAME
    return None


def available() -> list[str]:
    """The benchmark names whose data is on this machine."""
    return [n for n in NAMES if n != "hh" or hh_path() is not None]


def _is_test_file(path: Path) -> bool:
    return any(p in ("test", "tests", "idle_test") for p in path.parts[:-1]) or path.name.startswith("test_")


def _parse(path: Path) -> tuple[list[str], ast.Module] | None:
    try:
        text = path.read_text(encoding="utf-8")
        return text.splitlines(), ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None


def _docstring_nodes(tree: ast.Module) -> Iterator[ast.Expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            value = getattr(first, "value", None)
            if isinstance(first, ast.Expr) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                yield first


def _code_snippets(lines: list[str], tree: ast.Module, rng: np.random.Generator) -> list[str]:
    skip = {i for d in _docstring_nodes(tree) for i in range(d.lineno - 1, (d.end_lineno or d.lineno))}
    code = [ln.rstrip() for i, ln in enumerate(lines) if i not in skip and ln.strip() and ln.lstrip()[:1] != "#"]
    if len(code) < SNIPPET_LINES:
        return []
    starts = rng.permutation(len(code) - SNIPPET_LINES + 1)[:PER_FILE]
    return ["\n".join(code[s : s + SNIPPET_LINES])[:MAX_CHARS] for s in sorted(starts)]


def _prose(lines: list[str], tree: ast.Module, rng: np.random.Generator) -> list[str]:
    found = []
    for d in _docstring_nodes(tree):
        para = " ".join(str(d.value.value).strip().split("\n\n")[0].split())  # type: ignore[attr-defined]
        if len(para) >= 80:
            found.append(para[:MAX_CHARS])
    return [found[i] for i in sorted(rng.permutation(len(found))[:PROSE_PER_FILE])]


def _collect(files: list[Path] | tuple[Path, ...], n: int, seed: int, extract) -> list[str]:
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for i in rng.permutation(len(files)):
        parsed = _parse(files[i])
        if parsed is not None:
            texts.extend(extract(*parsed, rng))
        if len(texts) >= n:
            return texts[:n]
    raise UserError(f"the standard library holds only {len(texts)} such texts, fewer than n={n}; ask for fewer")


def hh_prompts(n: int, seed: int) -> list[str]:
    """n opening human turns of the HH harmless sample (deterministic for a seed)."""
    path = hh_path()
    if path is None:
        raise UserError(f"the HH sample ../shared/data/{HH_NAME} is absent; use the 'near' or 'far' benchmark")
    prompts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            chosen = json.loads(line).get("chosen", "")
            turn = chosen.split("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0].strip()
            if turn:
                prompts.append(turn[:MAX_CHARS])
    if len(prompts) < n:
        raise UserError(f"the HH sample holds {len(prompts)} prompts, fewer than n={n}; ask for fewer")
    rng = np.random.default_rng(seed)
    return [prompts[i] for i in rng.permutation(len(prompts))[:n]]


def benchmark(name: str, n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(in_texts, out_texts) of a named benchmark, n of each; see the module docstring."""
    if name not in NAMES:
        raise UserError(f"unknown OOD benchmark {name!r}; choose one of {', '.join(NAMES)}")
    if n < 1:
        raise UserError(f"n={n}: an OOD benchmark needs at least one text per side")
    files = stdlib_files()
    library = [f for f in files if not _is_test_file(f)]
    if name == "hh":
        return hh_prompts(n, seed), _collect(library, n, seed + 1, _prose)
    code = _collect(library, n, seed, _code_snippets)
    if name == "far":
        return code, _collect(library, n, seed + 1, _prose)
    return code, _collect([f for f in files if _is_test_file(f)], n, seed + 1, _code_snippets)


def texts_from_source(source: str, n: int | None, seed: int = 0, *, side: str = "in",
                      text_field: str = "text") -> list[str]:  # fmt: skip
    """Texts for `scalelab ood`: `ood:NAME` (that benchmark's `side`, "in" or "out"), or any data
    source; a single plain-text file gives one text per non-empty line, other sources one per
    document. At most n texts, a seeded sample when there are more."""
    if source.startswith("ood:"):
        pair = benchmark(source.removeprefix("ood:"), n or 500, seed)
        return pair[0] if side == "in" else pair[1]
    path = Path(source)
    if path.is_file() and not path.name.endswith((".jsonl", ".jsonl.gz")):
        texts = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    else:
        texts = [d.text for d in iter_documents(source, text_field)]
    if not texts:
        raise UserError(f"{source!r} holds no texts; give a file with one prompt per line, a folder or a .jsonl")
    if n is not None and len(texts) > n:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in sorted(rng.permutation(len(texts))[:n])]
    return texts


__all__ = ["NAMES", "available", "benchmark", "hh_prompts", "texts_from_source"]
