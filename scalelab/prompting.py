"""Prompts: a file of text (or of Human:/Assistant: turns) prepended to every context of a model.

Askell et al. 2021 (arXiv 2112.00861, section 2) make a plain language model behave as an assistant
by prepending a prompt to every context, and measure what that costs and buys. Here a prompt is a
file: plain text, kept verbatim, or a dialogue of ``Human:`` / ``Assistant:`` turns, rewritten in
one canonical form (turns joined by a blank line, ending with a blank line). A shipped prompt is
named by its file name under ``scalelab/presets/prompts/`` (``assistant``: the default one,
written for scalelab).

A prompted context is ``[eot] + prompt + text``: the leading end-of-document token is the
separator the model saw in pre-training, so the unprompted context ``[eot] + text`` differs from
it only by the prompt. A prompt of P tokens in a context of T tokens leaves room for T - P text
tokens to be predicted; `fit_prompt` counts that and refuses a prompt that leaves less than asked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelab.errors import UserError

PROMPTS_DIR = Path(__file__).parent / "presets" / "prompts"
DEFAULT_PROMPT = "assistant"
ROLES = ("Human", "Assistant")
_TURN = re.compile(r"^(Human|Assistant):[ \t]?", re.MULTILINE)


@dataclass(frozen=True)
class Prompt:
    """The text prepended to every context, where it came from and its turns (empty for plain text)."""

    text: str
    source: str
    turns: tuple[tuple[str, str], ...] = ()

    def prepend(self, text: str) -> str:
        return self.text + text

    @property
    def digest(self) -> str:
        """A short content hash: what identifies the prompt in caches and run configs."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def shipped_prompts() -> list[str]:
    return sorted(p.stem for p in PROMPTS_DIR.glob("*.txt"))


def parse_turns(text: str) -> tuple[tuple[str, str], ...]:
    """The (role, text) turns of a dialogue, or () when the text does not start with a turn."""
    body = text.lstrip()
    if not _TURN.match(body):
        return ()
    marks = list(_TURN.finditer(body))
    turns = []
    for m, nxt in zip(marks, marks[1:] + [None]):
        said = body[m.end() : nxt.start() if nxt else len(body)].strip()
        if not said:
            raise UserError(f"the {m.group(1)!r} turn at character {m.start()} of the prompt is empty; "
                            "write something after it or delete it")  # fmt: skip
        turns.append((m.group(1), said))
    return tuple(turns)


def prompt_from_text(text: str, source: str = "text") -> Prompt:
    """A prompt from its text; an empty prompt is refused (it would compare a model with itself)."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise UserError(f"the prompt {source} is empty; write the text to prepend in it (or leave --prompt out)")
    turns = parse_turns(text)
    if turns:
        text = "\n\n".join(f"{role}: {said}" for role, said in turns) + "\n\n"
    return Prompt(text, source, turns)


def load_prompt(spec: str | Path) -> Prompt:
    """A prompt file, or a shipped prompt by name (``assistant``); a missing file names the choices."""
    name = str(spec)
    path = Path(name)
    if not path.exists() and re.fullmatch(r"[A-Za-z0-9_-]+", name) and (PROMPTS_DIR / f"{name}.txt").is_file():
        path = PROMPTS_DIR / f"{name}.txt"
    if not path.is_file():
        raise UserError(f"prompt file not found: {name!r}; give a text file or a shipped prompt "
                        f"({', '.join(shipped_prompts())})")  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"the prompt {path} is not UTF-8 text ({e.reason} at byte {e.start}); "
                        "save it as UTF-8") from None
    return prompt_from_text(text, str(path))


@dataclass(frozen=True)
class PromptFit:
    """How much of a context a prompt uses: P prompt tokens of T, leaving T - P for the text."""

    prompt_tokens: int
    context: int

    @property
    def room(self) -> int:
        return self.context - self.prompt_tokens

    @property
    def share(self) -> float:
        return self.prompt_tokens / self.context

    def to_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "context": self.context, "room": self.room,
                "share": round(self.share, 4)}  # fmt: skip


def encode_prompt(prompt: Prompt, tokenizer) -> list[int]:
    """The prompt's token ids with the model's tokenizer; a character it lacks is a UserError naming it."""
    try:
        return [int(i) for i in tokenizer.encode(prompt.text)]
    except UserError as e:
        raise UserError(f"the prompt {prompt.source} does not fit the model's tokenizer ({e}); write the prompt "
                        "in characters the model was trained on") from None  # fmt: skip


def fit_prompt(prompt: Prompt, tokenizer, context: int, min_room: int = 1) -> tuple[list[int], PromptFit]:
    """(prompt ids, accounting); refuses a prompt that leaves fewer than `min_room` text tokens."""
    ids = encode_prompt(prompt, tokenizer)
    fit = PromptFit(len(ids), context)
    if fit.room < min_room:
        raise UserError(f"the prompt {prompt.source} is {fit.prompt_tokens} tokens but the model's context is "
                        f"{context}: it leaves {max(fit.room, 0)} tokens for the text (at least {min_room} "
                        "needed); shorten the prompt or use a model with a longer context")  # fmt: skip
    return ids, fit


# ----------------------------------------------------------------------------- text of a data source


def _heldout(doc_id: str, fraction: float) -> bool:
    return int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big") / 2**64 < fraction


def source_tokens(source: str, tokenizer, split: str = "heldout", *, heldout_fraction: float = 0.1,
                  max_documents: int | None = None, max_tokens: int | None = None) -> np.ndarray:  # fmt: skip
    """The documents of a data source (stdlib, a file, a folder, ...) in one split, encoded with the
    model's own tokenizer and joined by its end-of-document token: (N,) int64.

    Documents go to 'heldout' or 'train' by a stable hash of their id ('all': every document);
    `max_tokens` stops early.
    """
    from scalelab.data.sources import iter_documents

    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', not {split!r}")
    parts, total = [], 0
    for doc in iter_documents(source, max_documents=max_documents):
        if split != "all" and _heldout(doc.id, heldout_fraction) != (split == "heldout"):
            continue
        try:
            ids = tokenizer.encode(doc.text)
        except UserError:
            continue  # a char tokenizer lacking a character of this document: skip the document
        parts.append(np.append(np.asarray(ids, dtype=np.int64), tokenizer.eot_id))
        total += len(parts[-1])
        if max_tokens is not None and total >= max_tokens:
            break
    if not parts:
        raise UserError(f"the data source {source!r} has no {split} documents the model's tokenizer can encode; "
                        "give a larger source (or more documents)")  # fmt: skip
    out = np.concatenate(parts)
    return out[:max_tokens] if max_tokens is not None else out


def text_windows(tokens: np.ndarray, length: int, n: int, seed: int = 0) -> np.ndarray:
    """`n` windows of `length` tokens at seeded random offsets: (n, length) int64 (fewer if the text is short)."""
    if len(tokens) < length:
        raise UserError(f"the text has {len(tokens)} tokens, fewer than one window of {length}; give more text")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(tokens) - length + 1, size=n)
    return np.stack([tokens[s : s + length] for s in starts])


def contexts(windows: np.ndarray, prompt_ids: list[int] | None, eot_id: int) -> tuple[np.ndarray, int]:
    """Model inputs [eot] + prompt + window[:-1] (B, P + L) and the position predicting window[0].

    Position ``offset + j`` of the input predicts ``window[j]``; the unprompted input is the same
    with P = 0, so both score exactly the same text tokens.
    """
    prefix = np.array([eot_id, *(prompt_ids or [])], dtype=np.int64)
    B = len(windows)
    x = np.concatenate([np.broadcast_to(prefix, (B, len(prefix))), windows[:, :-1]], axis=1)
    return x, len(prefix) - 1


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
