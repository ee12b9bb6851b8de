"""The preference study end to end on a micro spec (tiny backbones, arithmetic comparisons), and its reuse."""

from __future__ import annotations

import json

import pytest
import torch

from scalelab.errors import UserError
from scalelab.studies.preference import load_spec, run_study

MICRO = """
sizes = ["3xs", "2xs"]
context = 64
corpus_max_documents = 40
pretrain_iters = 10
pretrain_batch = 4
target = "arith"
data_max = 160
test_fraction = 0.3
n_train = 48
n_test = 32
efficiency_n = [16, 48]
pmp = "arith"
pmp_formats = ["binary", "ranked"]
pmp_max = 24
min_steps = 3
batch_size = 8
threads = 1
device = "cpu"
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_micro_study_runs_reports_and_reuses(tmp_path):
    spec = tmp_path / "micro.toml"
    spec.write_text(MICRO)
    result = run_study(preset="quick", spec=spec, workdir=tmp_path / "w", progress=False)
    assert {"summary", "report", "by_size", "efficiency", "headline", "zero_shot"} <= set(result)
    assert (tmp_path / "w" / "reports" / "preference-quick.html").exists()
    assert result["report"].endswith("preference-quick.html") and "Headline" in result["summary"]
    objectives = {(r["size"], r["objective"], r["pmp"]) for r in result["by_size"]}
    assert ("2xs", "ranked", "binary") in objectives and ("3xs", "imitation", None) in objectives
    assert {r["n_train"] for r in result["efficiency"]} == {16, 48}
    curves = {(r["objective"], r["pmp"]) for r in result["efficiency"]}
    assert curves == {(o, p) for o in ("ranked", "binary") for p in (None, "binary", "ranked")} | {("imitation", None)}
    assert {r["pmp"] for r in result["pmp_stages"]} == {"binary", "ranked"}
    assert all(0 <= r["lo"] <= r["accuracy"] <= r["hi"] <= 1 for r in result["by_size"])
    json.dumps(result, default=str)
    again = run_study(preset="quick", spec=spec, workdir=tmp_path / "w", progress=False)
    assert all(r["reused"] for r in again["by_size"] + again["efficiency"])
    assert all(b["reused"] for b in again["backbones"])
    assert [r["accuracy"] for r in again["by_size"]] == [r["accuracy"] for r in result["by_size"]]


def test_spec_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("sizez = ['xs']\n")
    with pytest.raises(UserError, match="sizez"):
        load_spec("quick", bad)
    with pytest.raises(UserError, match="unknown preset"):
        load_spec("huge", None)
    assert load_spec("full", None).context == 1024
