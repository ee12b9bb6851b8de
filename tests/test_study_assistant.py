"""The assistant study: its staged plan (students and PMs name finished earlier runs), and a micro study
end to end through the study runner."""

from __future__ import annotations

import pytest

from scalelab.studies.runner import load_study_config, run_study

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MICRO = """
name = "assistant-micro"
sizes = ["3xs"]
context = 192
corpus_documents = 40
pm_documents = 60
pm_target = "arith"
pretrain_iters = 20
pretrain_batch = 4
top_k = 8
distill_steps = 8
distill_windows = 32
distill_window = 32
pm_pairs = 48
pm_min_steps = 2
pm_batch = 8
n_choice = 8
n_loss_windows = 8
n_samples = 4
ood_n = 16
threads = 1
workers = 1
device = "cpu"
"""


def test_plan_is_staged_and_names_finished_earlier_runs(tmp_path, micro):
    module, config = load_study_config("assistant", micro, ["sizes=['3xs','2xs']"])
    runs = {r.name: r for r in module.plan(config, tmp_path)}
    assert {r.kind for r in runs.values()} == {"lm", "distill", "pm"} and len(runs) == 10
    student = runs["distill-2xs"]
    assert student.cfg.model == "run:lm-2xs" and student.cfg.base_config_hash == runs["lm-2xs"].config_hash
    assert student.stage == 1 and runs["pm-distilled-2xs"].stage == 2
    assert runs["pm-distilled-2xs"].cfg.base_config_hash == student.config_hash
    assert "prompted" in runs["pm-prompted-3xs"].cfg.data and "prompted" not in runs["pm-plain-3xs"].cfg.data


@pytest.mark.slow
def test_micro_study_end_to_end(tmp_path, micro):
    out = run_study("assistant", micro, workdir=tmp_path / "w", progress=False)
    assert out["failed"] == 0 and out["ran"] == 5
    r = out["results"]["by_size"][0]
    assert set(r["pm"]) == {"plain", "prompted", "distilled"}
    assert r["distill"]["kl_after"] < r["distill"]["kl_before"]
    assert 0 <= r["choice"]["distilled"] <= 1 and r["tax"]["distilled"]["ci"][0] <= r["tax"]["distilled"]["mean"]
    assert "format choice" in out["summary"] and out["report"]
