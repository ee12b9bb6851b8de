"""Gold-known comparisons from verifiable tasks: arithmetic answers and Python code that parses.

Like the automatic sets of preference-model pre-training (Askell et al. 2021, arXiv 2112.00861),
these need no human label: the preferred side is checked by a program. Arithmetic prefers
the correct answer to a plausible wrong one; code prefers a function that parses to a minimally
broken copy that provably fails `ast.parse`. Deterministic given ``seed`` and the input order.
"""

from __future__ import annotations

import ast
import io
import random
import textwrap
import tokenize
import warnings
from collections.abc import Iterable, Iterator, Sequence

from scalelab.data.comparisons import Comparison
from scalelab.errors import UserError

ARITHMETIC_OPERATORS = "+-*/"
BREAK_KINDS = ("drop_colon", "drop_bracket", "break_indent", "drop_quote")


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 1, 10**digits - 1)


def _wrong_answer(answer: int, rng: random.Random) -> tuple[int, str]:
    """A plausible wrong answer >= 0 and how it was made: off by a little, one digit changed, or random."""
    error = rng.choice(("offset", "digit", "random"))
    if error == "offset":
        offset = rng.choice((-10, -2, -1, 1, 2, 10))
        wrong = answer + offset if answer + offset >= 0 else answer - offset
    elif error == "digit":
        text = str(answer)
        i = rng.randrange(len(text))
        choices = [d for d in "0123456789" if d != text[i] and not (i == 0 and d == "0" and len(text) > 1)]
        wrong = int(text[:i] + rng.choice(choices) + text[i + 1:])
    else:
        n = len(str(answer))
        wrong = answer
        while wrong == answer:
            wrong = rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)
    return wrong, error


def arithmetic_comparisons(
    n: int,
    *,
    seed: int = 0,
    digits: int = 2,
    operators: str = "+-*",
    template: str = "Q: {a}{op}{b}=? A:",
) -> list[Comparison]:
    """``n`` arithmetic questions, the correct answer preferred to a wrong one.

    Operands have exactly ``digits`` digits (1 to 9 when ``digits`` is 1). "-" puts the larger
    operand first, so answers are never negative; "/" is exact integer division (a = b * answer, so
    ``a`` may have up to 2 * ``digits`` digits). Responses are bare numbers with no leading space,
    e.g. prompt "Q: 37+48=? A:", chosen "85", rejected "84". ``meta`` holds a, b, op, answer and the
    kind of error ("offset", "digit" or "random").
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 18:
        raise UserError(f"digits must be an integer from 1 to 18, got {digits!r}")
    if not operators or any(op not in ARITHMETIC_OPERATORS for op in operators):
        raise UserError(f"operators {operators!r} must be a non-empty string of characters from '+-*/'")
    if n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        op = rng.choice(operators)
        a, b = _operand(rng, digits), _operand(rng, digits)
        if op == "+":
            answer = a + b
        elif op == "*":
            answer = a * b
        elif op == "-":
            a, b = max(a, b), min(a, b)
            answer = a - b
        else:
            answer, a = a, a * b
        wrong, error = _wrong_answer(answer, rng)
        meta = {"a": a, "b": b, "op": op, "answer": answer, "error": error}
        out.append(Comparison(template.format(a=a, op=op, b=b), str(answer), str(wrong), None,
                              "arithmetic", meta))
    return out


def _parses(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarnings (e.g. escapes) are not failures
        try:
            ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return False
    return True


def extract_functions(source: str, min_lines: int = 3, max_lines: int = 40) -> list[tuple[str, str]]:
    """(name, code) of every function (with its decorators, dedented) that parses on its own.

    Functions at any depth count (methods, nested functions) if they have ``min_lines`` to
    ``max_lines`` lines; duplicates are dropped; sources that do not parse give [].
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return []
    lines = source.splitlines()
    out, seen = [], set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.end_lineno is None:
            continue
        start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        if not min_lines <= node.end_lineno - start <= max_lines:
            continue
        code = textwrap.dedent("\n".join(lines[start:node.end_lineno])) + "\n"
        if code not in seen and _parses(code):
            seen.add(code)
            out.append((node.name, code))
    return out


_NOT_CODE = (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT)


def _candidates(code: str) -> dict[str, list[tuple[int, str]]]:
    """Edit sites per break kind as (character offset, action) found with `tokenize`."""
    starts = [0]
    for line in code.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    sites: dict[str, list[tuple[int, str]]] = {kind: [] for kind in BREAK_KINDS}
    statement_start, first_row = True, None
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        offset = starts[tok.start[0] - 1] + tok.start[1]
        if tok.type == tokenize.OP and tok.string == ":":
            sites["drop_colon"].append((offset, "delete"))
        elif tok.type == tokenize.OP and tok.string in "()[]{}":
            sites["drop_bracket"].append((offset, "delete"))
        elif tok.type == tokenize.STRING:
            quote = min(i for i in (tok.string.find("'"), tok.string.find('"')) if i >= 0)
            sites["drop_quote"].append((offset + quote, "delete"))
        if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            statement_start = True
        elif statement_start and tok.type not in _NOT_CODE:
            statement_start = False
            if first_row is None:
                first_row = tok.start[0]
            elif tok.start[1] > 0:  # an indented statement: shift it by one space either way
                line_start = starts[tok.start[0] - 1]
                sites["break_indent"] += [(line_start, "indent"), (line_start, "dedent")]
    return sites


def break_python(code: str, rng: random.Random, kinds: Sequence[str] = BREAK_KINDS,
                 max_tries: int = 20) -> tuple[str, str] | None:
    """A copy of ``code`` with one minimal edit that makes `ast.parse` fail, and its kind; or None.

    Kinds: ``drop_colon`` (delete a ":" token), ``drop_bracket`` (delete one of ()[]{}),
    ``drop_quote`` (delete the opening quote of a string), ``break_indent`` (indent or dedent one
    statement line by a single space). Kinds are tried in random order, each at up to ``max_tries``
    distinct random sites; an edit is kept only if the result really fails to parse (dropping the
    colon of a slice, for one, still parses).
    """
    try:
        sites = _candidates(code)
    except (tokenize.TokenError, SyntaxError):
        return None
    for kind in rng.sample(list(kinds), len(kinds)):
        for offset, action in rng.sample(sites[kind], min(max_tries, len(sites[kind]))):  # distinct sites
            if action == "delete":
                broken = code[:offset] + code[offset + 1:]
            elif action == "indent":
                broken = code[:offset] + " " + code[offset:]
            else:
                broken = code[:offset] + code[offset + 1:] if code[offset] == " " else code
            if broken != code and not _parses(broken):
                return broken, kind
    return None


def python_snippet_comparisons(
    sources: Iterable[str],
    *,
    seed: int = 0,
    prompt: str = "",
    kinds: Sequence[str] = BREAK_KINDS,
    min_lines: int = 3,
    max_lines: int = 40,
    max_per_source: int | None = None,
) -> Iterator[Comparison]:
    """Yield comparisons "function that parses > the same function minimally broken".

    ``sources`` are Python module texts (for example files of the standard library). Functions are
    cut out with `extract_functions` and broken with `break_python`; functions that cannot be broken
    are skipped. The prompt is empty by default, so the PM judges the code alone; pass a short fixed
    instruction (e.g. "Write a Python function.") to give it a context. ``meta`` holds the break
    kind, the function name and the source's index.
    """
    unknown = [k for k in kinds if k not in BREAK_KINDS]
    if unknown or not kinds:
        raise UserError(f"unknown break kinds {unknown or list(kinds)}; valid: {', '.join(BREAK_KINDS)}")
    rng = random.Random(seed)
    for doc, source in enumerate(sources):
        functions = extract_functions(source, min_lines, max_lines)
        if max_per_source is not None and len(functions) > max_per_source:
            functions = rng.sample(functions, max_per_source)
        for name, code in functions:
            result = break_python(code, rng, kinds)
            if result is not None:
                broken, kind = result
                meta = {"kind": kind, "function": name, "doc": doc}
                yield Comparison(prompt, code, broken, None, f"code:{kind}", meta)
