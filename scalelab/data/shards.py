"""Token shards: a corpus tokenized once into numpy memmap files, split, and cached.

The cache key is a hash of (source fingerprint, tokenizer, split settings), so a changed file,
tokenizer or split gives new shards and an unchanged one is read back instantly. A shard folder
holds `{train,val,test}.bin` (uint16 when the vocabulary fits, else uint32), the document start
offsets of each split (`{split}.docs.npy`), `tokenizer.json` and `meta.json`. It is written into
a temporary folder and renamed into place, so a crash never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalelab.atomic import building_dir
from scalelab.config import DataConfig
from scalelab.data import tokenizers as tk
from scalelab.data.sources import fingerprint, iter_documents
from scalelab.errors import UserError
from scalelab.progress_bar import item_bar

FORMAT_VERSION = 2
SPLITS = ("train", "val", "test")
AUTO_MIN_DOCUMENTS = 100  # below this, split='auto' cuts the token stream instead of documents


@dataclass
class Shards:
    dir: Path
    meta: dict
    tokenizer: object

    def tokens(self, split: str) -> np.ndarray:
        """The split's tokens as a read-only memmap."""
        n = self.meta["tokens"][split]
        if n == 0:
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(self.dir / f"{split}.bin", dtype=self.meta["dtype"], mode="r", shape=(n,))

    def doc_starts(self, split: str) -> np.ndarray:
        """Start offset of every document in the split's token stream."""
        return np.load(self.dir / f"{split}.docs.npy")

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]


def _doc_split(doc_id: str, val_fraction: float, test_fraction: float) -> int:
    """0 train, 1 val, 2 test, by a stable hash of the document id (order-independent)."""
    u = int.from_bytes(hashlib.sha1(doc_id.encode()).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return 2
    if u < test_fraction + val_fraction:
        return 1
    return 0


def _tokenizer_key(cfg: DataConfig) -> str:
    if cfg.tokenizer == "bpe":
        return f"bpe{cfg.vocab_size}"
    if cfg.tokenizer in ("byte", "char"):
        return cfg.tokenizer
    path = Path(cfg.tokenizer).expanduser()
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(
            f"data.tokenizer={cfg.tokenizer!r}: use 'byte', 'char', 'bpe' or a folder holding tokenizer.json"
        )
    return "pretrained-" + hashlib.sha256(file.read_bytes()).hexdigest()[:12]


def cache_key(cfg: DataConfig) -> str:
    parts = [
        f"v{FORMAT_VERSION}",
        fingerprint(cfg.source, cfg.text_field),
        _tokenizer_key(cfg),
        cfg.split,
        f"{cfg.val_fraction:.6g}",
        f"{cfg.test_fraction:.6g}",
        str(cfg.max_documents),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _make_tokenizer(cfg: DataConfig, cache_root: Path, progress: bool):
    if cfg.tokenizer == "byte":
        return tk.ByteTokenizer()
    if cfg.tokenizer in ("char", "bpe"):
        docs = (d.text for d in iter_documents(cfg.source, cfg.text_field, cfg.max_documents))
        if cfg.tokenizer == "char":
            return tk.CharTokenizer.train(docs)
        key = f"{fingerprint(cfg.source, cfg.text_field)}-{cfg.max_documents}-bpe{cfg.vocab_size}"
        file = cache_root / "tokenizers" / key / "tokenizer.json"
        if file.is_file():
            tok = tk.load_pretrained(str(file))
            tok.kind = "bpe"
            return tok
        tok = tk.train_bpe(docs, cfg.vocab_size)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp{os.getpid()}")
        tok.tok.save(str(tmp))
        tmp.replace(file)
        return tok
    return tk.load_pretrained(cfg.tokenizer)


def _encode_all(cfg: DataConfig, tokenizer, tmp: Path, dtype, progress: bool):
    """Encode every document into tmp/all.bin; return doc lengths and hash-assigned splits."""
    lengths: list[int] = []
    labels: list[int] = []
    batch: list = []
    with open(tmp / "all.bin", "wb") as out, item_bar("tokenizing", info="docs", enabled=progress) as bar:
        task = bar.task_ids[0]

        def flush():
            for doc, ids in zip(batch, tokenizer.encode_batch([d.text for d in batch])):
                ids = np.append(ids, tokenizer.eot_id).astype(dtype)
                out.write(ids.tobytes())
                lengths.append(ids.size)
                labels.append(_doc_split(doc.id, cfg.val_fraction, cfg.test_fraction))
            bar.advance(task, len(batch))
            batch.clear()

        size = 0
        for doc in iter_documents(cfg.source, cfg.text_field, cfg.max_documents):
            batch.append(doc)
            size += len(doc.text)
            if size > 4_000_000 or len(batch) >= 2048:
                flush()
                size = 0
        flush()
    if not lengths:
        raise UserError(f"data source {cfg.source!r} holds no text; point data.source at a non-empty corpus")
    return np.asarray(lengths, dtype=np.int64), np.asarray(labels, dtype=np.int8)


def _write_splits(tmp: Path, mode: str, cfg: DataConfig, lengths, labels, dtype) -> dict[str, int]:
    """Cut tmp/all.bin into the three split files and their document offsets."""
    stream = np.memmap(tmp / "all.bin", dtype=dtype, mode="r")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    counts = {}
    if mode == "contiguous":
        total = stream.size
        n_test = int(round(total * cfg.test_fraction))
        n_val = int(round(total * cfg.val_fraction))
        bounds = {"train": (0, total - n_val - n_test), "val": (total - n_val - n_test, total - n_test),
                  "test": (total - n_test, total)}  # fmt: skip
        for split, (a, b) in bounds.items():
            np.asarray(stream[a:b]).tofile(tmp / f"{split}.bin")
            inside = starts[(starts >= a) & (starts < b)] - a
            if b > a and (inside.size == 0 or inside[0] != 0):
                inside = np.concatenate([[0], inside])
            np.save(tmp / f"{split}.docs.npy", inside.astype(np.int64))
            counts[split] = int(b - a)
    else:
        for code, split in enumerate(SPLITS):
            sel = np.flatnonzero(labels == code)
            with open(tmp / f"{split}.bin", "wb") as out:
                for i in sel:
                    out.write(np.asarray(stream[starts[i] : starts[i] + lengths[i]]).tobytes())
            offs = np.concatenate([[0], np.cumsum(lengths[sel])[:-1]]) if sel.size else np.zeros(0)
            np.save(tmp / f"{split}.docs.npy", offs.astype(np.int64))
            counts[split] = int(lengths[sel].sum())
    del stream
    (tmp / "all.bin").unlink()
    return counts


def prepare_shards(cfg: DataConfig, cache_root: str | Path, progress: bool = True) -> Shards:
    """Tokenize and split the corpus once; later calls with the same settings read the cache."""
    cache_root = Path(cfg.cache_dir or cache_root)
    if cfg.tasks:  # capability tasks mixed into the train split, derived from the plain shards (Ganguli et al. 2022)
        from scalelab.data.task_mix import mixed_shards

        return mixed_shards(prepare_shards(cfg.model_copy(update={"tasks": {}}), cache_root, progress), cfg.tasks,
                            cache_root)  # fmt: skip
    key = cache_key(cfg)
    final = cache_root / "shards" / key
    if (final / "meta.json").is_file():
        meta = json.loads((final / "meta.json").read_text())
        return Shards(final, meta, tk.load_spec(final / "tokenizer.json"))

    tokenizer = _make_tokenizer(cfg, cache_root, progress)
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    with building_dir(final) as tmp:
        lengths, labels = _encode_all(cfg, tokenizer, tmp, dtype, progress)
        mode = cfg.split
        if mode == "auto":
            mode = "documents" if lengths.size >= AUTO_MIN_DOCUMENTS else "contiguous"
        counts = _write_splits(tmp, mode, cfg, lengths, labels, dtype)
        if counts["train"] == 0:
            raise UserError(f"the train split of {cfg.source!r} is empty; lower data.val_fraction/test_fraction")
        if cfg.val_fraction > 0 and counts["val"] == 0:
            raise UserError(
                f"the val split of {cfg.source!r} is empty ({lengths.size} documents); "
                "use data.split='contiguous' or raise data.val_fraction"
            )
        tk.save_spec(tokenizer, tmp / "tokenizer.json")
        meta = {
            "key": key, "format": FORMAT_VERSION, "source": cfg.source, "tokenizer": tokenizer.kind,
            "vocab_size": tokenizer.vocab_size, "eot_id": tokenizer.eot_id, "dtype": np.dtype(dtype).name,
            "split_mode": mode, "documents": int(lengths.size), "tokens": counts,
            "documents_per_split": {s: int((labels == i).sum()) for i, s in enumerate(SPLITS)},
        }  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    meta = json.loads((final / "meta.json").read_text())
    return Shards(final, meta, tk.load_spec(final / "tokenizer.json"))
