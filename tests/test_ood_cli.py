"""`scalelab ood fit` / `ood score` in-process on tiny random checkpoints: JSON, reuse of a fit, errors."""

from __future__ import annotations

import json

import pytest
import torch

from scalelab.cli.app import main
from scalelab.data.tokenizers import ByteTokenizer, CharTokenizer
from scalelab.model.gpt import GPT, GPTConfig
from scalelab.train.checkpoint import save_checkpoint


def _checkpoint(workdir, run_id: str, tokenizer) -> str:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=tokenizer.vocab_size))
    save_checkpoint(workdir / "runs" / run_id / "ckpt", 0, model, tokenizer, {})
    return str(workdir / "runs" / run_id)


def _run(capsys, *args) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def texts(tmp_path):
    code = tmp_path / "in.txt"
    code.write_text("\n".join(f"x{i} = compute({i}, y)" for i in range(24)))
    prose = tmp_path / "out.txt"
    prose.write_text("\n".join(f"The {i}th sentence is plain English prose." for i in range(12)))
    return str(code), str(prose)


def test_fit_then_score_json_reuses_the_fit(tmp_path, capsys, texts, one_torch_thread):
    run = _checkpoint(tmp_path, "run-a", ByteTokenizer())
    code, out, err = _run(capsys, "ood", "fit", "--model", run, "--in", texts[0], "--workdir", str(tmp_path), "--json")
    assert code == 0, err
    fit = json.loads(out.strip().splitlines()[-1])
    assert fit["n_fit"] == 12 and fit["dim"] == 16 and fit["shrinkage"] is True  # 12 texts < 16 dims
    code, out, err = _run(capsys, "ood", "score", "--model", run, "--in", texts[0], "--out", texts[1],
                          "--workdir", str(tmp_path), "--n-boot", "20", "--json")  # fmt: skip
    assert code == 0, err
    assert "using the saved fit" in err and "activations of 12 in-test texts" in err
    res = json.loads(out.strip().splitlines()[-1])
    assert [r["layer"] for r in res["layers"]] == [0, 1] and res["best_layer"] in (0, 1)
    for r in res["layers"]:
        assert 0 <= r["ci"][0] <= r["auroc"] <= r["ci"][1] <= 1 and 0 <= r["auroc_rel"] <= 1
    assert res["shrinkage"] is True and res["n_in_test"] == 12 and res["n_out_test"] == 12


def test_score_without_a_fit_fits_and_reports_exposure(tmp_path, capsys, texts, one_torch_thread):
    run = _checkpoint(tmp_path, "run-b", ByteTokenizer())
    code, out, err = _run(capsys, "ood", "score", "--model", run, "--in", texts[0], "--out", texts[1],
                          "--workdir", str(tmp_path), "--n-boot", "10")  # fmt: skip
    assert code == 0, err
    assert "best layer" in out and "outlier exposure" in out and "Ledoit-Wolf" in out


def test_a_fit_of_another_tokenizer_is_refused(tmp_path, capsys, texts, one_torch_thread):
    run_a = _checkpoint(tmp_path, "run-a", ByteTokenizer())
    run_c = _checkpoint(tmp_path, "run-c", CharTokenizer.train(["abcdefghijklmnopqrstuvwxyz 0123456789=(),.TE"]))
    code, out, err = _run(
        capsys, "ood", "fit", "--model", run_a, "--in", texts[0], "--workdir", str(tmp_path), "--json"
    )
    folder = json.loads(out.strip().splitlines()[-1])["fit"]
    code, out, err = _run(capsys, "ood", "score", "--model", run_c, "--in", texts[0], "--out", texts[1],
                          "--fit", folder, "--workdir", str(tmp_path))  # fmt: skip
    assert code == 2 and "tokenizer" in err and "Traceback" not in err
    code, out, err = _run(capsys, "ood", "score", "--model", run_a, "--in", str(tmp_path / "nope.txt"),
                          "--out", texts[1], "--workdir", str(tmp_path))  # fmt: skip
    assert code == 2 and "not found" in err
