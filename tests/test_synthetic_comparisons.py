"""Tests for the automatic gold-known comparison sets (PMP corruptions, binarisation, verifiable tasks)."""

from __future__ import annotations

import ast
import collections
import json.decoder
import random
import re
import string
import textwrap

import pytest

from scalelab.data.comparisons import Comparison
from scalelab.data.synthetic_comparisons import (
    BREAK_KINDS,
    CORRUPTION_KINDS,
    arithmetic_comparisons,
    binarize,
    break_python,
    corruption_comparisons,
    extract_functions,
    python_snippet_comparisons,
    split_units,
)
from scalelab.errors import UserError

WORDS = ("river stone light cloud garden window paper orange silver market winter engine forest "
         "letter violin harbor candle meadow planet ladder").split()


def _documents(n: int = 24, seed: int = 0) -> list[str]:
    """Prose documents of 6-10 distinct sentences, so every corruption kind applies."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))).capitalize() + "."
                     for _ in range(rng.randint(6, 10))]
        docs.append(" ".join(sentences))
    return docs


def _one_char_apart(a: str, b: str) -> bool:
    """True if one string is the other with exactly one character deleted."""
    short, long = sorted((a, b), key=len)
    if len(long) != len(short) + 1:
        return False
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return long[:i] + long[i + 1:] == short


def _edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


# --- PMP corruptions -------------------------------------------------------------------------------------


def test_split_units_keeps_text_and_separators():
    text = "One two. Three?  Four\nfive!\n\nSix"
    units = split_units(text)
    assert [c for c, _ in units] == ["One two.", "Three?", "Four", "five!", "Six"]
    assert "".join(c + s for c, s in units) == text


def test_corruptions_are_deterministic_and_balanced():
    docs = _documents()
    first = list(corruption_comparisons(docs, seed=3))
    assert first == list(corruption_comparisons(docs, seed=3))
    assert first != list(corruption_comparisons(docs, seed=4))
    assert len(first) == len(docs)
    counts = collections.Counter(c.meta["kind"] for c in first)
    assert set(counts) == set(CORRUPTION_KINDS) and max(counts.values()) - min(counts.values()) <= 1
    assert first[0].meta["kind"] != "other_document"  # no earlier document to borrow from


def test_each_corruption_kind_does_what_it_says():
    docs = _documents()
    seen = collections.Counter()
    for c in corruption_comparisons(docs, seed=1):
        seen[c.meta["kind"]] += 1
        doc = docs[c.meta["doc"]]
        assert c.source == f"pmp:{c.meta['kind']}" and c.chosen != c.rejected
        assert c.prompt and (c.prompt + c.chosen) in doc  # the passage is real text of its document
        kind = c.meta["kind"]
        if kind in ("shuffle", "swap_spans"):  # same words, other order
            assert sorted(c.rejected.split()) == sorted(c.chosen.split())
        elif kind == "char_edit":
            assert _edit_distance(c.chosen, c.rejected) in (1, 2)  # a transposition costs 2
        else:
            assert c.rejected not in doc
            assert any(c.rejected in other for i, other in enumerate(docs) if i != c.meta["doc"])
    assert set(seen) == set(CORRUPTION_KINDS) and min(seen.values()) >= 2  # every branch above was checked


def test_shuffle_moves_whole_sentences():
    shuffled = list(corruption_comparisons(_documents(), seed=5, kinds=("shuffle",)))
    assert len(shuffled) >= 5  # the checks below ran
    for c in shuffled:
        chosen = [s.strip() for s in re.findall(r"[^.]+\.", c.chosen)]
        rejected = [s.strip() for s in re.findall(r"[^.]+\.", c.rejected)]
        assert len(chosen) >= 2 and rejected != chosen and sorted(rejected) == sorted(chosen)


def test_corruption_arguments_are_checked():
    with pytest.raises(UserError, match="valid: shuffle"):
        list(corruption_comparisons(["a. b. c."], kinds=("scramble",)))
    with pytest.raises(UserError, match="min_units"):
        list(corruption_comparisons(["a. b. c."], min_units=1))
    assert list(corruption_comparisons(["Too short.", ""])) == []


# --- binarisation ----------------------------------------------------------------------------------------


def test_binarize_makes_good_bad_pairs_from_each_side():
    ranked = [Comparison("Q?", "A", "B", 2.0, "hh", {"line": 4}), Comparison("", "", "x")]
    binary = binarize(ranked)
    assert len(binary) == 4
    assert binary[0] == Comparison("Q?", "GOOD: A", "BAD: A", None, "hh:binary",
                                   {"line": 4, "binarized": "chosen"})
    assert binary[1] == Comparison("Q?", "BAD: B", "GOOD: B", None, "hh:binary",
                                   {"line": 4, "binarized": "rejected"})
    assert (binary[2].chosen, binary[2].rejected) == ("GOOD:", "BAD:")  # an empty HH response still compares
    assert binarize(ranked, good="+", bad="-")[3].chosen == "- x"
    with pytest.raises(UserError, match="must differ"):
        binarize(ranked, good="X", bad="X")


# --- arithmetic ------------------------------------------------------------------------------------------


def test_arithmetic_answers_are_right_and_distractors_wrong():
    comparisons = arithmetic_comparisons(300, seed=7, digits=2, operators="+-*/")
    assert comparisons == arithmetic_comparisons(300, seed=7, digits=2, operators="+-*/")
    ops, errors = collections.Counter(), collections.Counter()
    for c in comparisons:
        a, op, b = re.fullmatch(r"Q: (\d+)([-+*/])(\d+)=\? A:", c.prompt).groups()
        a, b = int(a), int(b)
        expected = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        assert op != "/" or a % b == 0
        assert c.chosen == str(expected) and c.rejected != c.chosen and int(c.rejected) >= 0
        assert 10 <= b <= 99 and (op == "/" or 10 <= a <= 99)
        ops[op] += 1
        errors[c.meta["error"]] += 1
    assert set(ops) == set("+-*/") and set(errors) == {"offset", "digit", "random"}


def test_arithmetic_options_are_checked():
    single = arithmetic_comparisons(50, seed=0, digits=1, operators="+", template="{a} plus {b} is")
    assert all(re.fullmatch(r"[1-9] plus [1-9] is", c.prompt) for c in single)
    with pytest.raises(UserError, match="operators"):
        arithmetic_comparisons(3, operators="+^")
    with pytest.raises(UserError, match="digits"):
        arithmetic_comparisons(3, digits=0)


# --- Python snippets -------------------------------------------------------------------------------------


def _stdlib_sources() -> list[str]:
    return [open(m.__file__, encoding="utf-8").read() for m in (textwrap, json.decoder, string, collections)]


def test_extract_functions_dedents_methods_and_keeps_decorators():
    source = textwrap.dedent('''
        class A:
            @staticmethod
            def m(x):
                y = x + 1
                return y

        def tiny():
            pass

        def broken(:
    ''')
    assert extract_functions(source) == []  # the module does not parse
    source = source.replace("def broken(:\n", "")
    funcs = extract_functions(source, min_lines=3)
    assert funcs == [("m", "@staticmethod\ndef m(x):\n    y = x + 1\n    return y\n")]


def test_python_snippets_parse_and_broken_copies_do_not():
    comparisons = list(python_snippet_comparisons(_stdlib_sources(), seed=2))
    assert len(comparisons) > 50
    assert comparisons == list(python_snippet_comparisons(_stdlib_sources(), seed=2))
    assert set(c.meta["kind"] for c in comparisons) == set(BREAK_KINDS)
    for c in comparisons:
        ast.parse(c.chosen)
        with pytest.raises(SyntaxError):
            ast.parse(c.rejected)
        assert _one_char_apart(c.chosen, c.rejected), c.meta  # a minimal edit
        assert c.prompt == "" and c.source == f"code:{c.meta['kind']}"
    limited = list(python_snippet_comparisons(_stdlib_sources(), seed=2, max_per_source=2,
                                              prompt="Write a Python function."))
    assert len(limited) <= 8 and all(c.prompt == "Write a Python function." for c in limited)


def test_break_python_only_returns_edits_that_fail_to_parse():
    # the only colon is a slice: deleting it still parses, so there is no drop_colon break
    assert break_python("x = a[1:2]\n", random.Random(0), kinds=("drop_colon",)) is None
    code = "def f(a):\n    return a[1:2]\n"
    for seed in range(30):
        broken, kind = break_python(code, random.Random(seed), kinds=("drop_colon",))
        assert kind == "drop_colon" and broken == "def f(a)\n    return a[1:2]\n"
    code = "def f(a):\n    b = a\n    return b\n"
    for seed in range(10):
        broken, kind = break_python(code, random.Random(seed), kinds=("break_indent",))
        assert kind == "break_indent" and broken.replace(" ", "") == code.replace(" ", "")
    with pytest.raises(UserError, match="valid: drop_colon"):
        list(python_snippet_comparisons(["x = 1\n"], kinds=("typo",)))
