"""The preference model: score position, truncation, checkpoints, training direction, data splits."""

from __future__ import annotations

import sys

import pytest
import torch

from scalelab.align.backbones import fresh_gpt_backbone, load_hf_backbone
from scalelab.align.pm import PreferenceModel, collate, encode_pairs
from scalelab.align.pm_data import build_automatic, group_key, pmp_set, split_set
from scalelab.align.pm_train import PMTrainConfig, evaluate_pm, train_pm
from scalelab.data.comparisons import Comparison
from scalelab.errors import UserError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_pm(objective: str = "ranked", context: int = 64, seed: int = 0) -> PreferenceModel:
    backbone, tokenizer = fresh_gpt_backbone("3xs", context, seed=seed)
    pm = PreferenceModel(backbone, tokenizer, objective)
    torch.nn.init.normal_(pm.head.weight, std=0.5)  # a non-zero head, so that scores differ
    return pm.eval()


def mixing_pm(context: int = 64) -> PreferenceModel:
    """A PM whose every weight is random and non-zero: the modern recipe zero-initialises the blocks'
    output projections, which makes each block the identity, so nothing would mix across positions."""
    pm = tiny_pm(context=context)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in pm.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return pm


def test_score_is_read_at_the_end_token_whatever_the_padding():
    pm = mixing_pm()
    short, long = pm.encode("Q: hi", "yes"), pm.encode("Q: a much longer prompt here", "a longer answer")
    batch = collate([short, long], pad_id=7)
    assert batch.idx[0, batch.score_pos[0]].item() == pm.tokenizer.eot_id
    assert batch.score_pos[0].item() == len(short.ids) - 1 < batch.idx.size(1) - 1  # the short one is padded
    with torch.no_grad():
        alone = pm.head_scores(collate([short]))
        padded = pm.head_scores(batch)
        other_pad = pm.head_scores(collate([short, long], pad_id=200))
    assert padded[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    assert other_pad[0].item() == pytest.approx(alone[0].item(), abs=1e-5)
    # the blocks do mix positions: an earlier token changes the score, so padding could leak if it were seen
    with torch.no_grad():
        changed = pm.head_scores(collate([pm.encode("Q: ho", "yes")]))
    assert abs(changed[0].item() - alone[0].item()) > 1e-3
    assert pm.score(["Q: hi yes"]).shape == (1,)


def test_long_texts_are_cut_from_the_left_and_counted():
    pm = tiny_pm(context=32)
    text = pm.encode("x" * 100, "the answer")  # prompt far longer than the context
    assert len(text.ids) == 32 and text.truncated and not text.response_truncated
    assert text.ids[0] == text.ids[-1] == pm.tokenizer.eot_id
    assert pm.tokenizer.decode(text.ids[text.n_prefix : -1]) == "the answer"  # the response is kept whole
    huge = pm.encode("", "y" * 100)
    assert len(huge.ids) == 32 and huge.response_truncated
    pairs = encode_pairs(pm, [Comparison("x" * 100, "good", "bad"), Comparison("q", "a", "b")])
    assert pairs.counts.n_sequences == 4 and pairs.counts.n_truncated == 2


def test_hh_responses_follow_the_assistant_marker_with_a_space():
    pm = tiny_pm()
    text = pm.encode("\n\nHuman: hi\n\nAssistant:", "Hello")
    assert pm.tokenizer.decode(text.ids[1:-1]).endswith("Assistant: Hello")


def test_reward_on_token_ids_equals_score_on_text():
    pm = tiny_pm()
    prompt, response = "Q: 2+2=? A:", "4"
    ids = [pm.tokenizer.encode(prompt), pm.tokenizer.encode(" " + response)]
    reward = pm.reward([torch.as_tensor(ids[0])], [torch.as_tensor(ids[1])])
    assert reward.item() == pytest.approx(pm.score([prompt], [response]).item(), abs=1e-6)


def test_save_and_load_round_trip(tmp_path):
    pm = tiny_pm()
    texts = ["def f(x):\n    return x\n", "def f(x)\n    return x\n"]
    before = pm.score(texts)
    pm.save(tmp_path / "pm")
    pm.save(tmp_path / "pm")  # overwriting is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pm"]
    loaded = PreferenceModel.load(tmp_path)
    assert torch.allclose(loaded.score(texts), before, atol=1e-6)
    assert loaded.objective == "ranked" and loaded.context == 64
    with pytest.raises(UserError, match="no pm.json"):
        PreferenceModel.load(tmp_path / "nothing")


def _toy_pairs(n: int = 32) -> list[Comparison]:
    return [Comparison(f"Q{i}:", f"good {i}", f"bad {i} !!") for i in range(n)]


@pytest.mark.parametrize("objective", ["ranked", "binary", "imitation"])
def test_training_moves_the_scores_the_right_way(objective):
    """A wrong sign anywhere (loss, labels, chosen/rejected order) makes the margin shrink instead."""
    torch.manual_seed(0)
    backbone, tokenizer = fresh_gpt_backbone("3xs", 64, seed=0)
    pm = PreferenceModel(backbone, tokenizer, objective)
    pairs = encode_pairs(pm, _toy_pairs())
    before = evaluate_pm(pm, pairs)
    train_pm(pm, pairs, PMTrainConfig(objective=objective, steps=15, batch_size=8, lr=3e-3, warmup_steps=2))
    after = evaluate_pm(pm, pairs)
    margin_before = (before.scores_chosen - before.scores_rejected).mean()
    margin_after = (after.scores_chosen - after.scores_rejected).mean()
    assert margin_after > margin_before + 0.1
    assert after.accuracy.value > 0.9
    if objective == "binary":  # a classifier: good responses above 0, bad below
        assert (after.scores_chosen > 0).mean() > 0.8 and (after.scores_rejected < 0).mean() > 0.8


def test_training_runs_without_dropout(monkeypatch):
    """Dropout is off while a PM trains (as TRL's RewardTrainer): every module is in eval mode at each step."""
    from scalelab.align import pm_train

    pm = mixing_pm()
    pairs = encode_pairs(pm, _toy_pairs())
    seen: list[bool] = []
    real_step = pm_train.step_loss

    def spy(pm_, pairs_, batch, objective):
        seen.append(any(m.training for m in pm_.modules()))
        return real_step(pm_, pairs_, batch, objective)

    monkeypatch.setattr(pm_train, "step_loss", spy)
    pm.train()
    train_pm(pm, pairs, PMTrainConfig(steps=3, batch_size=2, warmup_steps=1))
    assert seen == [False, False, False]


def test_imitation_needs_an_imitation_model():
    pm = tiny_pm("ranked")
    with pytest.raises(UserError, match="imitation"):
        train_pm(pm, encode_pairs(pm, _toy_pairs(4)), PMTrainConfig(objective="imitation", steps=1))


def test_split_keeps_groups_together_and_pmp_is_binarised():
    comps = [Comparison("", f"def f{i}(): pass", f"def f{i}(: pass", meta={"doc": i // 3}) for i in range(60)]
    train, test = split_set(comps, 0.3, seed=1)
    assert len(train) + len(test) == 60 and train and test
    assert not {group_key(c, 0) for c in train} & {group_key(c, 0) for c in test}
    arith = pmp_set("arith:20", seed=0)
    assert len(arith.comparisons) == 40 and arith.comparisons[0].chosen.startswith("GOOD:")
    with pytest.raises(UserError):
        build_automatic("arith:lots")


def test_automatic_sets_filter_long_pairs_and_count_them():
    pm = tiny_pm(context=128)
    fits = lambda c: not any(pm.encode(c.prompt, r).truncated for r in (c.chosen, c.rejected))  # noqa: E731
    built = build_automatic("code:stdlib", seed=0, max_pairs=5, max_documents=60, fits=fits)
    assert len(built.comparisons) == 5 and built.n_filtered_long > 0
    assert all(fits(c) for c in built.comparisons)


def test_hf_backbone_without_transformers_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'scalelab\[hf\]'"):
        load_hf_backbone(tmp_path)


def test_hf_backbone_scores_like_a_pm(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1, "b": 2, "[UNK]": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    cfg = transformers.GPT2Config(vocab_size=4, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(tmp_path))
    backbone, tokenizer = load_hf_backbone(tmp_path)
    pm = PreferenceModel(backbone, tokenizer, "ranked")
    torch.nn.init.normal_(pm.head.weight)
    alone = pm.score(["a b"])
    both = pm.score(["a b", "a b a b a b"])
    assert both[0].item() == pytest.approx(alone[0].item(), abs=1e-4)
    pm.save(tmp_path / "pm")
    assert torch.allclose(PreferenceModel.load(tmp_path / "pm").score(["a b"]), alone, atol=1e-5)
