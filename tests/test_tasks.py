"""Capability tasks: generators, scorers, the training mix and the config hash (Ganguli et al. 2022)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from scalelab.config import DataConfig, RunConfig, build_config
from scalelab.data.batches import RandomWindows
from scalelab.data.task_mix import (
    TASKS,
    check_mix,
    eval_examples,
    evaluate_expression,
    mix_train_stream,
    train_examples,
)
from scalelab.data.tokenizers import ByteTokenizer
from scalelab.errors import UserError
from scalelab.evals.tasks import encode_examples, make_task_eval, score_logits, score_task, task_batches


def _closers(opened: str) -> str:
    pairs = {"(": ")", "[": "]", "{": "}"}
    return "".join(pairs[c] for c in reversed(opened))


def test_every_generator_gives_its_known_answer():
    for prompt, answer in eval_examples("add3", 50):
        a, b = map(int, re.fullmatch(r"(\d+)\+(\d+)=", prompt).groups())
        assert answer == f"{a + b}\n" and a < 1000 and b < 1000
    for prompt, answer in eval_examples("copy", 20):
        assert prompt == f"copy:{answer[:-1]}=" and len(answer) == 9
    for prompt, answer in eval_examples("brackets", 20):
        assert answer == _closers(prompt.removeprefix("close:")) + "\n"
    for prompt, answer in eval_examples("expr", 50):
        assert answer == f"{eval(prompt[:-1], {'__builtins__': {}})}\n"  # digits and + - * only: Python agrees
    for prompt, answer in eval_examples("induction", 20):
        *defs, use = prompt.split("\n")
        names = [d.split(" = ")[0] for d in defs]
        start = use.removeprefix("print(")
        assert [n for n in names if n.startswith(start)] == [start + answer[:-2]] and answer.endswith(")\n")


def test_hand_written_cases():
    assert evaluate_expression(3, "+", 4, "*", 2) == 11
    assert evaluate_expression(3, "*", 4, "-", 2) == 10
    assert evaluate_expression(9, "-", 4, "-", 2) == 3
    assert TASKS["add1"](np.random.default_rng(0))[1].endswith("\n")


def test_generators_are_seeded_and_eval_never_in_training():
    assert eval_examples("add2", 10, seed=1) == eval_examples("add2", 10, seed=1)
    assert eval_examples("add2", 10, seed=1) != eval_examples("add2", 10, seed=2)
    for task in ("add2", "add3", "copy", "induction"):
        evals = {p for p, _ in eval_examples(task, 256)}
        assert not evals & {p for p, _ in train_examples(task, 3000)}


def test_empty_or_unknown_task_set_is_a_clear_error():
    with pytest.raises(UserError, match="task set is empty"):
        task_batches([], ByteTokenizer())
    with pytest.raises(UserError, match="unknown task.*known tasks"):
        task_batches(["add9"], ByteTokenizer())
    with pytest.raises(UserError, match="sum below 1"):
        check_mix({"add2": 0.7, "copy": 0.4})


class _Oracle(torch.nn.Module):
    """Logits that put all mass on the batch's true next tokens, except at `wrong` (example, position)."""

    def __init__(self, tokens: torch.Tensor, wrong: tuple[int, int] | None = None):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.logits = torch.full((*tokens[:, 1:].shape, 257), -30.0).scatter(-1, tokens[:, 1:, None], 0.0)
        if wrong is not None:
            self.logits[wrong[0], wrong[1]] = -30.0
            self.logits[wrong[0], wrong[1], 0] = 0.0

    def forward(self, x):
        return self.logits[:, : x.size(1)], None


def test_scorer_on_hand_written_logits():
    tok = ByteTokenizer()
    batch = encode_examples([("1+1=", "2\n"), ("copy:ab=", "ab\n")], tok)
    assert batch.answer_mask[0].tolist() == [False] * 4 + [True, True] + [False] * (batch.answer_mask.shape[1] - 6)
    s = score_task(_Oracle(batch.tokens), batch)
    assert s["exact"].tolist() == [1.0, 1.0] and np.allclose(s["logprob"], 0.0, atol=1e-6)
    s = score_task(_Oracle(batch.tokens, wrong=(1, 9)), batch)  # the second example's last answer token is wrong
    assert s["exact"].tolist() == [1.0, 0.0] and s["logprob"][1] < -20
    s = score_task(_Oracle(batch.tokens, wrong=(0, 1)), batch)  # a prompt position: not scored
    assert s["exact"].tolist() == [1.0, 1.0]
    uniform = score_logits(torch.zeros(2, batch.tokens.shape[1] - 1, 257), batch)
    assert np.allclose(uniform["logprob"], [-2 * np.log(257), -3 * np.log(257)])


def test_task_eval_on_a_tiny_gpt(one_torch_thread):
    from scalelab.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, n_layer=1, n_head=2, n_embd=32, block_size=64))
    out = make_task_eval(["add2", "induction"], ByteTokenizer(), block_size=64, n=8)(model, 0)
    assert set(out) == {"task_add2_exact", "task_add2_logprob", "task_induction_exact", "task_induction_logprob"}
    assert 0 <= out["task_add2_exact"] <= 1 and out["task_add2_logprob"] < 0
    with pytest.raises(UserError, match="context"):
        make_task_eval(["induction"], ByteTokenizer(), block_size=16)


def test_mix_realises_its_fraction():
    tok = ByteTokenizer()
    corpus = np.full(200_000, 200, dtype=np.uint16)  # byte 200 never occurs in a task's text
    starts = np.arange(0, corpus.size, 1000)
    stream, doc_starts, counts = mix_train_stream(corpus, starts, {"add2": 0.1, "copy": 0.05}, tok)
    assert stream.size == corpus.size + counts["add2"] + counts["copy"]
    assert (stream == 200).sum() == corpus.size  # the corpus is all there
    assert abs(counts["add2"] / stream.size - 0.1) < 0.001 and abs(counts["copy"] / stream.size - 0.05) < 0.001
    windows = RandomWindows(stream, 64, 256, seed=0).next_windows()
    assert abs((windows != 200).mean() - 0.15) < 0.03  # what training samples holds the share too
    assert doc_starts[0] == 0 and np.all(np.diff(doc_starts) > 0)


def test_new_fields_leave_old_hashes_unchanged():
    # hashes of these configs before data.tasks / data.eval_tasks existed (main at 12c3337)
    assert RunConfig().config_hash() == "86cba8faf79c4656"
    old = {"name": "x", "data": {"source": "stdlib", "tokenizer": "char", "repeat_fraction": 0.5},
           "model": {"n_layer": 2}, "train": {"iters": 10}}  # fmt: skip
    assert build_config(old, "x").config_hash() == "57766224d2166fcd"
    mixed = build_config({**old, "data": {**old["data"], "tasks": {"add2": 0.1}}}, "x").config_hash()
    scored = build_config({**old, "data": {**old["data"], "eval_tasks": ["add2"]}}, "x").config_hash()
    assert len({"57766224d2166fcd", mixed, scored}) == 3


def test_mixed_shards_keep_the_plain_cache_and_splits(tmp_path):
    from scalelab.data.shards import prepare_shards

    (tmp_path / "corpus.txt").write_text("def f(x):\n    return x + 1\n" * 3000)
    plain_cfg = DataConfig(source=str(tmp_path / "corpus.txt"))
    plain = prepare_shards(plain_cfg, tmp_path / "cache", progress=False)
    mixed = prepare_shards(DataConfig(source=str(tmp_path / "corpus.txt"), tasks={"add1": 0.2}), tmp_path / "cache",
                           progress=False)  # fmt: skip
    assert mixed.dir != plain.dir and prepare_shards(plain_cfg, tmp_path / "cache", progress=False).dir == plain.dir
    assert np.array_equal(mixed.tokens("val"), plain.tokens("val"))
    share = mixed.meta["task_mix"]["tokens"]["add1"] / mixed.meta["tokens"]["train"]
    assert abs(share - 0.2) < 0.01
