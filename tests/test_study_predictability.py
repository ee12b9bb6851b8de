"""The predictability study: its plan and config checks, the analysis on planted runs, and a micro study
end to end through the study runner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scalelab.errors import UserError
from scalelab.studies.runner import load_study_config, run_study
from tests.conftest import tiny_base

MICRO = """
name = "predict-micro"
evals_per_run = 2
warmup_fraction = 0.1
points = [
  { "model.n_layer" = 1, "model.n_head" = 1, "model.n_embd" = 16, "train.iters" = 12 },
  { "model.n_layer" = 1, "model.n_head" = 2, "model.n_embd" = 32, "train.iters" = 16 },
  { "model.n_layer" = 2, "model.n_head" = 2, "model.n_embd" = 32, "train.iters" = 20 },
  { "model.n_layer" = 2, "model.n_head" = 2, "model.n_embd" = 48, "train.iters" = 24 },
]
"""
MICRO += tiny_base(
    data={"tokenizer": "byte", "max_documents": 40, "tasks": {"add1": 0.3}, "eval_tasks": ["add1", "brackets"]},
    train={"batch_size": 8, "optimizer": "adamw", "lr": 3e-3, "log_every": 10, "seed": 0},
)


def test_shipped_presets_plan_a_ladder_with_a_task_mix(tmp_path):
    for preset in ("quick", "full"):
        module, config = load_study_config("predictability", preset)
        data = config.base["data"]
        assert data["tasks"] and data["eval_tasks"]
        assert config.name.startswith("predictability-")
    module, config = load_study_config("predictability", "quick")
    runs = module.plan(config, tmp_path)
    assert len(runs) >= 4 and len({r.flops for r in runs}) == len(runs)
    assert all(r.cfg.data.eval_tasks == config.base["data"]["eval_tasks"] for r in runs)


def test_empty_task_set_is_a_clear_error(tmp_path, micro):
    module, config = load_study_config("predictability", micro, ["base.data.eval_tasks=[]"])
    with pytest.raises(UserError, match="task set is empty"):
        module.plan(config, tmp_path)
    module, config = load_study_config("predictability", micro, ["base.data.tasks={add7=0.1}"])
    with pytest.raises(UserError, match="unknown task"):
        module.plan(config, tmp_path)


@pytest.mark.slow
def test_micro_study_end_to_end(tmp_path, micro, one_torch_thread):
    res = run_study("predictability", micro, workdir=tmp_path / "w", progress=False)
    assert res["ran"] == 4 and res["completed"] == 4
    out = res["results"]
    assert set(out["abrupt"]) == {"add1", "brackets"} and all(isinstance(v, bool) for v in out["abrupt"].values())
    assert math.isfinite(out["loss_forecast_error"]) and out["loss_forecast_error"] >= 0
    assert set(out["task_forecast_errors"]) == {"add1", "brackets"}
    lo, hi = out["forecast"]["loss"]["runs"][0]["interval"]  # a 95% prediction interval beside every forecast
    assert lo < out["forecast"]["loss"]["runs"][0]["predicted"] < hi
    assert 0 <= out["forecast"]["tasks"]["add1"][0]["exact_interval"][0] <= 1
    row = out["sizes"][-1]
    assert 0 <= row["tasks"]["add1"]["exact"] <= 1 and row["tasks"]["add1"]["logprob"] < 0
    curve = out["task_curves"]["add1"][row["run_id"]]["exact"]
    assert len(curve) >= 2  # scored at every evaluation during training, not only at the end
    assert Path(res["report"]).exists()
    again = run_study("predictability", micro, workdir=tmp_path / "w", progress=False)
    assert again["ran"] == 0 and again["results"]["loss_forecast_error"] == out["loss_forecast_error"]
