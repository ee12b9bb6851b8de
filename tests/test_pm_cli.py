"""End-to-end `scalelab pm train / pm score / eval choice` through a real subprocess, on real HH-RLHF pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
KEYS = {"accuracy", "accuracy_ci", "ece", "n_train", "n_test", "n_skipped", "objective", "run_id", "n_truncated",
        "pairs_per_s"}  # fmt: skip


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "scalelab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pm_train_on_hh_then_score_and_choice(tmp_path):
    if not HH.exists():
        pytest.skip("../shared/data/hh-rlhf/harmless-base-test.jsonl.gz is not present")
    wd = str(tmp_path / "w")
    res = last_json(cli("pm", "train", "--data", str(HH), "--format", "hh", "--objective", "ranked", "--size", "3xs",
                        "--context", "96", "--data-max", "300", "--steps", "6", "--batch-size", "8", "--seed", "1",
                        "--threads", "1", "--workdir", wd, "--json"))  # fmt: skip
    assert KEYS <= set(res) and res["objective"] == "ranked"
    assert res["n_train"] + res["n_test"] == 300 and res["n_skipped"] == 0
    assert res["n_truncated"] > 0  # HH dialogues are longer than 96 bytes: cut from the left and counted
    lo, hi = res["accuracy_ci"]
    assert 0 <= lo <= res["accuracy"] <= hi <= 1 and res["pairs_per_s"] > 0
    run_dir = Path(wd) / "runs" / res["run_id"]
    assert (run_dir / "pm" / "pm.json").exists() and (run_dir / "pm" / "model.safetensors").exists()

    scored = last_json(cli("pm", "score", res["run_id"], "--data", str(HH), "--max", "40", "--workdir", wd,
                           "--figure", str(tmp_path / "rel.png"), "--json"))  # fmt: skip
    assert scored["n_test"] == 40 and 0 <= scored["ece"] <= 1 and (tmp_path / "rel.png").exists()

    items = tmp_path / "choice.jsonl"
    rows = [{"query": "\n\nHuman: What is 2+2?\n\nAssistant:", "responses": ["4", "5"], "correct": 0,
             "category": "honest"},
            {"query": "\n\nHuman: Hi!\n\nAssistant:", "responses": ["Go away.", "Hello, how can I help?"],
             "correct": 1, "category": "helpful"}]  # fmt: skip
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    choice = last_json(cli("eval", "choice", str(run_dir), "--data", str(items), "--json"))
    assert choice["n"] == 2 and choice["scoring"] == "head" and set(choice["per_category"]) == {"honest", "helpful"}


@pytest.mark.slow
def test_pm_train_imitation_and_errors(tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Q: {a}+{a}=? A:", "chosen": str(2 * a), "rejected": str(2 * a + 1)} for a in range(40)]
    rows.append({"prompt": "Q: same", "chosen": "x", "rejected": "x"})  # chosen equal to rejected: skipped, counted
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    wd = str(tmp_path / "w")
    res = last_json(cli("pm", "train", "--data", str(data), "--objective", "imitation", "--size", "3xs", "--context",
                        "32", "--steps", "3", "--test-fraction", "0.25", "--threads", "1", "--workdir", wd, "--json"))
    assert res["objective"] == "imitation" and res["n_skipped"] == 1 and res["n_train"] + res["n_test"] == 40

    bad = cli("pm", "train", "--data", str(data), "--format", "xml", "--size", "3xs", "--workdir", wd)
    assert bad.returncode == 2 and "unknown comparison format" in bad.stderr and "Traceback" not in bad.stderr
    no_base = cli("pm", "train", "--data", str(data), "--workdir", wd)
    assert no_base.returncode == 2 and "--size" in no_base.stderr
    pmp_imitation = cli("pm", "train", "--data", str(data), "--objective", "imitation", "--pmp", "arith",
                        "--size", "3xs", "--workdir", wd)  # fmt: skip
    assert pmp_imitation.returncode == 2 and "PMP" in pmp_imitation.stderr
    missing = cli("pm", "score", str(tmp_path / "nowhere"), "--data", str(data), "--workdir", wd)
    assert missing.returncode == 2
    zero = cli("pm", "train", "--data", str(data), "--size", "3xs", "--steps", "0", "--workdir", wd)
    assert zero.returncode == 2 and "--steps" in zero.stderr and "Traceback" not in zero.stderr
