"""Tokenizers: byte-level (the default, nothing to train), character-level, BPE trained on the
corpus with Hugging Face `tokenizers`, and a pretrained tokenizer.json from a local folder.

Every tokenizer has an end-of-document id (`eot_id`) appended after each document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from scalelab.atomic import write_json
from scalelab.errors import UserError

EOT_STRINGS = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")


class ByteTokenizer:
    """UTF-8 bytes 0..255 and one end-of-document token, 256."""

    kind = "byte"

    def __init__(self):
        self.vocab_size = 257
        self.eot_id = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8", errors="replace"), dtype=np.uint8).astype(np.int64)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def spec(self) -> dict:
        return {"kind": "byte"}


class CharTokenizer:
    """The characters seen in the corpus, sorted, plus an end-of-document token."""

    kind = "char"

    def __init__(self, chars: str):
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.eot_id = len(chars)
        self.vocab_size = len(chars) + 1
        # fast path: a lookup table over code points
        self._table = np.full(max(map(ord, chars), default=0) + 1, -1, dtype=np.int64)
        for c, i in self.stoi.items():
            self._table[ord(c)] = i

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        seen: set[str] = set()
        for t in texts:
            seen.update(t)
        return cls("".join(sorted(seen)))

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if codes.size and codes.max() >= self._table.size:
            bad = next(c for c in text if ord(c) >= self._table.size)
            raise UserError(f"character {bad!r} is not in the char tokenizer's vocabulary")
        ids = self._table[codes]
        if (ids < 0).any():
            bad = text[int(np.argmax(ids < 0))]
            raise UserError(f"character {bad!r} is not in the char tokenizer's vocabulary")
        return ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids if 0 <= i < len(self.chars))

    def spec(self) -> dict:
        return {"kind": "char", "chars": self.chars}


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer (BPE trained here, or pretrained from a folder)."""

    def __init__(self, tok, kind: str, path: str | None = None):
        self.tok = tok
        self.kind = kind
        self.path = path
        self.vocab_size = tok.get_vocab_size()
        eot = next((tok.token_to_id(s) for s in EOT_STRINGS if tok.token_to_id(s) is not None), None)
        if eot is None:
            raise UserError(f"tokenizer has none of the end-of-document tokens {EOT_STRINGS}; add one")
        self.eot_id = eot

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        # the Rust library encodes a batch on all cores
        out = self.tok.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in out]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids))

    def spec(self) -> dict:
        return {"kind": self.kind, "json": self.tok.to_str()}


def train_bpe(texts: Iterable[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE (as GPT-2) trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise UserError(f"data.vocab_size={vocab_size} is too small for BPE; use at least 300 (or tokenizer='byte')")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(tok, "bpe")


def load_pretrained(folder: str) -> HFTokenizer:
    from tokenizers import Tokenizer

    path = Path(folder).expanduser()
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"tokenizer {folder!r}: no tokenizer.json there; use 'byte', 'char', 'bpe' or a folder with tokenizer.json"
        )
    return HFTokenizer(Tokenizer.from_file(str(file)), "pretrained", str(file))


def from_spec(spec: dict):
    """Rebuild a tokenizer saved with `spec()` (stored next to shards and checkpoints)."""
    kind = spec["kind"]
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer(spec["chars"])
    from tokenizers import Tokenizer

    return HFTokenizer(Tokenizer.from_str(spec["json"]), kind)


def save_spec(tokenizer, path: Path) -> None:
    write_json(path, tokenizer.spec())


def load_spec(path: Path):
    return from_spec(json.loads(Path(path).read_text()))
