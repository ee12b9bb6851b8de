"""Engine pieces of the transfer study: `train.init_from`, early stopping, `data.train_tokens`, the
config hash of configs that leave the new fields alone, and the prose / code sources."""

from __future__ import annotations

import ast

import pytest
import torch

from scalelab.config import RunConfig, load_config
from scalelab.errors import UserError
from scalelab.train.checkpoint import load_for_inference
from scalelab.train.loop import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(source, *extra: str) -> RunConfig:
    return load_config(None, [
        f"data.source='{source}'", "data.tokenizer='byte'", "data.split='contiguous'", "data.val_fraction=0.1",
        "data.test_fraction=0.0", "model.n_layer=1", "model.n_head=1", "model.n_embd=16", "model.block_size=16",
        "train.iters=3", "train.batch_size=4", "train.eval_batches=2", "train.eval_every=3", "train.warmup_iters=0",
        "train.device='cpu'", *extra,
    ])  # fmt: skip


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    return str(path)


def test_old_configs_keep_their_hash():
    # hashes of main before train.init_from / early_stop_patience / data.train_tokens existed
    assert RunConfig().config_hash() == "86cba8faf79c4656"
    assert load_config(None, ["train.lr=3e-4", "model.size='xs'"]).config_hash() == "76bea53dc42b3051"
    for field in ("data.train_tokens=1000", "train.early_stop_patience=2", "train.init_from='run:a'"):
        assert load_config(None, [field]).config_hash() != RunConfig().config_hash()


def test_init_from_starts_from_the_weights_and_refuses_another_tokenizer_or_shape(tmp_path, corpus):
    work = tmp_path / "w"
    first = train(_cfg(corpus, "name='pre'"), work, group="g", progress=False)
    before, _, _ = load_for_inference(first["run_id"], work)
    # lr ~ 0: one step leaves the weights where init_from put them
    second = train(_cfg(corpus, "name='ft'", "train.iters=1", "train.lr=1e-12", "train.min_lr=0",
                        "train.init_from='run:pre'"), work, group="g", progress=False)  # fmt: skip
    after, _, _ = load_for_inference(second["run_id"], work)
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-8), name
    assert second["init_from"]["path"].startswith(str(work / "runs" / first["run_id"]))
    with pytest.raises(UserError, match="tokenizer"):
        train(_cfg(corpus, "data.tokenizer='char'", f"train.init_from='{first['run_id']}'"), work, progress=False)
    with pytest.raises(UserError, match="n_embd: 16 there, 32 here"):
        train(_cfg(corpus, "model.n_embd=32", f"train.init_from='{first['run_id']}'"), work, progress=False)
    with pytest.raises(UserError, match="no completed run named 'pre' with config hash 0000"):
        train(_cfg(corpus, "train.init_from='run:pre@0000'"), work, group="g", progress=False)


def test_early_stopping_stops_and_records_the_best_point(tmp_path, corpus):
    # 40 unique tokens, a high learning rate: memorised at once, then the validation loss stops improving
    cfg = _cfg(corpus, "train.iters=400", "train.eval_every=2", "train.lr=3e-2", "train.early_stop_patience=2",
               "data.train_tokens=40")  # fmt: skip
    s = train(cfg, tmp_path / "w", progress=False)
    assert s["status"] == "completed" and s["early_stopped"]
    assert s["iters"] < 400 and s["iters"] == s["best_step"] + 2 * 2
    assert s["best_tokens"] == s["best_step"] * 4 * 16 and s["best_val_loss"] <= s["final_val_loss"]
    assert s["unique_train_tokens"] == 40


def test_resume_with_early_stopping_is_exact(tmp_path, corpus):
    extra = ("train.iters=400", "train.eval_every=2", "train.lr=3e-2", "train.early_stop_patience=2",
             "data.train_tokens=40", "train.ckpt_every=2")  # fmt: skip
    whole = train(_cfg(corpus, *extra), tmp_path / "a", progress=False)
    part = train(_cfg(corpus, *extra), tmp_path / "b", progress=False, stop_after=3)
    assert part["status"] == "interrupted"
    resumed = train(_cfg(corpus, *extra), tmp_path / "b", progress=False, resume=part["run_id"])
    for key in ("iters", "best_step", "best_val_loss", "final_val_loss", "early_stopped"):
        assert resumed[key] == whole[key], key


def test_train_tokens_keeps_only_the_first_tokens(tmp_path):
    path = tmp_path / "ab.txt"
    path.write_text("a" * 3000 + "b" * 3000)  # contiguous split: validation is the last 10%, all 'b'
    s = train(_cfg(str(path), "train.iters=30", "train.eval_every=30", "train.lr=1e-2", "data.train_tokens=2000"),
              tmp_path / "w", progress=False)  # fmt: skip
    assert s["unique_train_tokens"] == 2000
    assert s["final_train_loss"] < 1.0 < s["final_val_loss"]  # it never saw a 'b'
    with pytest.raises(UserError, match="train_tokens=99999 but the training split"):
        train(_cfg(str(path), "data.train_tokens=99999"), tmp_path / "w", progress=False)


SOURCE = '''"""Module doc: English here."""
import os  # a comment about os


def only_doc():
    """Nothing but a docstring."""


class K:
    """Class doc."""

    x = 1  # trailing words

    def f(self):
        # a full-line comment
        return os.sep
'''


def test_prose_and_code_split_a_python_file():
    from scalelab.data.prose_code import code, prose

    text = prose(SOURCE)
    for words in ("Module doc: English here.", "a comment about os", "Nothing but a docstring.", "Class doc.",
                  "trailing words", "a full-line comment"):  # fmt: skip
        assert words in text
    assert "import" not in text and "return" not in text
    bare = code(SOURCE)
    ast.parse(bare)  # still Python: the docstring-only body got `pass`
    assert "#" not in bare and '"""' not in bare and "pass" in bare and "return os.sep" in bare
    assert prose("def broken(:\n") == "" == code("def broken(:\n")
