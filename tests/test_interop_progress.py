"""Long commands show progress on stderr, also under --json (issue 12), one test per command family.

`TTY_COMPATIBLE=1` makes rich (and `show_progress`) treat the captured stderr as a terminal, so the
live lines and bars that a terminal would show are in `result.stderr`; stdout still ends with JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from scalelab.cli.app import app


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    torch.set_num_threads(1)

    def invoke(*args: str, label: str) -> dict:
        res = CliRunner().invoke(app, [*args, "--json"])
        assert res.exit_code == 0, res.output
        assert label in res.stderr, (label, res.stderr[-500:])
        return json.loads(res.stdout.strip().splitlines()[-1])

    return invoke


def _lm_run(terminal, workdir) -> str:
    sets = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=32", "train.iters=4",
            "train.eval_every=4", "train.eval_batches=1", "train.batch_size=4", "data.max_documents=40",
            "train.device='cpu'"]  # fmt: skip
    args = ["train", "--workdir", str(workdir)] + [a for s in sets for a in ("--set", s)]
    return terminal(*args, label="train")["run_id"]


@pytest.mark.slow  # one tiny training run, then four commands on it
def test_lm_commands_show_progress(terminal, tmp_path):
    run = _lm_run(terminal, tmp_path)
    w = ["--workdir", str(tmp_path)]
    assert terminal("sample", run, "-n", "8", *w, label="sample")["text"] is not None
    assert "induction_max" in terminal("probe", "induction", run, "--batch", "2", *w, label="probe induction")
    res = terminal("eval", "loss", "--model", run, "--data", "stdlib", "--windows", "2", *w, label="eval loss")
    assert res["loss"] > 0


@pytest.mark.slow  # exports through transformers
def test_interop_commands_show_progress(terminal, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from scalelab.interop import backfill as bf

    class Quiet:  # a tracker that records nothing: the progress is what is tested here
        def start(self, info): ...
        def log(self, rows): ...
        def finish(self, status, summary): ...

    run = _lm_run(terminal, tmp_path)
    w = ["--workdir", str(tmp_path)]
    res = terminal("export", "hf", run, str(tmp_path / "hf"), *w, label="export hf")
    assert res["hf_class"] == "GPT2LMHeadModel"
    assert terminal("import", "hf", str(tmp_path / "hf"), "--name", "back", *w, label="import hf")["name"] == "back"
    monkeypatch.setattr(bf, "FACTORIES", {"tensorboard": Quiet})
    assert run in terminal("runs", "export", "--to", "tensorboard", *w, label="export to tensorboard")["exported"]


@pytest.mark.slow  # a process of its own: imports scalelab again
def test_fit_bootstrap_shows_progress(tmp_path):
    """In a process of its own: `fit` draws on the console made when the CLI was imported, which a test
    runner's swapped stderr does not reach."""
    csv = tmp_path / "runs.csv"
    csv.write_text("x,y\n" + "".join(f"{10**k},{3 * (10**k) ** -0.3 + 1e-3 * k}\n" for k in range(2, 8)))
    env = dict(os.environ, TTY_COMPATIBLE="1")
    args = ["fit", "power", str(csv), "--x", "x", "--y", "y", "--bootstrap", "30", "--json"]
    res = subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "bootstrap refits" in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["n_boot"] == 30


@pytest.mark.slow  # trains a tiny preference model
def test_pm_commands_show_progress(terminal, tmp_path):
    rows = [{"prompt": f"Q: {a}+{a}=? A:", "chosen": str(2 * a), "rejected": str(2 * a + 1)} for a in range(24)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    w = ["--workdir", str(tmp_path / "w")]
    res = terminal("pm", "train", "--data", str(data), "--size", "3xs", "--context", "32", "--steps", "2",
                   "--threads", "1", *w, label="loss")  # fmt: skip
    assert terminal("pm", "score", res["run_id"], "--data", str(data), *w, label="pm score")["n_test"] == 24
    items = tmp_path / "choice.jsonl"
    items.write_text(json.dumps({"query": "Q: 1+1=? A:", "responses": ["2", "3"], "correct": 0, "category": "other"}))
    assert terminal("eval", "choice", res["run_id"], "--data", str(items), *w, label="eval choice")["n"] == 1
