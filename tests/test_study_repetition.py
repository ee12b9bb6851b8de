"""The repeated-data study (Hernandez et al. 2022): analysis rules on planted curves and a planted store,
the spec's [study] design, and one end-to-end run of `run_study` on a micro spec."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies import repetition as rep
from scalelab.studies import repetition_analysis as ra

SIGMA = 0.005


def _curve(n: int = 24, seed: int = 0, sigma: float = SIGMA) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(1, n + 1) * 20
    smooth = 1.8 + 2.0 * (steps / 20.0) ** -0.7
    return steps, smooth + sigma * np.random.default_rng(seed).standard_normal(n)


def test_curve_noise_recovers_sigma():
    curves = [_curve(seed=s)[1] for s in range(6)]
    assert ra.curve_noise(curves) == pytest.approx(SIGMA, rel=0.35)
    assert np.isnan(ra.curve_noise([np.array([1.0, 0.9])]))


def test_detect_rise_finds_planted_double_descent_and_plain_rise():
    steps, loss = _curve()
    thr = 3 * SIGMA * np.sqrt(2)
    bump = 0.25 * np.exp(-0.5 * ((steps - 260) / 50.0) ** 2)  # about 0.08 above the minimum before it
    out = ra.detect_rise(steps, loss + bump, thr)
    assert out["shape"] == "double descent" and 180 <= out["peak_step"] <= 300
    assert out["rise"] > thr and out["fall"] > thr and out["min_step"] < out["peak_step"]
    ramp = np.clip((steps - 300) / 100.0, 0, None) * 0.1  # rises and never comes back
    assert ra.detect_rise(steps, loss + ramp, thr)["shape"] == "rise"


def test_detect_rise_ignores_noise_and_single_spikes():
    thr = 3 * SIGMA * np.sqrt(2)
    shapes = [ra.detect_rise(*_curve(seed=s), thr)["shape"] for s in range(200)]
    assert shapes.count("rise") + shapes.count("double descent") == 0
    steps, loss = _curve(seed=1)
    small = 0.5 * thr * np.exp(-0.5 * ((steps - 240) / 50.0) ** 2)  # a real bump, but below the threshold
    assert ra.detect_rise(steps, loss + small, thr)["shape"] == "none"
    spiked = loss.copy()
    spiked[12] += 0.2  # one evaluation: an optimiser instability, not a rise
    out = ra.detect_rise(steps, spiked, thr)
    assert out["shape"] == "spike" and out["spikes"] == 1


def test_peak_degradation():
    R = [4, 16, 64, 256, 1024]
    out = ra.peak_degradation(R, [0.005, 0.12, 0.30, 0.2, 0.08], 0.01)
    assert out["R_peak"] == 64 and out["interior"] and out["peak_share"] > 0.99 and out["R_range"] == [64.0]
    assert out["band"] == [16.0, 64.0, 256.0, 1024.0]
    assert out["degradation_ci"][0] < 0.30 < out["degradation_ci"][1]
    tie = ra.peak_degradation(R, [0.0, 0.2, 0.21, 0.0, 0.0], 0.02)
    assert 0.3 < tie["peak_share"] < 0.9 and tie["R_range"] == [16.0, 64.0]
    edge = ra.peak_degradation(R[::-1], [0.3, 0.2, 0.1, 0.05, 0.0], 0.01)  # unsorted input; peak at the largest R
    assert edge["R_peak"] == 1024 and not edge["interior"]


def law(N):
    return 1.5 + 20.0 * np.asarray(N, dtype=float) ** -0.3


@pytest.mark.parametrize("method", ["parametric", "cases"])
def test_effective_size_recovers_planted_k(method):
    rng = np.random.default_rng(0)
    N = np.geomspace(1e4, 3e6, 6)
    fitted = ra.fit_baseline_law(N, law(N) + SIGMA * rng.standard_normal(N.size), SIGMA, n_boot=100, method=method)
    assert fitted.method == method and fitted.alpha == pytest.approx(0.3, abs=0.1)
    for k in (2.0, 4.0):
        out = ra.effective_size(3e5, float(law(3e5 / k)), SIGMA, fitted)
        assert out["k"] == pytest.approx(k, rel=0.2)
        assert out["k_ci"][0] < k < out["k_ci"][1] and not out["extrapolated"]
    assert np.isinf(ra.invert_power_law(1.0, 1.5, 20.0, 0.3))  # below E: no finite size reaches it
    with pytest.raises(UserError, match="at least 3 model sizes"):
        ra.fit_baseline_law(N[:2], law(N[:2]), SIGMA)


def _planted_store(tmp_path, k_true: float = 4.0) -> RunStore:
    """A store as the sweep leaves it: 4 baseline sizes, 3 treated ones at R in {4, 16, 64}, peak at R = 16."""
    store = RunStore.in_workdir(tmp_path)
    rng = np.random.default_rng(1)
    steps = np.arange(1, 17) * 10
    extra = {4: 0.1, 16: 1.0, 64: 0.5}  # share of log(k_true) lost at each R
    for depth in (1, 2, 3, 4):
        N = 12288 * depth**3
        treatments = [(0.0, 1)] + ([(0.5, r) for r in extra] if depth < 4 else [])
        for f, R in treatments:
            k = k_true ** extra[R] if f else 1.0
            final = float(law(N / k))
            cfg = {"data": {"repeat_fraction": f, "repeat_epochs": R}, "model": {"size": f"L{depth}"},
                   "train": {"seed": 0, "eval_batches": 8, "final_eval_batches": 8}}
            rid = store.create_run(f"L{depth}-f{f}-R{R}", cfg, f"h{depth}{R}", group="planted", params=2 * N,
                                   params_nonembed=N)
            curve = final + 0.5 * ((steps / 160.0) ** -0.5 - 1.0) + SIGMA * rng.standard_normal(steps.size)
            curve[-1] = final
            rows = [(int(s), int(s) * 512, 0.0, "val", "loss", float(v)) for s, v in zip(steps, curve)]
            rows += [(int(s), int(s) * 512, 0.0, "eval", "induction_max", 0.05 + 0.001 * i)
                     for i, s in enumerate(steps)]
            acct = {"unique_tokens": int(160 * 512 * (1 - f + f / R)) - 64, "subset_tokens": 64} if f else None
            store.log_metrics(rid, rows)
            store.update_run(rid, status="completed", tokens=160 * 512, final_val_loss=final,
                             summary={"repetition": acct})  # fmt: skip
    return store


def test_analyze_planted_store(tmp_path):
    store = _planted_store(tmp_path)
    res = rep.analyze(store, "planted", rep.StudyConfig(), n_boot=60)
    assert res["n_completed"] == 13 and res["law"]["n_points"] == 4
    assert res["noise"]["sigma"] == pytest.approx(SIGMA, rel=0.6)
    assert [p["R_peak"] for p in res["peaks"]] == [16, 16, 16]
    for p in res["peaks"]:
        assert p["k_ci"][0] < 4.0 < p["k_ci"][1] and p["degradation"] > 0 and p["interior"]
    assert all(c["curve"]["shape"] in ("none", "spike") for c in res["cells"])
    assert not res["data_constrained"]["fitted"] and "not fitted" in res["data_constrained"]["reason"]
    assert res["probes"]["metrics"] == ["induction_max"] and len(res["probes"]["cells"]) == 9
    text = rep.summary_text(res)
    assert "peaks at R = 16" in text and "performs like a model" in text
    json.dumps(rep._plain(res), allow_nan=False)
    path = rep.write(res, store, tmp_path / "reports" / "planted.html")
    assert path.exists() and all(r["id"] in path.read_text() for r in res["runs"])


MICRO = """
name = "rep-micro"
evals_per_run = 4
probes = true
[study]
sizes = ["L1", "L2"]
repeat_fractions = [0.5]
repeat_epochs = [2, 8]
[base.data]
source = "stdlib"
max_documents = 60
repeat_unit = "chunk"
[base.model]
recipe = "modern"
block_size = 32
[base.train]
iters = 24
batch_size = 8
eval_batches = 2
lr = 3e-3
log_every = 5
device = "cpu"
threads = 1
sampling = "sequential"
[budget]
mode = "fixed"
[analysis]
bootstrap = 20
"""

KEYS = {"summary", "report", "sweep", "preset", "wall_s", "noise", "cells", "peaks", "law", "data_constrained",
        "probes", "runs", "notes"}  # fmt: skip


def test_run_study_micro_end_to_end_and_cli_reuses_runs(tmp_path):
    spec = tmp_path / "repetition_micro.toml"
    spec.write_text(MICRO)
    res = rep.run_study(spec=spec, workdir=tmp_path / "w", progress=False)
    assert KEYS <= set(res) and res["sweep"]["completed"] == 6 and res["sweep"]["ran"] == 6
    assert res["report"] == str(tmp_path / "w" / "reports" / "repetition-micro.html")
    assert (tmp_path / "w" / "reports" / "repetition-micro.html").exists()
    assert len(res["cells"]) == 4 and len(res["peaks"]) == 2 and res["law"] is None  # 2 sizes: no law, said so
    assert any("baseline law" in n for n in res["notes"])
    assert {"induction_max", "copy_loss_later"} <= set(res["probes"]["metrics"])
    json.dumps(res, allow_nan=False)
    cmd = [sys.executable, "-m", "scalelab", "study", "repetition", "--spec", str(spec), "--workdir",
           str(tmp_path / "w"), "--json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    again = json.loads(out.stdout.splitlines()[-1])
    assert again["sweep"]["ran"] == 0 and again["sweep"]["skipped"] == 6
    assert again["peaks"] == res["peaks"]


def test_study_spec_errors(tmp_path):
    assert rep.load_study("quick").spec.points  # the preset's design expands into points
    with pytest.raises(UserError, match="unknown preset"):
        rep.load_study("huge")
    bad = tmp_path / "bad.toml"
    bad.write_text(MICRO.replace("[study]", "[study]\nsizez = 1"))
    with pytest.raises(UserError, match="sizez"):
        rep.load_study(spec=bad)
    both = tmp_path / "both.toml"
    both.write_text(MICRO.replace("[base.data]", '[grid]\n"model.size" = ["L1"]\n[base.data]'))
    with pytest.raises(UserError, match="not both"):
        rep.load_study(spec=both)
    plain = tmp_path / "plain.toml"
    no_design = MICRO.replace('sizes = ["L1", "L2"]', "")
    plain.write_text(no_design.replace("[study]", '[grid]\n"model.size" = ["L1"]\n[study]'))
    with pytest.raises(UserError, match="with and without repetition"):
        rep.plan(rep.load_study(spec=plain), tmp_path)
