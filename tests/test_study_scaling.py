"""The scaling study package: plan, analyze on a tiny synthetic store, the forecast keys, resume."""

from pathlib import Path

import numpy as np
import pytest

from scalelab.store import RunStore
from scalelab.studies.runner import load_study_config, run_study
from scalelab.studies.scaling import analyze, summary
from scalelab.studies.scaling.config import Analysis, Config
from tests.conftest import tiny_base

MICRO = """
name = "scaling-tiny"
workers = 1
points = [
  { "model.n_layer" = 2, "model.n_head" = 2, "model.n_embd" = 64 },
  { "model.n_layer" = 1, "model.n_head" = 1, "model.n_embd" = 16 },
  { "model.n_layer" = 1, "model.n_head" = 1, "model.n_embd" = 24 },
  { "model.n_layer" = 1, "model.n_head" = 2, "model.n_embd" = 32 },
  { "model.n_layer" = 2, "model.n_head" = 1, "model.n_embd" = 16 },
]
[budget]
mode = "fixed"
[analysis]
bootstrap = 20
"""
MICRO += tiny_base(data={"max_documents": 60}, train={"iters": 12, "batch_size": 4, "log_every": 5})


def test_presets_plan_as_designed(tmp_path: Path) -> None:
    _, demo = load_study_config("scaling", "demo")
    runs = __import__("scalelab.studies.scaling", fromlist=["plan"]).plan(demo, tmp_path)
    flops = sorted(r.flops for r in runs)
    assert len({r.tokens for r in runs}) == 1  # L(N) at one D
    assert flops[-1] >= 4 * flops[-2]  # the held-out run has >= 4x the compute of any other
    assert sum(f <= flops[-1] / 4 for f in flops) >= 4
    _, quick = load_study_config("scaling", "quick", ["seeds=2"])
    runs = __import__("scalelab.studies.scaling", fromlist=["plan"]).plan(quick, tmp_path)
    assert len(runs) == 24 and len({r.name for r in runs}) == 24 and len({r.config_hash for r in runs}) == 24


def _fake_store(tmp_path: Path, seeds: int = 1, noise: float = 0.003) -> RunStore:
    """Runs at a fixed D whose final losses follow 1.5 + 8 N^-0.2 (times seed noise), with curves."""
    store = RunStore.in_workdir(tmp_path)
    rng = np.random.default_rng(0)
    d = 1e6
    for n in (1e4, 2e4, 4e4, 8e4, 1.6e5, 1.3e6):
        for s in range(seeds):
            fpt = 6 * n + 1e5
            rid = store.create_run(f"n{n:g}-s{s}", {"n": n, "s": s}, f"h{n:g}{s}", group="g", params=int(n * 1.2),
                                   params_nonembed=int(n), flops_per_token=int(fpt))
            final = (1.5 + 8 * n**-0.2) * np.exp(noise * rng.standard_normal())
            steps = np.arange(1, 9)
            toks = d * steps / 8
            rows = [(int(st), int(t), float(fpt * t), "val", "loss", float(final + 2 / st - 2 / 8))
                    for st, t in zip(steps, toks)]
            store.log_metrics(rid, rows)
            store.update_run(rid, status="completed", tokens=int(d), flops=fpt * d, final_val_loss=float(final))
    return store


def test_analyze_fits_states_n_and_forecasts_with_a_prediction_interval(tmp_path: Path) -> None:
    store = _fake_store(tmp_path)
    res = analyze(store, Config(name="g", analysis=Analysis(bootstrap=20)))
    fits = res["fits"]
    assert fits["power_N"]["N"] == "nonembed" and "alpha" in fits["power_N"]["ci"]
    assert "frontier_flops" in fits["compute_frontier"]
    fc = fits["forecast"]
    assert len(fc["rel_error"]) == len(fc["rel_error_ci"]) == len(fc["prediction_interval"]) == 1
    assert fc["compute_ratio"] >= 4 and fc["n_train"] == 5 and fc["noise_source"] == "residuals"
    assert abs(fc["rel_error"][0]) < 0.03 and fc["covered"][0]
    text = summary(res)
    assert "prediction interval" in text and "One seed per point" in text  # the noise floor is curve jitter


def test_replicate_seeds_measure_the_noise_floor(tmp_path: Path) -> None:
    res = analyze(_fake_store(tmp_path, seeds=2, noise=0.01), Config(name="g", analysis=Analysis(bootstrap=20)))
    assert res["noise"]["source"] == "seeds" and 0.002 < res["noise"]["sd_log_loss"] < 0.03
    assert res["fits"]["forecast"]["noise_source"] == "given"
    assert "spread of replicate runs" in summary(res)


def test_too_few_runs_is_a_note_not_a_crash(tmp_path: Path) -> None:
    store = RunStore.in_workdir(tmp_path)
    res = analyze(store, Config(name="nothing"))
    assert res["fits"] == {} and "at least 4" in res["notes"][0]


@pytest.mark.slow
def test_study_runs_then_resumes_without_repeating(tmp_path: Path, micro: str) -> None:
    first = run_study("scaling", micro, workdir=tmp_path / "w", progress=False)
    assert first["ran"] == 5 and first["completed"] == 5 and Path(first["report"]).exists()
    fits = first["results"]["fits"]
    assert "power_N" in fits and "forecast" in fits and "rel_error_ci" in fits["forecast"]
    again = run_study("scaling", micro, workdir=tmp_path / "w", progress=False)
    assert again["ran"] == 0 and again["skipped"] == 5
    assert again["results"]["fits"]["forecast"]["rel_error"] == fits["forecast"]["rel_error"]


def test_each_law_uses_its_papers_n_by_default() -> None:
    # Issue 15 (IsoFLOP tokens): Kaplan's L(N) on non-embedding N, Hoffmann's L(N, D) on total N.
    a = Config().analysis
    assert (a.power_params, a.chinchilla_params) == ("nonembed", "total")
    _, cfg = load_study_config("scaling", "quick", ["analysis.chinchilla_params=nonembed"])
    assert cfg.analysis.chinchilla_params == "nonembed"


@pytest.mark.parametrize("law", ["frontier", "chinchilla"])
def test_other_forecast_laws_run_or_say_why_not(tmp_path: Path, law: str) -> None:
    res = analyze(_fake_store(tmp_path), Config(name="g", analysis=Analysis(bootstrap=0, forecast_law=law)))
    fc = res["fits"].get("forecast")
    if law == "frontier":
        assert fc["law"].startswith("frontier") and len(fc["prediction_interval"]) == 1
    else:  # one D for every run: L(N, D) cannot be identified, and the notes say so
        assert fc is None and any("forecast not fitted" in n for n in res["notes"])
