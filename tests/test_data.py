import gzip
import json

import numpy as np
import pytest

from scalelab.config import DataConfig
from scalelab.data import tokenizers as tk
from scalelab.data.batches import RandomWindows, SequentialEpochs, eval_windows
from scalelab.data.shards import prepare_shards
from scalelab.data.sources import iter_documents
from scalelab.errors import UserError


def _corpus(tmp_path, n=150):
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(n):
        (d / f"doc{i:03d}.txt").write_text(f"document {i}: " + "the quick brown fox. " * (i % 7 + 1))
    return d


def test_byte_tokenizer_roundtrip():
    t = tk.ByteTokenizer()
    s = "héllo, wörld\n"
    assert t.decode(t.encode(s)) == s and t.vocab_size == 257


def test_char_tokenizer_roundtrip_and_unknown():
    t = tk.CharTokenizer.train(["abc", "cd"])
    assert t.vocab_size == 5 and t.decode(t.encode("dcba")) == "dcba"
    with pytest.raises(UserError, match="'z'"):
        t.encode("z")


def test_bpe_trains_and_compresses():
    texts = ["def function(argument):\n    return argument\n" * 20] * 20
    t = tk.train_bpe(texts, 400)
    ids = t.encode(texts[0])
    assert len(ids) < len(texts[0]) / 2
    assert t.decode(ids) == texts[0]
    again = tk.from_spec(t.spec())
    assert list(again.encode("return")) == list(t.encode("return"))


def test_stdlib_source_is_present():
    docs = list(iter_documents("stdlib", max_documents=5))
    assert len(docs) == 5 and all(d.id.endswith(".py") for d in docs)


def test_document_split_is_disjoint_deterministic_and_cached(tmp_path):
    src = _corpus(tmp_path)
    cfg = DataConfig(source=str(src), val_fraction=0.2, test_fraction=0.2)
    s = prepare_shards(cfg, tmp_path / "cache", progress=False)
    assert s.meta["split_mode"] == "documents"
    per = s.meta["documents_per_split"]
    assert sum(per.values()) == 150 and min(per.values()) > 10
    texts = {sp: s.tokenizer.decode(s.tokens(sp)) for sp in ("train", "val", "test")}
    docs_of = {sp: {t.split(":")[0] for t in texts[sp].split("document ")[1:]} for sp in texts}
    assert not (docs_of["train"] & docs_of["val"]) and not (docs_of["val"] & docs_of["test"])
    starts = s.doc_starts("val")
    assert starts[0] == 0 and len(starts) == per["val"]
    s2 = prepare_shards(cfg, tmp_path / "cache", progress=False)
    assert s2.dir == s.dir
    assert np.array_equal(np.asarray(s2.tokens("train")), np.asarray(s.tokens("train")))
    assert not list((tmp_path / "cache" / "shards").glob("*.tmp*"))


def test_contiguous_split_fractions(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("abcdefghij" * 100)
    s = prepare_shards(DataConfig(source=str(f), tokenizer="char", val_fraction=0.1, test_fraction=0.0),
                       tmp_path / "c", progress=False)
    assert s.meta["split_mode"] == "contiguous"
    assert s.meta["tokens"] == {"train": 901, "val": 100, "test": 0}  # 1000 chars + end-of-document
    assert s.tokens("train").dtype == np.uint16


def test_jsonl_source_and_malformed_line(tmp_path):
    p = tmp_path / "d.jsonl.gz"
    with gzip.open(p, "wt") as fh:
        for i in range(3):
            fh.write(json.dumps({"body": f"text {i}"}) + "\n")
    assert [d.text for d in iter_documents(str(p), "body")] == ["text 0", "text 1", "text 2"]
    with pytest.raises(UserError, match="no field 'text'"):
        list(iter_documents(str(p)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{nope\n')
    with pytest.raises(UserError, match="bad.jsonl:2"):
        list(iter_documents(str(bad)))


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(UserError, match="not found"):
        prepare_shards(DataConfig(source=str(tmp_path / "none")), tmp_path / "c", progress=False)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match="no text"):
        prepare_shards(DataConfig(source=str(tmp_path / "empty.txt")), tmp_path / "c", progress=False)


def test_random_windows_resume_exactly():
    toks = np.arange(1000) % 250
    a = RandomWindows(toks, 16, 4, seed=3)
    a.next_windows()
    state = a.state_dict()
    want = [a.next_windows() for _ in range(3)]
    b = RandomWindows(toks, 16, 4, seed=3)
    b.load_state_dict(state)
    assert all(np.array_equal(w, b.next_windows()) for w in want)
    x, y = RandomWindows(toks, 16, 4, seed=3).next()
    assert x.shape == (4, 16) and (y[:, :-1] == x[:, 1:]).all()


def test_sequential_epochs_are_exact_and_ranks_disjoint():
    toks = np.arange(16 * 40 + 1)
    s = SequentialEpochs(toks, 16, 8, seed=0)
    seen = np.concatenate([s.next_indices() for _ in range(5)])
    assert sorted(seen) == list(range(40))  # one epoch: each window exactly once
    assert s.epoch == 0 and s.next_indices() is not None and s.epoch == 1
    r0 = SequentialEpochs(toks, 16, 4, seed=0, rank=0, world=2)
    r1 = SequentialEpochs(toks, 16, 4, seed=0, rank=1, world=2)
    a = np.concatenate([r0.next_indices() for _ in range(5)])
    b = np.concatenate([r1.next_indices() for _ in range(5)])
    assert not set(a) & set(b) and len(set(a) | set(b)) == 40
    state = r0.state_dict()
    nxt = r0.next_indices()
    r2 = SequentialEpochs(toks, 16, 4, seed=0, rank=0, world=2)
    r2.load_state_dict(state)
    assert np.array_equal(r2.next_indices(), nxt)


def test_too_little_data_is_a_user_error():
    with pytest.raises(UserError, match="fewer than one window"):
        RandomWindows(np.arange(10), 16, 2, seed=0)
    with pytest.raises(UserError, match="fewer than one window"):
        eval_windows(np.arange(10), 16, 2, 2, seed=0)


def test_invalid_utf8_is_replaced_counted_and_said(tmp_path):
    from scalelab.data.sources import DataWarning

    txt = tmp_path / "a.txt"
    txt.write_bytes(b"fine line\nbad \xff\xfe here\nand \xc3 there\n")
    with pytest.warns(DataWarning, match=r"a.txt: 3 invalid UTF-8 byte sequence\(s\).*line 2"):
        (doc,) = list(iter_documents(str(txt)))
    assert doc.text.count("\ufffd") == 3 and doc.text.startswith("fine line\nbad ")
    jl = tmp_path / "b.jsonl"
    jl.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "\xef\xbf\xbd legit"}\n')
    with pytest.warns(DataWarning, match=r"b.jsonl: 1 invalid .*line 2"):
        docs = list(iter_documents(str(jl)))
    assert [d.text for d in docs] == ["ok", "caf\ufffd", "\ufffd legit"]
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(b'{"text": "x\x80"}\n')
    with pytest.warns(DataWarning, match="c.jsonl.gz"):
        assert [d.text for d in iter_documents(str(gz))] == ["x\ufffd"]
