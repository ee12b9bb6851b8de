"""Capability tasks as text, and their examples mixed into a training stream (Ganguli et al. 2022).

Ganguli et al. 2022 (arXiv 2202.07785) contrast the smooth, predictable loss of a model family with
specific capabilities that appear abruptly with scale (3-digit addition with GPT-3). To make such a
capability emerge at a scale a user chooses, a fraction of the training tokens can be drawn from a
task's generator: `data.tasks = {"add3": 0.05}` puts 5% task tokens into the train split.

Every task is a procedure that draws (prompt, answer) pairs of plain text, with a known answer,
so that it works with any tokenizer. The answer ends with a newline: a greedy completion has
to stop, not only start, correctly. Tasks (`TASKS`):

- `add1` ... `add4`: "a+b=" -> the sum, a and b uniform k-digit numbers (0 ... 10^k - 1);
- `copy`: "copy:qzkfmwab=" -> "qzkfmwab" (8 random lowercase letters);
- `brackets`: "close:([{(" -> ")}])": close an open bracket sequence (depth 2-5), innermost first;
- `expr`: "3+4*2=" -> "11": a Python expression of three digits and two of + - *, with precedence;
- `induction`: "xq_abcd = 1\\nkm_efgh = 2\\nprint(km_" -> "efgh)": complete an identifier defined
  earlier in the context (an induction task: find the earlier occurrence, copy what followed).

Examples are drawn from seeded streams: training examples from stream `TRAIN_STREAM` and evaluation
examples from `EVAL_STREAM`, and a training example whose prompt is one of the evaluation prompts is
skipped (tasks whose whole space is under `MIN_SPACE_TO_FILTER` problems, such as add1's 100, are
exempt: there every prompt is both seen and tested, and the docs say so).

The mix is built from the plain shards: `mixed_shards` copies val and test, and writes a train split
in which the examples (each followed by the end-of-document token) sit at random document boundaries
of the corpus, in the number that makes them the given fraction of the train tokens; the windows a
run samples uniformly then hold that fraction in expectation. Its cache folder is keyed by the
plain shards' key and the mix, so a config without tasks reads the same cache as before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import string
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scalelab.atomic import building_dir
from scalelab.errors import UserError

TRAIN_STREAM, EVAL_STREAM = 1, 2  # seed streams: training examples never come from the evaluation stream
MIN_SPACE_TO_FILTER = 10_000  # a task with fewer distinct prompts cannot avoid its evaluation prompts
MIX_VERSION = 1
Example = tuple[str, str]
"""(prompt, answer): the model reads the prompt and should continue with the answer (ending in a newline)."""


def _digits(rng: np.random.Generator, k: int) -> int:
    return int(rng.integers(0, 10**k))


def _addition(k: int) -> Callable[[np.random.Generator], Example]:
    def draw(rng: np.random.Generator) -> Example:
        a, b = _digits(rng, k), _digits(rng, k)
        return f"{a}+{b}=", f"{a + b}\n"

    return draw


def _letters(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list(string.ascii_lowercase), size=n))


def _copy(rng: np.random.Generator) -> Example:
    s = _letters(rng, 8)
    return f"copy:{s}=", f"{s}\n"


_PAIRS = {"(": ")", "[": "]", "{": "}"}


def _brackets(rng: np.random.Generator) -> Example:
    opened = list(rng.choice(list(_PAIRS), size=int(rng.integers(2, 6))))
    return "close:" + "".join(opened), "".join(_PAIRS[b] for b in reversed(opened)) + "\n"


def evaluate_expression(a: int, op1: str, b: int, op2: str, c: int) -> int:
    """a op1 b op2 c with Python's precedence (* before + and -, else left to right)."""
    apply = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
    if op2 == "*" and op1 != "*":
        return apply[op1](a, b * c)
    return apply[op2](apply[op1](a, b), c)


def _expr(rng: np.random.Generator) -> Example:
    a, b, c = (int(v) for v in rng.integers(0, 10, size=3))
    op1, op2 = (str(o) for o in rng.choice(["+", "-", "*"], size=2))
    return f"{a}{op1}{b}{op2}{c}=", f"{evaluate_expression(a, op1, b, op2, c)}\n"


def _induction(rng: np.random.Generator) -> Example:
    # two definitions with different two-letter prefixes; the use gives one prefix, the model copies the rest
    first = rng.choice(list(string.ascii_lowercase), size=2, replace=False)
    names = [f"{p}{_letters(rng, 1)}_{_letters(rng, 4)}" for p in first]
    target = int(rng.integers(0, 2))
    lines = "".join(f"{name} = {i + 1}\n" for i, name in enumerate(names))
    cut = 3  # the prefix shown at the use: "ab" + one more letter
    return f"{lines}print({names[target][:cut]}", f"{names[target][cut:]})\n"


TASKS: dict[str, Callable[[np.random.Generator], Example]] = {
    "add1": _addition(1), "add2": _addition(2), "add3": _addition(3), "add4": _addition(4),
    "copy": _copy, "brackets": _brackets, "expr": _expr, "induction": _induction,
}  # fmt: skip
"""Every task's one-example generator, by name."""

SPACE = {"add1": 100, "add2": 10**4, "add3": 10**6, "add4": 10**8, "copy": 26**8,
         "brackets": sum(3**d for d in range(2, 6)), "expr": 10 * 3 * 10 * 3 * 10, "induction": 10**12}  # fmt: skip
"""Distinct prompts of each task (about): whether avoiding the evaluation prompts in training is possible."""


def check_tasks(names) -> list[str]:
    """The task names, checked: a non-empty list of known tasks, else a UserError naming the fix."""
    names = list(names)
    if not names:
        raise UserError(f"the task set is empty; name at least one of {', '.join(TASKS)}")
    bad = [n for n in names if n not in TASKS]
    if bad:
        raise UserError(f"unknown task(s) {', '.join(map(repr, bad))}; known tasks: {', '.join(TASKS)}")
    return names


def _rng(task: str, seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.encode()), stream])


def eval_examples(task: str, n: int, seed: int = 0) -> list[Example]:
    """The task's n evaluation examples: fixed by the seed, from a stream training never draws from."""
    check_tasks([task])
    rng = _rng(task, seed, EVAL_STREAM)
    return [TASKS[task](rng) for _ in range(n)]


def train_examples(task: str, n: int, seed: int = 0, n_eval: int = 256) -> list[Example]:
    """n training examples, none of whose prompts is among the first n_eval evaluation prompts
    (unless the task has under MIN_SPACE_TO_FILTER prompts in all)."""
    check_tasks([task])
    banned = {p for p, _ in eval_examples(task, n_eval, seed)} if SPACE[task] >= MIN_SPACE_TO_FILTER else set()
    rng, out = _rng(task, seed, TRAIN_STREAM), []
    while len(out) < n:
        ex = TASKS[task](rng)
        if ex[0] not in banned:
            out.append(ex)
    return out


def check_mix(tasks: dict[str, float]) -> dict[str, float]:
    """A task mix {task: fraction of train tokens}: known tasks, fractions in [0, 1), total below 1."""
    check_tasks(tasks)
    if any(not 0 <= f < 1 for f in tasks.values()) or sum(tasks.values()) >= 1:
        raise UserError(f"data.tasks fractions {tasks} must each be in [0, 1) and sum below 1 "
                        "(they are shares of the training tokens), e.g. {\"add2\": 0.05}")  # fmt: skip
    return dict(tasks)


def mix_key(tasks: dict[str, float], seed: int = 0) -> str:
    blob = json.dumps({"v": MIX_VERSION, "tasks": tasks, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _encoded_examples(task: str, n_tokens: int, tokenizer, seed: int, group: int = 32) -> list[np.ndarray]:
    """Training examples, each followed by the end-of-document id, until they hold n_tokens; returned in
    groups of `group` consecutive examples (the units inserted into the corpus)."""
    sample = _encode(task, [p + a for p, a in train_examples(task, 64, seed)], tokenizer)
    per_example = 1 + np.mean([ids.size for ids in sample])
    n = int(np.ceil(n_tokens / per_example * 1.1)) + 64
    while True:
        texts = [p + a for p, a in train_examples(task, n, seed)]  # a prefix of one seeded stream
        encoded = [np.append(ids, tokenizer.eot_id) for ids in _encode(task, texts, tokenizer)]
        ends = np.cumsum([ids.size for ids in encoded])
        if ends[-1] >= n_tokens:
            break
        n *= 2
    encoded = encoded[: int(np.searchsorted(ends, n_tokens)) + 1]
    return [np.concatenate(encoded[i : i + group]) for i in range(0, len(encoded), group)]


def _encode(task: str, texts: list[str], tokenizer) -> list[np.ndarray]:
    try:
        return tokenizer.encode_batch(texts)
    except UserError as e:
        raise UserError(f"task {task!r} cannot be written with this tokenizer ({e}); use data.tokenizer='byte'"
                        " or a corpus holding its characters") from None  # fmt: skip


def mix_train_stream(corpus: np.ndarray, doc_starts: np.ndarray, tasks: dict[str, float], tokenizer,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:  # fmt: skip
    """The corpus train stream with task examples inserted at random document boundaries.

    Task t gets round(f_t / (1 - sum f) * corpus tokens) tokens (whole examples, the last one
    completing the count), so that its share of the mixed stream is f_t. Returns the stream, its
    document starts and the token count of each part ("corpus" and every task).
    """
    check_mix(tasks)
    rest = 1.0 - sum(tasks.values())
    pieces = [corpus[a:b] for a, b in zip(doc_starts, [*doc_starts[1:], corpus.size])]
    counts = {"corpus": int(corpus.size)}
    extra: list[np.ndarray] = []
    for task, f in tasks.items():
        want = int(round(f / rest * corpus.size))
        examples = _encoded_examples(task, want, tokenizer, seed) if want > 0 else []
        counts[task] = int(sum(e.size for e in examples))
        extra.extend(examples)
    rng = np.random.default_rng([seed, MIX_VERSION, 0])
    slots = rng.integers(0, len(pieces) + 1, size=len(extra))  # example j goes before corpus document slots[j]
    keys = np.concatenate([np.arange(len(pieces)) * 2 + 1, slots * 2])
    parts = pieces + extra
    seq = [parts[i] for i in np.argsort(keys, kind="stable")]
    lengths = np.fromiter((p.size for p in seq), dtype=np.int64, count=len(seq))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    stream = np.concatenate(seq).astype(corpus.dtype) if seq else corpus[:0]
    return stream, starts, counts


def mixed_shards(plain, tasks: dict[str, float], cache_root: str | Path, seed: int = 0):
    """Shards whose train split mixes `tasks` into the plain shards' train split (cached beside them)."""
    from scalelab.data.shards import Shards

    key = f"{plain.meta['key']}-tasks-{mix_key(tasks, seed)}"
    final = Path(cache_root) / "shards" / key
    if not (final / "meta.json").is_file():
        with building_dir(final) as tmp:
            for split in ("val", "test"):
                for suffix in (".bin", ".docs.npy"):
                    if (plain.dir / f"{split}{suffix}").is_file():
                        shutil.copyfile(plain.dir / f"{split}{suffix}", tmp / f"{split}{suffix}")
            shutil.copyfile(plain.dir / "tokenizer.json", tmp / "tokenizer.json")
            stream, starts, counts = mix_train_stream(np.asarray(plain.tokens("train")), plain.doc_starts("train"),
                                                      tasks, plain.tokenizer, seed)  # fmt: skip
            stream.astype(plain.meta["dtype"]).tofile(tmp / "train.bin")
            np.save(tmp / "train.docs.npy", starts)
            meta = dict(plain.meta, key=key, tokens=dict(plain.meta["tokens"], train=int(stream.size)),
                        task_mix={"tasks": tasks, "seed": seed, "tokens": counts})  # fmt: skip
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    meta = json.loads((final / "meta.json").read_text())
    return Shards(final, meta, plain.tokenizer)
