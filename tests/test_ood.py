"""OOD detection on activations: the statistics against NumPy, pooling, shrinkage, fits, benchmarks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scalelab.data.ood_sets import available, benchmark, texts_from_source
from scalelab.data.tokenizers import ByteTokenizer, CharTokenizer
from scalelab.errors import UserError
from scalelab.evals.ood import OODFit, fit_ood, ood_auroc_by_layer, pooled_activations
from scalelab.evals.ood_stats import (
    auroc,
    bootstrap_auroc,
    exposure_curve,
    fit_gaussian,
    ledoit_wolf,
    mahalanobis,
    relative_mahalanobis,
)
from scalelab.model.gpt import GPT, GPTConfig


def tiny_model(vocab: int = 257, n_layer: int = 2, n_embd: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=n_layer, n_head=2, n_embd=n_embd, block_size=32, vocab_size=vocab)).eval()


def gaussians(seed: int = 0, n: int = 400, dim: int = 4):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T + 0.5 * np.eye(dim)
    return rng, cov, rng.multivariate_normal(np.zeros(dim), cov, size=n)


def test_mahalanobis_matches_numpy_on_known_gaussians():
    rng, cov, x = gaussians()
    fit = fit_gaussian(x)
    mean = x.mean(axis=0)
    emp = np.cov(x.T, bias=True)
    test = rng.multivariate_normal(np.zeros(4), cov, size=50)
    d = test - mean
    want_full = np.einsum("nc,cd,nd->n", d, np.linalg.inv(emp), d)
    want_diag = (d**2 / np.diag(emp)).sum(axis=1)
    assert not fit.shrunk and fit.shrinkage == 0.0
    np.testing.assert_allclose(mahalanobis(fit, test), want_full, rtol=1e-4)
    np.testing.assert_allclose(relative_mahalanobis(fit, test), want_full - want_diag, atol=1e-4)


def test_auroc_near_half_for_same_distribution_and_near_one_when_shifted():
    rng, cov, x = gaussians(1)
    fit = fit_gaussian(x)
    same_in = rng.multivariate_normal(np.zeros(4), cov, size=300)
    same_out = rng.multivariate_normal(np.zeros(4), cov, size=300)
    shifted = rng.multivariate_normal(np.full(4, 6.0), cov, size=300)
    for score in (mahalanobis, relative_mahalanobis):
        assert abs(auroc(score(fit, same_in), score(fit, same_out)) - 0.5) < 0.08
    assert auroc(mahalanobis(fit, same_in), mahalanobis(fit, shifted)) > 0.95


def test_auroc_equals_pairwise_count_and_bootstrap_brackets_it():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=40).round(1), rng.normal(0.5, 1, size=30).round(1)  # rounding makes ties
    pairs = (b[None, :] > a[:, None]).mean() + 0.5 * (b[None, :] == a[:, None]).mean()
    assert auroc(a, b) == pytest.approx(pairs)
    point, (lo, hi) = bootstrap_auroc(a, b, n_boot=100, seed=0)
    assert lo <= point <= hi and lo < hi


def test_class_means_use_the_nearest_class():
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(-5, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    labels = np.repeat([0, 1], 100)
    one, two = fit_gaussian(x), fit_gaussian(x, labels)
    probe = np.array([[5.0, 5.0], [-5.0, -5.0]])
    assert two.means.shape == (2, 2)
    assert (mahalanobis(two, probe) < 1.0).all() and (mahalanobis(one, probe) > mahalanobis(two, probe)).all()


def test_fewer_examples_than_dimensions_shrinks_and_says_so():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(10, 20))
    cov, shrinkage = ledoit_wolf(x - x.mean(axis=0))
    assert 0 < shrinkage <= 1 and np.linalg.matrix_rank(cov) == 20
    fit = fit_gaussian(x)
    assert fit.shrunk and fit.shrinkage == pytest.approx(shrinkage)
    assert np.isfinite(mahalanobis(fit, rng.normal(size=(5, 20)))).all()
    # through the model: 4 fit texts, width 16 -> shrunk, and the result says it
    texts = [f"text number {i}" for i in range(8)]
    res = ood_auroc_by_layer(tiny_model(), ByteTokenizer(), texts[:4], texts[4:], ["zzzz", "qqqq qq"], n_boot=10)
    assert res["shrinkage"] is True and res["n_fit"] == 4 and res["dim"] == 16
    assert [r["layer"] for r in res["layers"]] == [0, 1] and all(r["shrinkage"] > 0 for r in res["layers"])


def test_padding_does_not_change_pooled_activations(one_torch_thread):
    model, tok = tiny_model(), ByteTokenizer()
    texts = ["a", "a longer text than the first", "mid length", ""]
    batched = pooled_activations(model, tok, texts, batch_size=4)
    alone = np.concatenate([pooled_activations(model, tok, [t], batch_size=1) for t in texts], axis=1)
    assert batched.shape == (2, 4, 16)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # and it is the mean of resid_post over the real tokens
    ids = torch.from_numpy(tok.encode(texts[1]))[None]
    _, cache = model.run_with_cache(ids, names=["blocks.1.resid_post"])
    np.testing.assert_allclose(batched[1, 1], cache["blocks.1.resid_post"][0].mean(0).numpy(), atol=1e-5)


def test_bf16_activations_are_close_to_float32(one_torch_thread):
    model, tok = tiny_model(), ByteTokenizer()
    texts = ["def f(x):", "Some plain prose here.", "x = [1, 2, 3]"]
    full = pooled_activations(model, tok, texts)
    half = pooled_activations(model, tok, texts, bf16=True)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=0.05 * np.abs(full).max())


def test_another_tokenizer_is_refused(tmp_path):
    model, tok = tiny_model(), ByteTokenizer()
    fit = fit_ood(model, tok, [f"line {i}" for i in range(6)])
    other = CharTokenizer.train(["abcdefgh line 0123456789"])
    with pytest.raises(UserError, match="tokenizer"):
        fit.check_model(tiny_model(vocab=other.vocab_size), other)
    with pytest.raises(UserError, match="another model"):
        pooled_activations(tiny_model(vocab=20), tok, ["x"])
    with pytest.raises(UserError, match="width"):
        fit.check_model(tiny_model(n_embd=32), tok)


def test_fit_round_trips_through_safetensors_and_json(tmp_path):
    model, tok = tiny_model(), ByteTokenizer()
    fit = fit_ood(model, tok, [f"def f{i}(x): return x + {i}" for i in range(20)], model_info={"run_id": "r1"})
    fit.save(tmp_path / "fit")
    assert sorted(p.name for p in (tmp_path / "fit").iterdir()) == ["ood_fit.json", "ood_fit.safetensors"]
    back = OODFit.load(tmp_path / "fit")
    texts = ["Some English prose.", "x = 1"]
    a, b = fit.score(model, tok, texts), back.score(model, tok, texts)
    np.testing.assert_allclose(a["mahalanobis"], b["mahalanobis"], rtol=1e-6)
    np.testing.assert_allclose(a["relative"], b["relative"], rtol=1e-6)
    with pytest.raises(UserError, match="no OOD fit"):
        OODFit.load(tmp_path)


def test_outlier_exposure_rises_with_labelled_outliers():
    rng = np.random.default_rng(5)
    fit_in, test_in = rng.normal(size=(200, 6)), rng.normal(size=(100, 6))
    out = rng.normal(size=(100, 6)) + np.array([2.0, 0, 0, 0, 0, 0])
    curve = exposure_curve(fit_in, test_in, out, [1, 4, 16], draws=4, seed=0)
    assert [c["m"] for c in curve] == [1, 4, 16]
    assert curve[-1]["auroc"] > 0.85 and curve[-1]["auroc"] >= curve[0]["auroc"] - 0.05


def test_benchmarks_are_deterministic_and_sized():
    for name in ("near", "far"):
        a_in, a_out = benchmark(name, 12, seed=1)
        assert len(a_in) == len(a_out) == 12 and benchmark(name, 12, seed=1) == (a_in, a_out)
        assert not set(a_in) & set(a_out) and all(t.strip() for t in a_in + a_out)
    with pytest.raises(UserError, match="unknown OOD benchmark"):
        benchmark("mid", 5)
    if "hh" not in available():
        pytest.skip("the HH sample is not present")
    hh_in, hh_out = benchmark("hh", 5, seed=0)
    assert len(hh_in) == 5 and all("Assistant:" not in t for t in hh_in)


def test_texts_from_source_reads_lines_and_benchmarks(tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("first\n\nsecond\nthird\n")
    assert texts_from_source(str(f), None) == ["first", "second", "third"]
    assert len(texts_from_source(str(f), 2)) == 2
    assert texts_from_source("ood:far", 3, side="out") == benchmark("far", 3)[1]
    with pytest.raises(UserError, match="not found"):
        texts_from_source(str(tmp_path / "missing.txt"), 3)
