"""The repeated-data study (Hernandez et al. 2022): analysis rules on planted curves and a planted store,
the peak rule's false-positive rate on simulated plateaus, the law inversion, the config and plan, the
copy corpus, and (slow) the study end to end through the study runner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalelab import laws
from scalelab.config import build_config
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.studies import repetition as rep
from scalelab.studies.repetition import rules as ra
from scalelab.studies.repetition.plan import design_points
from tests.conftest import tiny_base

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
    assert out["R_peak"] == 64 and out["interior"] and out["resolved"] and out["peak_share"] > 0.99
    assert out["R_range"] == [64.0] and out["band"] == [16.0, 64.0, 256.0, 1024.0]
    assert out["degradation_ci"][0] < 0.30 < out["degradation_ci"][1]
    assert out["margins"] == pytest.approx([0.18, 0.10])
    tie = ra.peak_degradation(R, [0.0, 0.2, 0.21, 0.0, 0.0], 0.02)
    assert 0.3 < tie["peak_share"] < 0.9 and tie["R_range"] == [16.0, 64.0]
    assert tie["interior"] and not tie["resolved"]  # inside the grid, but not above its left neighbour
    edge = ra.peak_degradation(R[::-1], [0.3, 0.2, 0.1, 0.05, 0.0], 0.01)  # unsorted input; peak at the largest R
    assert edge["R_peak"] == 1024 and not edge["interior"] and not edge["resolved"]


def _peak_rate(truth: np.ndarray, se: float, n: int, seed: int) -> tuple[float, float]:
    """(share resolved, share 'interior') over n noisy draws of planted degradations."""
    rng = np.random.default_rng(seed)
    outs = [ra.peak_degradation([4, 16, 64, 256, 1024], truth + se * rng.standard_normal(truth.size), se, z=3.0,
                                n_draws=50) for _ in range(n)]  # fmt: skip
    return float(np.mean([o["resolved"] for o in outs])), float(np.mean([o["interior"] for o in outs]))


@pytest.mark.parametrize("shape", ["flat", "rising", "shoulder"])
def test_no_peak_claimed_on_plateaus(shape):
    """On plateaus the argmax lies inside the grid about 60% of the time; the rule claims a peak in <= 5%."""
    truth = {"flat": [0.2] * 5, "rising": [0.0, 0.1, 0.2, 0.2, 0.2], "shoulder": [0.0, 0.2, 0.2, 0.2, 0.0]}[shape]
    resolved, interior = _peak_rate(np.array(truth), 0.01, 400, seed=1)
    assert resolved <= 0.05
    if shape == "flat":
        assert interior > 0.4  # the old rule ("interior") would have claimed double descent this often


def test_clear_peaks_are_detected():
    """A peak 6 standard errors of the difference above both neighbours is found in >= 95% of draws."""
    se = 0.01
    m = 6 * np.hypot(se, se)
    for truth in ([0.2, 0.2, 0.2 + m, 0.2, 0.2], [0.0, 0.2 + m, 0.2, 0.1, 0.0], [0.0, 0.05, 0.1, 0.1 + m, 0.1]):
        resolved, _ = _peak_rate(np.array(truth), se, 200, seed=2)
        assert resolved >= 0.95


def law(N):
    return 1.5 + 20.0 * np.asarray(N, dtype=float) ** -0.3


@pytest.mark.parametrize("method", ["parametric", "cases"])
def test_effective_size_recovers_planted_k(method):
    rng = np.random.default_rng(0)
    N = np.geomspace(1e4, 3e6, 6)
    fitted = ra.fit_baseline_law(N, law(N) + SIGMA * rng.standard_normal(N.size), SIGMA, n_boot=40, method=method)
    assert fitted.method == method and fitted.alpha == pytest.approx(0.3, abs=0.1)
    for k in (2.0, 4.0):
        out = fitted.effective_size(3e5, float(law(3e5 / k)), SIGMA)
        assert out["k"] == pytest.approx(k, rel=0.2)
        assert out["k_ci"][0] < k < out["k_ci"][1] and not out["extrapolated"]
    assert np.isinf(laws.invert_power_law(1.0, 1.5, 20.0, 0.3))  # below E: no finite size reaches it
    assert laws.invert_power_law(float(law(1e5)), 1.5, 20.0, 0.3) == pytest.approx(1e5)
    with pytest.raises(UserError, match="at least 3 model sizes"):
        ra.fit_baseline_law(N[:2], law(N[:2]), SIGMA)


def test_parametric_bootstrap_covers_the_planted_exponent():
    N = np.geomspace(1e4, 1e6, 4)
    hits = 0
    for seed in range(4):
        y = law(N) + SIGMA * np.random.default_rng(seed).standard_normal(N.size)
        boot = laws.parametric_bootstrap_power_law(N, y, SIGMA, n_boot=30, seed=seed)
        lo, hi = boot.ci["alpha"]
        hits += lo <= 0.3 <= hi
        assert boot.samples["alpha"].shape == (30,) and lo < hi
    assert hits >= 3  # a 95% interval: 4 of 4 expected, allow one miss
    with pytest.raises(UserError, match="positive noise"):
        laws.parametric_bootstrap_power_law(N, law(N), 0.0)


def _planted_store(tmp_path, k_true: float = 4.0, seeds=(0,)) -> RunStore:
    """A store as the sweep leaves it: 4 baseline sizes, 3 treated ones at R in {4, 16, 64}, peak at R = 16.

    Probes: the baselines score 0.6 on prefix matching and copy (later copies 1.5 nats below the first);
    the R = 16 runs lose half of the prefix-matching score and copy worse.
    """
    store = RunStore.in_workdir(tmp_path)
    rng = np.random.default_rng(1)
    steps = np.arange(1, 17) * 10
    extra = {4: 0.1, 16: 1.0, 64: 0.5}  # share of log(k_true) lost at each R
    for depth in (1, 2, 3, 4):
        N = 12288 * depth**3
        treatments = [(0.0, 1)] + ([(0.5, r) for r in extra] if depth < 4 else [])
        for (f, R), seed in ((t, s) for t in treatments for s in seeds):
            k = k_true ** extra[R] if f else 1.0
            final = float(law(N / k)) + 0.002 * rng.standard_normal()
            cfg = {"data": {"repeat_fraction": f, "repeat_epochs": R}, "model": {"size": f"L{depth}"},
                   "train": {"seed": seed, "eval_batches": 8, "final_eval_batches": 8}}
            rid = store.create_run(f"L{depth}-f{f}-R{R}-s{seed}", cfg, f"h{depth}{R}{seed}", group="planted",
                                   params=2 * N, params_nonembed=N)  # fmt: skip
            curve = final + 0.5 * ((steps / 160.0) ** -0.5 - 1.0) + SIGMA * rng.standard_normal(steps.size)
            curve[-1] = final
            damage = 0.5 if R == 16 else 0.0
            rows = [(int(s), int(s) * 512, 0.0, "val", "loss", float(v)) for s, v in zip(steps, curve)]
            for i, s in enumerate(steps):
                grow = min(1.0, i / 8)
                pm = 0.6 * grow * (1 - damage) + 0.01 * rng.standard_normal()
                later = 4.0 - 1.5 * grow * (1 - damage) + 0.02 * rng.standard_normal()
                rows += [(int(s), int(s) * 512, 0.0, "eval", "induction_max", pm),
                         (int(s), int(s) * 512, 0.0, "eval", "copy_loss_first", 4.0),
                         (int(s), int(s) * 512, 0.0, "eval", "copy_loss_later", later)]  # fmt: skip
            acct = {"unique_tokens": int(160 * 512 * (1 - f + f / R)) - 64, "subset_tokens": 64,
                    "repeated_fraction": f} if f else None  # fmt: skip
            store.log_metrics(rid, rows)
            store.update_run(rid, status="completed", tokens=160 * 512, final_val_loss=final,
                             summary={"repetition": acct})  # fmt: skip
    return store


def _config(**analysis) -> rep.Config:
    return build_config({"name": "planted", "analysis": {"bootstrap": 30} | analysis}, "test", cls=rep.Config)


def test_analyze_planted_store(tmp_path):
    store = _planted_store(tmp_path)
    res = rep.analyze(store, _config())
    assert res["n_completed"] == 13 and res["law"]["n_points"] == 4
    assert res["noise"]["sigma"] == pytest.approx(SIGMA, rel=0.6)
    assert [p["R_peak"] for p in res["peaks"]] == [16, 16, 16]
    for p in res["peaks"]:
        assert p["k_ci"][0] < 4.0 < p["k_ci"][1] and p["degradation"] > 0 and p["resolved"]
    assert all(c["curve"]["shape"] in ("none", "spike") for c in res["cells"])
    assert all(c["f_realised"] == 0.5 for c in res["cells"])
    assert not res["data_constrained"]["fitted"] and "not fitted" in res["data_constrained"]["reason"]
    pr = res["probes"]
    assert set(pr["metrics"]) == {"induction_max", "copy_loss_first", "copy_loss_later"} and len(pr["cells"]) == 9
    assert all(r["interval"].startswith("eval jitter") for r in pr["cells"])
    text = rep.summary(res)
    assert "a resolved peak (double descent across R)" in text and "performs like a model" in text
    assert "Induction heads formed in: L1, L2, L3, L4" in text and "R = 16 (in the degradation band" in text
    from scalelab.plain import to_plain

    json.dumps(to_plain(res), allow_nan=False)


@pytest.mark.slow
def test_figures_and_sections_of_a_planted_store(tmp_path):
    store = _planted_store(tmp_path, seeds=(0, 1))
    res = rep.analyze(store, _config())
    figs = rep.figures(res, store)
    assert len(figs) == 6  # loss vs R, curves, heatmap, law, probes vs R, probes over training
    titles = [s.title for s in rep.sections(res, store, _config())]
    assert titles[0] == "Summary" and "Mechanism probes over training" in titles and titles[-1] == "Runs"


def test_probe_damage_with_intervals_over_seeds(tmp_path):
    store = _planted_store(tmp_path, seeds=(0, 1, 2))
    res = rep.analyze(store, _config())
    pr = res["probes"]
    base = [b for b in pr["baselines"] if b["N"] == 12288][0]
    assert base["induction_max"] == pytest.approx(0.6, abs=0.03) and base["interval"] == "t over 3 seeds"
    misses = 0
    for row in pr["cells"]:
        assert row["pairs"] == 3 and row["interval"] == "t over 3 seeds"
        lo, hi = row["induction_max_delta_ci"]
        if row["R"] == 16:  # planted: prefix matching halved (-0.3), later copies 0.75 nats worse
            assert hi < 0 and lo < -0.3 < hi
            assert row["copy_loss_later_delta_ci"][0] > 0
        else:
            misses += not lo < 0 < hi
    assert misses <= 1  # six undamaged cells, 95% intervals
    assert res["cells"][0]["seeds"] == [0, 1, 2] and res["noise"]["replicate_dof"] > 0


def test_plateau_is_not_called_a_peak(tmp_path):
    """The same store with R = 16 and R = 64 equally damaged: the report says no peak resolved."""
    store = _planted_store(tmp_path, k_true=4.0)
    res = rep.analyze(store, _config())
    for p in res["peaks"]:  # move the R = 64 degradation onto R = 16's: a plateau of two
        p_cells = [c for c in res["cells"] if c["N"] == p["N"]]
        d = {c["R"]: c["degradation"] for c in p_cells}
        se = {c["R"]: c["degradation_se"] for c in p_cells}
        flat = ra.peak_degradation([4, 16, 64], [d[4], d[16], d[16] + 0.5 * se[16]], [se[4], se[16], se[64]])
        assert not flat["resolved"]
        res["peaks"] = [flat | {k: p[k] for k in p if k not in flat}]
        assert "no peak resolved" in rep.summary(res)
        break


def test_config_and_design(tmp_path):
    cfg = build_config({"design": {"sizes": ["L1", "L2"], "baseline_sizes": ["L3"], "repeat_epochs": [4, 64],
                                   "seeds": 2, "baseline_extra_seeds": 1, "baseline_token_fractions": [0.5]},
                        "base": {"train": {"iters": 40, "seed": 5}}}, "test", cls=rep.Config)  # fmt: skip
    pts = design_points(cfg)
    assert pts[0]["model.size"] == "L3" and len([p for p in pts if p["model.size"] == "L3"]) == 4  # 3 seeds + D/2
    treated = [p for p in pts if p["data.repeat_fraction"] > 0]
    assert len(treated) == 2 * 2 * 2 and {p["train.seed"] for p in treated} == {5, 6}
    assert {p["train.seed"] for p in pts if p["model.size"] == "L1" and not p["data.repeat_fraction"]} == {5, 6, 7}
    assert [p["train.iters"] for p in pts if "train.iters" in p] == [20, 20, 20]
    for bad, match in ((["design", "repeat_epochs", [1]], "repeat_epochs"), (["design", "sizez", ["L1"]], "sizez"),
                       (["design", "repeat_fractions", [1.5]], "repeat_fractions"), (["workers", 0], "workers")):
        raw: dict = {}
        node = raw
        for key in bad[:-2]:
            node = node.setdefault(key, {})
        node[bad[-2]] = bad[-1]
        with pytest.raises(UserError, match=match):
            build_config(raw, "test", cls=rep.Config)


@pytest.mark.slow
def test_presets_plan(tmp_path):
    from pathlib import Path

    from scalelab.config import read_toml

    for preset, n in (("quick", 19), ("mechanism", None)):
        path = Path(rep.__file__).with_name(f"{preset}.toml")
        if n is None and not path.exists():
            continue
        cfg = build_config(read_toml(path), preset, cls=rep.Config)
        runs = rep.plan(cfg, tmp_path)
        n = n or len(runs)
        assert len(runs) == n and len({r.config_hash for r in runs}) == n
        assert all(r.iters == cfg.base.train.iters for r in runs if "iters" not in str(r.axes))


def test_copy_corpus(tmp_path):
    from scalelab.data.repetition import write_copy_corpus

    a = write_copy_corpus(tmp_path / "a.jsonl", chars=30_000, span_share=0.5, seed=3, piece_chars=256)
    b = write_copy_corpus(tmp_path / "b.jsonl", chars=30_000, span_share=0.5, seed=3, piece_chars=256)
    assert a.read_text() == b.read_text()  # deterministic
    docs = [json.loads(line)["text"] for line in a.read_text().splitlines()]
    assert sum(map(len, docs)) >= 30_000
    spans = [d for d in docs if " " not in d and "\n" not in d]
    assert 0.3 < len(spans) / len(docs) < 0.7
    for d in spans:  # a span of 8-25 distinct characters, repeated 3-5 times
        n = next(n for n in range(8, 26) if d[:n] * (len(d) // n) == d and len(set(d[:n])) == n)
        assert 3 <= len(d) // n <= 5
    with pytest.raises(UserError, match="span_min"):
        write_copy_corpus(tmp_path / "c.jsonl", span_min=1)


MICRO = """
name = "rep-micro"
evals_per_run = 4
probes = true
[design]
sizes = ["L1", "L2"]
repeat_fractions = [0.5]
repeat_epochs = [2, 8]
[analysis]
bootstrap = 20
"""
MICRO += tiny_base(
    data={"max_documents": 60, "repeat_unit": "chunk"},
    train={"iters": 24, "batch_size": 8, "lr": 3e-3, "log_every": 5, "sampling": "sequential"},
)


@pytest.mark.slow
def test_study_end_to_end_through_the_runner_resumes_after_a_kill(tmp_path, micro):
    """Kill the study mid-way (SIGKILL, after 2 of 6 runs), run it again: only the unfinished runs train."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from scalelab.studies.runner import run_study

    work = tmp_path / "w"
    dry = run_study("repetition", micro, ["design.repeat_epochs=[2, 8]"], work, dry_run=True, progress=False)
    assert dry["totals"]["runs"] == 6 and dry["group"] == "rep-micro"
    code = (f"from scalelab.studies.runner import run_study; run_study('repetition', {micro!r}, "
            f"workdir={str(work)!r}, workers=1, progress=False)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ | {"PYTHONPATH": os.getcwd()})
    done_before = 0
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if (work / "scalelab.db").exists():
                done_before = len(RunStore.in_workdir(work).find_runs(group="rep-micro", status="completed"))
                if done_before >= 2:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len(RunStore.in_workdir(work).find_runs(group="rep-micro", status="completed"))
    assert 2 <= done_before < 6, "the study finished before it could be interrupted"
    res = run_study("repetition", micro, None, work, workers=1, progress=False)
    assert res["skipped"] == done_before and res["ran"] == 6 - done_before and res["completed"] == 6
    out = res["results"]
    assert len(out["cells"]) == 4 and len(out["peaks"]) == 2 and out["law"] is None  # 2 sizes: no law, said so
    assert any("baseline law" in n for n in out["notes"])
    assert {"induction_max", "copy_loss_later"} <= set(out["probes"]["metrics"])
    assert all(abs(c["f_realised"] - 0.5) < 0.005 for c in out["cells"])
    assert res["report"].endswith("rep-micro.html") and os.path.exists(res["report"])
    json.dumps(res["results"], allow_nan=False)
    again = run_study("repetition", micro, None, work, workers=1, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 6


def test_analysis_keeps_only_the_runs_of_the_current_plan(tmp_path):
    """A run of the same group under another config (an older preset, another --set) is left out, and said."""
    from scalelab.studies.repetition.analyze import _planned_rows
    from scalelab.studies.repetition.plan import plan

    config = _config()
    planned = plan(config, tmp_path)[:2]
    store = RunStore.in_workdir(tmp_path)
    for p in planned:
        store.create_run(p.name, p.cfg.to_dict(), p.config_hash, group="planted")
    store.create_run(planned[0].name, planned[0].cfg.to_dict(), "0ld0c0nf1gha5h00", group="planted")
    rows = store.find_runs(group="planted")
    kept, note = _planned_rows(rows, store, config)
    assert sorted(r["config_hash"] for r in kept) == sorted(p.config_hash for p in planned)
    assert note is not None and "1 run(s)" in note and "left out" in note
    stray = [r for r in rows if r["config_hash"] == "0ld0c0nf1gha5h00"]
    kept, note = _planned_rows(stray, store, config)
    assert kept == stray and "all 1 runs" in note
