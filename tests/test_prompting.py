"""Prompt files, token accounting at the context limit, and the prompted contexts."""

from __future__ import annotations

import numpy as np
import pytest

from scalelab.data.tokenizers import ByteTokenizer, CharTokenizer
from scalelab.errors import UserError
from scalelab.prompting import contexts, fit_prompt, load_prompt, prompt_from_text, shipped_prompts


def test_shipped_assistant_prompt_is_a_dialogue():
    assert "assistant" in shipped_prompts()
    p = load_prompt("assistant")
    assert p.turns and p.turns[0][0] == "Human" and {r for r, _ in p.turns} == {"Human", "Assistant"}
    assert p.text.startswith("Human: ") and p.text.endswith("\n\n")


def test_plain_prompt_is_kept_verbatim_and_turns_are_canonical(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("\ufeffA few lines\nof text\n")
    assert load_prompt(f).text == "A few lines\nof text\n" and load_prompt(f).turns == ()
    p = prompt_from_text("Human:   hi there\nAssistant:hello\n\n\n")
    assert p.turns == (("Human", "hi there"), ("Assistant", "hello"))
    assert p.text == "Human: hi there\n\nAssistant: hello\n\n"


@pytest.mark.parametrize("text", ["", "  \n\t\n"])
def test_empty_prompt_is_refused(tmp_path, text):
    f = tmp_path / "empty.txt"
    f.write_text(text)
    with pytest.raises(UserError, match="empty"):
        load_prompt(f)


def test_empty_turn_and_missing_file_are_refused(tmp_path):
    with pytest.raises(UserError, match="turn"):
        prompt_from_text("Human: hello\nAssistant:\n")
    with pytest.raises(UserError, match="assistant"):  # the message lists the shipped prompts
        load_prompt(tmp_path / "nope.txt")


def test_accounting_at_the_context_limit():
    tok = ByteTokenizer()
    ids, fit = fit_prompt(prompt_from_text("x" * 31), tok, 32)  # 31 of 32 tokens: one text token left
    assert (len(ids), fit.room, fit.to_dict()["share"]) == (31, 1, round(31 / 32, 4))
    with pytest.raises(UserError, match="leaves 0 tokens"):
        fit_prompt(prompt_from_text("x" * 32), tok, 32)
    with pytest.raises(UserError, match="at least 8 needed"):
        fit_prompt(prompt_from_text("x" * 30), tok, 32, min_room=8)
    with pytest.raises(UserError, match="longer context"):  # far longer than the context
        fit_prompt(prompt_from_text("x" * 500), tok, 32)


def test_prompt_in_characters_another_tokenizer_lacks():
    tok = CharTokenizer("abc \n")
    with pytest.raises(UserError, match="tokenizer"):
        fit_prompt(prompt_from_text("abc Z"), tok, 64)


def test_prompted_and_unprompted_contexts_score_the_same_tokens():
    w = np.arange(12).reshape(2, 6)
    x, off = contexts(w, [100, 101, 102], eot_id=99)
    assert x.shape == (2, 9) and off == 3 and list(x[0, :4]) == [99, 100, 101, 102]
    # position off + j predicts w[:, j]: its input is the token before w[:, j]
    assert list(x[0, off + 1 :]) == list(w[0, :-1])
    x0, off0 = contexts(w, None, eot_id=99)
    assert x0.shape == (2, 6) and off0 == 0 and x0[0, 0] == 99
