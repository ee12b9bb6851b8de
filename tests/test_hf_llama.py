"""Llama-family folders (Llama, Qwen2, Mistral) made by transformers: import, logits, greedy tokens, export back."""

from __future__ import annotations

import pytest
import torch

from scalelab.errors import UserError
from scalelab.train.checkpoint import load_for_inference

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=257, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
             initializer_range=0.2, hidden_act="silu", bos_token_id=256, eos_token_id=256)  # fmt: skip
FAMILIES = {
    # GQA, another rotary base and norm epsilon, an MLP width that is not scalelab's default, MLP biases
    "llama": (
        transformers.LlamaConfig,
        dict(
            num_key_value_heads=2,
            intermediate_size=72,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 5e5},
            mlp_bias=True,
        ),
    ),  # fmt: skip
    # biases on q, k, v only; a tied head (kept tied: the final norm weight stays one)
    "qwen2": (transformers.Qwen2Config, dict(num_key_value_heads=4, intermediate_size=88, tie_word_embeddings=True)),
    # a sliding window (the imported context stops at it); tied, but the final norm untied on import
    "mistral": (
        transformers.MistralConfig,
        dict(num_key_value_heads=1, intermediate_size=64, sliding_window=32, tie_word_embeddings=True),
    ),  # fmt: skip
}


def _save_tokenizer(folder):
    from scalelab.data.tokenizers import ByteTokenizer
    from scalelab.interop.hf_tokenizer import save_tokenizer

    save_tokenizer(ByteTokenizer(), folder, 64)


def _hf_model(family: str, folder):
    cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cls(**SMALL, **extra)).eval()
    with torch.no_grad():  # random norm weights and biases, so that folding them is tested
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") and not (family == "qwen2" and name == "model.norm.weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(folder)
    _save_tokenizer(folder)
    return model


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.slow  # three imports and exports through transformers
@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_a_llama_family_model_and_export_it_back(tmp_path, family):
    from scalelab.interop.hf_export import export_hf
    from scalelab.interop.hf_import import import_hf
    from scalelab.model.generate import generate

    torch.set_num_threads(1)
    hf = _hf_model(family, tmp_path / "src")
    res = import_hf(tmp_path / "src", tmp_path / "work", name=family)
    assert res["hf_model_type"] == family and max(res["logit_diff"].values()) <= 1e-4
    gpt, _, _ = load_for_inference(family, tmp_path / "work")
    cfg = gpt.cfg
    assert cfg.recipe == "modern" and not cfg.qk_norm and not cfg.embed_norm
    want = {"llama": dict(rope_theta=5e5, norm_eps=1e-5, mlp_hidden=72, bias=True, tie_embeddings=False),
            "qwen2": dict(bias=True, tie_embeddings=True, block_size=64, mlp_hidden=None),
            "mistral": dict(bias=False, tie_embeddings=False, block_size=32, mlp_hidden=64)}[family]  # fmt: skip
    assert {k: getattr(cfg, k) for k in want} == want
    ids = torch.randint(0, 257, (2, cfg.block_size), generator=torch.Generator().manual_seed(1))
    ours = gpt(ids)[0]
    assert ours.abs().max() > 0.5
    torch.testing.assert_close(ours, _logits(hf, ids), atol=1e-4, rtol=0)

    prompt = ids[:1, :6]
    mine = generate(gpt, prompt, 12, temperature=0.0)[0].tolist()
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=12,
                         eos_token_id=None, pad_token_id=0)[0].tolist()  # fmt: skip
    assert mine == theirs

    out = export_hf(family, tmp_path / "back", tmp_path / "work")
    assert out["hf_class"] == "LlamaForCausalLM"  # QK-norm off: Llama, whatever the source family was
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").float().eval()
    assert type(back).__name__ == "LlamaForCausalLM"
    torch.testing.assert_close(_logits(back, ids), _logits(hf, ids), atol=1e-4, rtol=0)


def test_a_scalelab_llama_run_exports_as_llama_and_imports_to_the_same_config(tiny_cfg, tmp_path):
    """A modern run trained with model.qk_norm=false / embed_norm=false goes out as Llama and back unchanged."""
    from scalelab.interop.hf_export import export_hf
    from scalelab.interop.hf_import import import_hf
    from scalelab.train.loop import train

    torch.set_num_threads(1)
    over = {"model__recipe": "'modern'", "model__mlp": "'swiglu'", "model__qk_norm": "false",
            "model__embed_norm": "false", "model__rope_theta": "5e5", "model__tie_embeddings": "true",
            "model__bias": "true", "train__iters": "4", "train__eval_every": "4", "train__lr": "1e-2"}  # fmt: skip
    run_id = train(tiny_cfg(**over), tmp_path, progress=False)["run_id"]
    res = export_hf(run_id, tmp_path / "hf", tmp_path)
    assert res["hf_class"] == "LlamaForCausalLM" and max(res["logit_diff"].values()) <= 1e-4
    back = import_hf(tmp_path / "hf", tmp_path, name="back")
    a, _, _ = load_for_inference(run_id, tmp_path)
    b, _, _ = load_for_inference(back["run_id"], tmp_path)
    assert a.cfg == b.cfg
    ids = torch.randint(0, a.cfg.vocab_size, (2, 16))
    torch.testing.assert_close(b(ids)[0], a(ids)[0], atol=1e-5, rtol=0)


def test_new_model_fields_leave_old_config_hashes_alone():
    """qk_norm, embed_norm, rope_theta, norm_eps, mlp_hidden are out of the hash while unset."""
    from scalelab.config import RunConfig
    from scalelab.model.sizes import resolve

    # hashes of these configs before the fields existed (scalelab main, 2026-11-30)
    assert RunConfig().config_hash() == "86cba8faf79c4656"
    assert RunConfig(model={"recipe": "modern", "mlp": "swiglu"}).config_hash() == "44f4f15548ff771e"
    changed = RunConfig(model={"recipe": "modern", "mlp": "swiglu", "qk_norm": False}).config_hash()
    assert changed != "44f4f15548ff771e"
    cfg = resolve(RunConfig(model={"recipe": "modern"}).model, 257)
    assert cfg.qk_norm and cfg.embed_norm and cfg.rope_theta == 1e4 and cfg.norm_eps is None
    with pytest.raises(UserError, match="model.qk_norm applies to the modern recipe only"):
        resolve(RunConfig(model={"qk_norm": False}).model, 257)


def test_llama_options_scalelab_cannot_compute_are_refused_by_name(tmp_path):
    from scalelab.interop.hf_import import import_hf

    base = dict(SMALL, intermediate_size=64)
    cases = [
        (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}), "rope_type='linear'"),
        (dict(hidden_act="gelu"), "hidden_act='gelu'"),
        (dict(head_dim=16), "head_dim=16"),
    ]
    for i, (extra, match) in enumerate(cases):
        folder = tmp_path / f"m{i}"
        transformers.LlamaForCausalLM(transformers.LlamaConfig(**(base | extra))).save_pretrained(folder)
        _save_tokenizer(folder)
        with pytest.raises(UserError, match=match):
            import_hf(folder, tmp_path / "work")


@pytest.mark.slow  # an import and a one-step training run
def test_an_imported_llama_trains_on_with_init_from(tiny_cfg, tmp_path):
    """The new model options reach the GPT through the config: a run with the imported model's settings
    starts from its weights (train.init_from checks every field of the shape)."""
    from scalelab.interop.hf_import import import_hf
    from scalelab.train.loop import train

    torch.set_num_threads(1)
    _hf_model("llama", tmp_path / "src")
    work = tmp_path / "work"
    src, _, _ = load_for_inference(import_hf(tmp_path / "src", work, name="src")["run_id"], work)
    over = {"model__recipe": "'modern'", "model__mlp": "'swiglu'", "model__qk_norm": "false",
            "model__embed_norm": "false", "model__rope_theta": "5e5", "model__norm_eps": "1e-5",
            "model__mlp_hidden": "72", "model__bias": "true", "model__tie_embeddings": "false",
            "model__n_layer": "2", "model__n_head": "4", "model__n_embd": "32", "model__block_size": "64",
            "data__tokenizer": f"'{tmp_path / 'src'}'", "train__iters": "1", "train__lr": "1e-12",
            "train__warmup_iters": "0", "train__min_lr": "0", "train__init_from": "'src'"}  # fmt: skip
    tuned, _, _ = load_for_inference(train(tiny_cfg(**over), work, progress=False)["run_id"], work)
    assert tuned.cfg == src.cfg
    ids = torch.randint(0, 257, (2, 64))
    torch.testing.assert_close(tuned(ids)[0], src(ids)[0], atol=1e-4, rtol=0)
