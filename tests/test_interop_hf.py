"""Hugging Face export and import: logits, greedy generation and tokenizers match, both ways."""

from __future__ import annotations

import json

import pytest
import torch

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.train.checkpoint import load_for_inference

transformers = pytest.importorskip("transformers")

TEXTS = ["def main():\n    return 0\n", "Hello, world! 'quoted' and   spaces\tand tabs", " x = [1, 2, 3]", ""]


def _train(tiny_cfg, workdir, recipe: str, tokenizer: str, **extra):
    from scalelab.train.loop import train

    over = {"model__recipe": f"'{recipe}'", "data__tokenizer": f"'{tokenizer}'", "train__iters": "10",
            "train__eval_every": "10", "data__vocab_size": "320", "train__lr": "1e-2"}  # fmt: skip
    if recipe == "modern":
        over |= {"model__mlp": "'swiglu'"}
    return train(tiny_cfg(**(over | extra)), workdir, progress=False)["run_id"]


def _hf_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


SLOW = pytest.mark.slow  # the byte and BPE runs tokenize more (and the first one imports transformers)
CASES = [
    pytest.param("gpt2", "byte", marks=SLOW),
    ("gpt2", "char"),
    pytest.param("gpt2", "bpe", marks=SLOW),
    pytest.param("modern", "bpe", marks=SLOW),
    ("modern", "char"),
]


@pytest.mark.parametrize("kind", ["byte", "char", "bpe"])
def test_exported_tokenizer_gives_the_same_ids(tmp_path, kind):
    from scalelab.data.tokenizers import ByteTokenizer, CharTokenizer, train_bpe
    from scalelab.interop.hf_tokenizer import save_tokenizer

    texts = TEXTS + ["unicode: wörld 日本語 \u00a0 é\n\n", "  "]
    tok = {"byte": ByteTokenizer, "char": lambda: CharTokenizer.train(texts),
           "bpe": lambda: train_bpe(texts * 20, 300)}[kind]()  # fmt: skip
    save_tokenizer(tok, tmp_path, 64)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert hf_tok.eos_token_id == tok.eot_id
    for text in texts:
        ids = tok.encode(text).tolist()
        assert hf_tok(text)["input_ids"] == ids, text
        assert hf_tok.decode(ids) == tok.decode(ids)
    assert hf_tok.decode([*tok.encode("ab").tolist(), tok.eot_id], skip_special_tokens=True) == "ab"


@pytest.mark.parametrize("recipe,tokenizer", CASES)
def test_export_then_import_round_trip(tiny_cfg, tmp_path, recipe, tokenizer):
    from scalelab.interop.hf_export import export_hf
    from scalelab.interop.hf_import import import_hf
    from scalelab.model.generate import generate

    torch.set_num_threads(1)
    run_id = _train(tiny_cfg, tmp_path, recipe, tokenizer)
    res = export_hf(run_id, tmp_path / "hf", tmp_path)
    assert res["hf_class"] == {"gpt2": "GPT2LMHeadModel", "modern": "Qwen3ForCausalLM"}[recipe]
    files = set(res["files"])
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= files
    gpt, tok, _ = load_for_inference(run_id, tmp_path)

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").float().eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert type(hf).__name__ == res["hf_class"]
    for text in TEXTS[:3] if tokenizer != "char" else []:  # char: only corpus characters exist
        ids = tok.encode(text).tolist()
        assert hf_tok(text)["input_ids"] == ids
        assert hf_tok.decode(ids) == tok.decode(ids)
    real = torch.as_tensor(tok.encode(open(__file__.replace("test_interop_hf", "conftest")).read())[:32])[None]
    rand = torch.randint(0, gpt.cfg.vocab_size, (3, 32), generator=torch.Generator().manual_seed(1))
    for ids in (real, rand):
        ours = gpt(ids)[0]
        assert ours.abs().max() > 0.1  # a trained model, not all-zero logits
        torch.testing.assert_close(_hf_logits(hf, ids), ours, atol=1e-4, rtol=0)

    prompt = real[:, :8]
    want = generate(gpt, prompt, 16, temperature=0.0)[0].tolist()
    got = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=16)[0].tolist()
    assert got == want[: len(got)] and (len(got) == len(want) or got[-1] == tok.eot_id)

    back = import_hf(tmp_path / "hf", tmp_path, name=f"back-{recipe}-{tokenizer}")
    model2, tok2, info = load_for_inference(back["run_id"], tmp_path)
    assert info["step"] == 0 and model2.cfg.recipe == recipe
    for ids in (real, rand):
        torch.testing.assert_close(model2(ids)[0], gpt(ids)[0], atol=1e-4, rtol=0)
    if tokenizer != "char":
        assert tok2.encode(TEXTS[1]).tolist() == tok.encode(TEXTS[1]).tolist()
    row = RunStore.in_workdir(tmp_path, readonly=True).get_run(back["run_id"])
    assert row["status"] == "completed" and row["summary"]["imported_from"] == str(tmp_path / "hf")


def test_model_card_records_the_run(tiny_cfg, tmp_path):
    from scalelab.interop.hf_export import export_hf

    run_id = _train(tiny_cfg, tmp_path, "gpt2", "byte")
    export_hf(run_id, tmp_path / "hf", tmp_path)
    card = (tmp_path / "hf" / "README.md").read_text()
    row = RunStore.in_workdir(tmp_path, readonly=True).get_run(run_id)
    assert run_id in card and f"{row['final_val_loss']:.4g}" in card and f"{row['flops']:.4g}" in card
    assert '"tokenizer": "byte"' in card and "GPT2LMHeadModel" in card
    with pytest.raises(UserError, match="not empty"):
        export_hf(run_id, tmp_path / "hf", tmp_path)


@pytest.mark.parametrize("option,match", [
    ({"model__recipe": "'modern'", "model__mlp": "'relu2'"}, "model.mlp='relu2'"),
    ({"model__logit_softcap": "15.0"}, "model.logit_softcap=15.0"),
    ({"model__recipe": "'modern'", "model__mlp": "'swiglu'", "model__tie_embeddings": "true"},
     "model.tie_embeddings=true"),
])  # fmt: skip
def test_export_refuses_options_without_standard_equivalent(tiny_cfg, tmp_path, option, match):
    from scalelab.interop.hf_export import export_hf
    from scalelab.train.loop import train

    cfg = tiny_cfg(train__iters="2", train__eval_every="2", **option)
    run_id = train(cfg, tmp_path, progress=False)["run_id"]
    with pytest.raises(UserError, match=match.replace("(", r"\(")):
        export_hf(run_id, tmp_path / "hf", tmp_path)
    assert not (tmp_path / "hf").exists()


def _save_tokenizer(folder):
    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.interop.hf_tokenizer import save_tokenizer

    save_tokenizer(ByteTokenizer(), folder, 64)


@pytest.mark.parametrize("activation,mlp", [("gelu_new", "gelu"), ("gelu", "gelu_exact")])
def test_import_a_gpt2_made_by_transformers(tmp_path, activation, mlp):
    from scalelab.interop.hf_export import export_hf
    from scalelab.interop.hf_import import import_hf

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=257, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                  initializer_range=0.2, n_inner=48, layer_norm_epsilon=1e-6,
                                  activation_function=activation)  # fmt: skip
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(tmp_path / "src")
    _save_tokenizer(tmp_path / "src")
    res = import_hf(tmp_path / "src", tmp_path / "work")
    assert res["name"] == "hf-src" and max(res["logit_diff"].values()) < 1e-4
    gpt, _, _ = load_for_inference("hf-src", tmp_path / "work")
    assert gpt.cfg.mlp_hidden == 48 and gpt.cfg.norm_eps == 1e-6  # another MLP width and epsilon
    assert gpt.cfg.mlp == mlp  # tanh-GELU or the exact one
    ids = torch.randint(0, 257, (2, 64))
    torch.testing.assert_close(gpt(ids)[0], _hf_logits(hf, ids), atol=1e-4, rtol=0)
    again = export_hf("hf-src", tmp_path / "again", tmp_path / "work")  # and out again
    hf2 = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "again")
    assert hf2.config.activation_function == activation
    torch.testing.assert_close(_hf_logits(hf2, ids), _hf_logits(hf, ids), atol=1e-4, rtol=0)
    assert again["run_id"] == res["run_id"]


def test_import_refuses_what_scalelab_cannot_compute(tmp_path):
    from scalelab.interop.hf_import import import_hf

    qwen = transformers.Qwen3Config(vocab_size=257, hidden_size=32, intermediate_size=88, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                    max_position_embeddings=64)  # fmt: skip
    model = transformers.Qwen3ForCausalLM(qwen)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_norm.weight.fill_(2.0)  # scalelab's QK-norm has no weights
    model.save_pretrained(tmp_path / "qwen")
    _save_tokenizer(tmp_path / "qwen")
    with pytest.raises(UserError, match="q_norm weights other than 1"):
        import_hf(tmp_path / "qwen", tmp_path / "work")
    gptj = transformers.GPTJConfig(vocab_size=257, n_embd=32, n_layer=1, n_head=2, n_positions=64, rotary_dim=8)
    transformers.GPTJForCausalLM(gptj).save_pretrained(tmp_path / "gptj")
    with pytest.raises(UserError, match="model_type 'gptj' cannot be imported"):
        import_hf(tmp_path / "gptj", tmp_path / "work")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        import_hf(tmp_path / "empty", tmp_path / "work")
    with pytest.raises(UserError, match="names may hold only"):
        import_hf(tmp_path / "qwen", tmp_path / "work", name="../evil")


def test_cli_export_and_import(tiny_cfg, tmp_path):
    from typer.testing import CliRunner

    from scalelab.cli.app import app

    run_id = _train(tiny_cfg, tmp_path, "gpt2", "byte")
    w = ["--workdir", str(tmp_path)]
    res = CliRunner().invoke(app, ["export", "hf", run_id, str(tmp_path / "hf"), *w, "--json"])
    assert res.exit_code == 0, res.output
    exported = json.loads(res.stdout.strip().splitlines()[-1])
    assert exported["hf_class"] == "GPT2LMHeadModel" and exported["run_id"] == run_id
    res = CliRunner().invoke(app, ["import", "hf", str(tmp_path / "hf"), "--name", "again", "--context", "16", *w,
                                   "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["name"] == "again"
    short, _, _ = load_for_inference("again", tmp_path)
    full, _, _ = load_for_inference(run_id, tmp_path)
    assert short.cfg.block_size == 16 and short.wpe.weight.shape[0] == 16  # --context keeps the first positions
    ids = torch.randint(0, 257, (1, 16))
    torch.testing.assert_close(short(ids)[0], full(ids)[0], atol=1e-5, rtol=0)
    res = CliRunner().invoke(app, ["runs", *w, "--json"])
    assert "again" in res.stdout


def test_hf_backbone_honours_context(tmp_path):
    from scalelab.align.pm import PreferenceModel, load_pm

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=257, n_positions=64, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "src")
    _save_tokenizer(tmp_path / "src")
    assert load_pm(f"hf:{tmp_path / 'src'}").context == 64  # all of the model's positions by default
    pm = load_pm(f"hf:{tmp_path / 'src'}", context=16, objective="ranked")
    assert pm.context == 16
    scored = pm.encode("a long prompt " * 10, " reply")
    assert scored.truncated and len(scored.ids) <= 16
    assert PreferenceModel.load(pm.save(tmp_path / "pm")).context == 16  # kept when saved
    assert load_pm(f"hf:{tmp_path / 'src'}", context=1000).context == 64  # never beyond the model


@pytest.mark.parametrize("family", ["gpt2", "qwen3"])
def test_hf_backbone_hidden_state_is_the_causal_lms_last(family):
    """The PM reads the trunk alone; its state at each position equals the full model's hidden_states[-1]."""
    from scalelab.align.backbones import HFBackbone

    torch.manual_seed(0)
    if family == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=257, n_positions=32, n_embd=32,
                                                                     n_layer=2, n_head=2))  # fmt: skip
    else:
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=32))
    model.eval()
    idx = torch.randint(0, 257, (3, 12))
    lengths = torch.tensor([12, 7, 3])
    positions = lengths - 1
    with torch.no_grad():
        got = HFBackbone(model, "test").hidden_at(idx, positions, lengths)
        mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
        full = model(input_ids=idx, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(got, full[torch.arange(3), positions], rtol=1e-5, atol=1e-6)


def test_an_imported_model_trains_on_with_init_from(tiny_cfg, tmp_path):
    """An HF model imported as a run is a starting point for `scalelab train` (train.init_from)."""
    from scalelab.interop.hf_import import import_hf
    from scalelab.train.loop import train

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=257, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "src")
    _save_tokenizer(tmp_path / "src")
    work = tmp_path / "work"
    res = import_hf(tmp_path / "src", work)
    src, tok, _ = load_for_inference(res["run_id"], work)
    over = {"model__n_layer": "2", "model__n_head": "4", "model__n_embd": "32", "model__block_size": "64",
            "data__tokenizer": f"'{tmp_path / 'src'}'", "train__iters": "1", "train__lr": "1e-12",
            "train__warmup_iters": "0", "train__min_lr": "0", "train__init_from": f"'{res['run_id']}'"}  # fmt: skip
    out = train(tiny_cfg(**over), work, progress=False)
    tuned, _, _ = load_for_inference(out["run_id"], work)
    ids = torch.randint(0, 257, (2, 64))
    torch.testing.assert_close(tuned(ids)[0], src(ids)[0], atol=1e-4, rtol=0)  # one step at lr 1e-12
