"""The efficiency study (Hernandez & Brown 2020): plan, analysis on planted runs, bad targets, the
paper's table through `scalelab study efficiency --paper-table`, and (slow) a micro end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scalelab.cli.app import app
from scalelab.config import build_config
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies import efficiency as eff
from scalelab.studies.runner import run_study

BASE = {"data": {"source": "stdlib", "tokenizer": "byte"}, "model": {"block_size": 32},
        "train": {"batch_size": 4, "eval_batches": 2, "warmup_iters": 2}}  # fmt: skip
RECIPES = [{"name": "old", "date": "2019-01", "set": {"model.recipe": "gpt2"}},
           {"name": "new", "date": "2021-01", "set": {"model.recipe": "modern"}},
           {"name": "newer", "date": "2022-01", "set": {"model.recipe": "modern", "train.optimizer": "muon"}}]
SPEEDUP = {"old": 1.0, "new": 4.0, "newer": 8.0, "stuck": 1.0}


def _config(**kw) -> eff.Config:
    raw = {"name": "planted", "base": BASE, "recipes": RECIPES, "baseline": "old", "sizes": ["3xs", "2xs"],
           "seeds": 3, "iters": 40, "evals": 8, "bootstrap": 300} | kw  # fmt: skip
    return build_config(raw, "test", cls=eff.Config)


def _plant(tmp_path: Path, config: eff.Config, floor: dict | None = None) -> RunStore:
    """Runs of the plan with loss(C) = 2 + 3 (speedup * C / 1e9)^-0.4 (+0.3 at the small size), seed noise
    on the compute scale, evaluated at 60 log-spaced FLOPs; `floor` {recipe: loss it never goes below}."""
    store = RunStore.in_workdir(tmp_path)
    rng = np.random.default_rng(0)
    flops = np.geomspace(1e8, 1e12, 60)
    for p in eff.plan(config, tmp_path):
        r = p.axes["recipe"]
        scale = SPEEDUP[r] * math.exp(0.05 * rng.standard_normal())
        loss = 2.0 + 3.0 * (scale * flops / 1e9) ** -0.4 + (0.3 if p.axes["size"] == "3xs" else 0.0)
        loss = np.maximum(loss, (floor or {}).get(r, 0.0))
        rid = store.create_run(p.name, p.cfg.to_dict(), p.config_hash, group=config.name, params=p.params)
        store.log_metrics(rid, [(i, i, float(c), "val", "loss", float(v)) for i, (c, v) in enumerate(zip(flops, loss))])
        store.update_run(rid, status="completed", final_val_loss=float(loss[-1]))
    return store


def test_plan_every_recipe_size_and_seed_with_frequent_evaluations(tmp_path: Path) -> None:
    config = _config()
    runs = eff.plan(config, tmp_path)
    assert len(runs) == 3 * 2 * 3 and len({r.name for r in runs}) == 18 and len({r.config_hash for r in runs}) == 18
    newer = [r for r in runs if r.axes["recipe"] == "newer"]
    assert {r.cfg.train.optimizer for r in newer} == {"muon"} and {r.cfg.model.recipe for r in newer} == {"modern"}
    assert {r.cfg.train.eval_every for r in runs} == {5} and {r.cfg.train.iters for r in runs} == {40}
    assert sorted({r.cfg.train.seed for r in runs}) == [1337, 1338, 1339]
    with pytest.raises(UserError, match="baseline 'gpt2' is not one of the recipes"):
        _config(baseline="gpt2")
    with pytest.raises(UserError, match="unique"):
        _config(recipes=[RECIPES[0], RECIPES[0]])
    with pytest.raises(UserError, match="YYYY-MM"):
        _config(recipes=[{"name": "old", "date": "last year"}])


def test_multipliers_and_doubling_time_on_planted_runs(tmp_path: Path) -> None:
    config = _config(target_loss=2.6)
    res = eff.analyze(_plant(tmp_path, config), config)
    assert res["best_size"] == {"old": "2xs", "new": "2xs", "newer": "2xs"}
    for r, speed in SPEEDUP.items():
        if r in res["multipliers"]:
            value, lo, hi = res["multipliers"][r]
            assert value == pytest.approx(speed, rel=0.2) and lo <= value <= hi, (r, res["multipliers"][r])
    assert res["multipliers"]["newer"][1] > 4.0  # seeds are 5% apart: newer is clearly better than new
    rows = {(t["recipe"], t["size"]): t for t in res["compute_to_target"]}
    assert rows[("old", "3xs")]["compute"] > rows[("old", "2xs")]["compute"] and rows[("old", "2xs")]["reached"] == 3
    months, lo, hi = res["doubling_time_months"]  # 8x over 3 years: 3 doublings in 36 months
    assert 9.0 < months < 15.0 and lo <= months
    assert "old" in res["summary"] and res["target_rule"].startswith("given")


def test_target_from_the_baseline_is_its_final_loss_and_every_baseline_seed_reaches_it(tmp_path: Path) -> None:
    config = _config()
    res = eff.analyze(_plant(tmp_path, config), config)
    finals = [c["loss"][-1] for c in res["curves"] if c["recipe"] == "old" and c["size"] == "2xs"]
    assert res["target_loss"] == max(finals) and "baseline's final loss" in res["target_rule"]
    assert all(math.isfinite(c["compute_to_target"]) for c in res["curves"] if c["recipe"] == "old"
               and c["size"] == "2xs")  # fmt: skip
    assert res["multipliers"]["new"][0] > 2.0


def test_unreachable_target_names_the_recipes_and_by_how_much(tmp_path: Path) -> None:
    config = _config(recipes=[*RECIPES[:2], {"name": "stuck", "set": {"train.lr": 1e-4}}], target_loss=2.6)
    store = _plant(tmp_path, config, floor={"stuck": 2.75})
    res = eff.analyze(store, config)
    assert set(res["unreached"]) == {"stuck"} and res["unreached"]["stuck"]["gap"] == pytest.approx(0.15)
    assert res["multipliers"]["stuck"][0] is None or math.isnan(res["multipliers"]["stuck"][0])
    assert "never reached by: stuck (best 2.7500 at size" in res["summary"] and "+0.1500 above it)" in res["summary"]
    low = _config(recipes=config.model_dump()["recipes"], target_loss=1.5)
    with pytest.raises(UserError, match=r"never reached by: old .*new .*stuck .*--set target_loss"):
        eff.analyze(store, low)


def test_paper_table_through_the_cli_and_other_studies_refuse_it(tmp_path: Path) -> None:
    cli = CliRunner()
    result = cli.invoke(app, ["study", "efficiency", "--paper-table", "--json", "--workdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    months, lo, hi = out["results"]["doubling_time_months"]
    assert 15.0 <= months <= 17.0 and lo < months < hi and round(out["results"]["factor"]) in (44, 45)
    assert out["ran"] == 0 and out["group"] == "efficiency-quick-paper-table" and Path(out["report"]).is_file()
    bad = cli.invoke(app, ["study", "scaling", "--paper-table", "--workdir", str(tmp_path)])
    assert isinstance(bad.exception, UserError) and "no built-in paper table" in str(bad.exception)


@pytest.mark.slow
def test_micro_study_end_to_end(tmp_path: Path) -> None:
    """Two recipes x one size x two seeds of 24 steps, through the runner; then reused by config hash."""
    sets = ["name=eff-micro", "sizes=['3xs']", "seeds=2", "iters=24", "evals=6", "bootstrap=100",
            "recipes=[{name='gpt2', date='2019-02', set={'model.recipe'='gpt2'}}, "
            "{name='modern', set={'model.recipe'='modern', 'train.lr'=3e-3}}]",
            "base.model.block_size=32", "base.train.batch_size=8", "base.train.eval_batches=2",
            "base.train.warmup_iters=2", "base.train.threads=1"]  # fmt: skip
    res = run_study("efficiency", "quick", sets, tmp_path, workers=2, progress=False)
    assert res["failed"] == 0 and res["ran"] == 4
    r = res["results"]
    assert set(r["multipliers"]) == {"gpt2", "modern"} and r["multipliers"]["gpt2"][0] == 1.0
    assert len(r["compute_to_target"]) == 2 and all(len(c["flops"]) >= 6 for c in r["curves"])
    assert Path(res["report"]).is_file()
    again = run_study("efficiency", "quick", sets, tmp_path, workers=1, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 4 and again["results"]["target_loss"] == r["target_loss"]
