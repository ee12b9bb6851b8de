"""Two distributions from one Python file: its English prose and its bare code.

Hernandez et al. 2021 (arXiv 2102.01293) measure transfer from English text to Python. Every
machine has a corpus of both in one place: the standard library. `derive("stdlib:prose", text)`
keeps the docstrings (cleaned of their indentation) and the comments, one paragraph each, in file
order; `derive("stdlib:code", text)` keeps the code with every docstring and comment removed (a
body that held only a docstring gets `pass`, so the code still parses). Files that do not parse
(the test suite's deliberately broken ones) give "" and are skipped. Both sides use the same
characters, so one tokenizer (bytes) serves both.
"""

from __future__ import annotations

import ast
import inspect
import io
import tokenize
import warnings

DERIVE_VERSION = 1
"""Bumped when the derivation changes, so that cached token shards are rebuilt."""

_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _docstrings(tree: ast.Module) -> list[tuple[ast.Expr, bool]]:
    """Every docstring statement, with whether it is its body's only statement."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, _WITH_DOCSTRING) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append((first, len(node.body) == 1))
    return found


def _comments(text: str) -> list[tuple[int, int, str]]:
    """(line, column, text) of every comment, line 1-based."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return [(t.start[0], t.start[1], t.string) for t in tokens if t.type == tokenize.COMMENT]


def _parse(text: str) -> tuple[ast.Module, list[tuple[int, int, str]]] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like in old files
            return ast.parse(text), _comments(text)
    except (SyntaxError, ValueError, tokenize.TokenError, RecursionError, IndentationError):
        return None


def prose(text: str) -> str:
    """Docstrings and comments of a Python file as English paragraphs, in file order ("" if it does not parse)."""
    parsed = _parse(text)
    if parsed is None:
        return ""
    tree, comments = parsed
    parts: list[tuple[int, str]] = [(node.lineno, inspect.cleandoc(node.value.value)) for node, _ in _docstrings(tree)]
    block: list[str] = []
    last_line, block_start = -2, 0
    for line, _, comment in comments:
        words = comment.lstrip("#").strip()
        if comment.startswith("#!") or not any(ch.isalpha() for ch in words):
            continue
        if line != last_line + 1 and block:
            parts.append((block_start, " ".join(block)))
            block = []
        if not block:
            block_start = line
        block.append(words)
        last_line = line
    if block:
        parts.append((block_start, " ".join(block)))
    return "\n\n".join(p for _, p in sorted(parts) if p.strip())


def code(text: str) -> str:
    """The code of a Python file without docstrings and comments ("" if it does not parse)."""
    parsed = _parse(text)
    if parsed is None:
        return ""
    tree, comments = parsed
    lines = text.splitlines()
    keep = [True] * len(lines)
    for line, col, _ in comments:  # tokenize counts columns in characters
        lines[line - 1] = lines[line - 1][:col].rstrip()
    for node, only in _docstrings(tree):
        a, b = node.lineno - 1, node.end_lineno - 1
        head = lines[a].encode()[: node.col_offset].decode(errors="ignore")
        tail = lines[b].encode()[node.end_col_offset :].decode(errors="ignore")
        lines[a] = head + ("pass" if only else "") + tail
        for i in range(a + 1, b + 1):
            keep[i] = False
    out: list[str] = []
    for original, line, kept in zip(text.splitlines(), lines, keep):
        if not kept or (not line.strip() and original.strip()):
            continue
        if not line.strip() and (not out or not out[-1].strip()):
            continue  # one blank line at most
        out.append(line.rstrip())
    return "\n".join(out).strip("\n") + "\n" if any(s.strip() for s in out) else ""


def derive(source: str, text: str) -> str:
    """The text of a derived source ('stdlib:prose' or 'stdlib:code') from one Python file."""
    if source == "stdlib:prose":
        return prose(text)
    if source == "stdlib:code":
        return code(text)
    raise ValueError(f"no derived source {source!r}")
