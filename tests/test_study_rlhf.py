"""The rlhf study: plan shape, and the analysis on planted runs in a store (fits recover planted numbers,
runs are matched to the plan by name and config hash)."""

import json
import math
import time

import pytest

from scalelab.store import RunStore
from scalelab.studies.rlhf import Config, analyze, plan, summary

A, B = 0.2, 1.5  # planted proxy reward = A + B sqrt(KL)
ALPHA, BETA = 0.4, 0.1  # planted gold gain = d (ALPHA - BETA d); peak at d = 2, KL = 4
GOLD0 = 0.6
KLS = [0.0, 0.5, 1.0, 2.0, 4.0, 6.0, 9.0, 12.0]


def _config(**kw) -> Config:
    base = dict(name="rlhf-test", policy_sizes=["3xs"], pm_sizes=["3xs"], algos=["ppo", "best-of-n"],
                data_amounts=[], online_rounds=2, n_labels=64, steps=8, n_samples_shown=0)  # fmt: skip
    return Config(**{**base, **kw})


def _eval_rows(p, beta: float = BETA) -> list[tuple]:
    rows = []
    for i, kl in enumerate(KLS):
        d = math.sqrt(kl)
        reward = A + B * d
        test = A + B * min(d, 1.0)  # the test PM follows the train PM up to sqrt(KL) = 1, then stays flat
        gold = GOLD0 + d * (ALPHA - beta * d)
        if p.axes.get("round") == 1:
            gold += 0.05  # online ends higher than offline
        for name, v in (("reward", reward), ("kl", kl), ("gold", gold), ("pm_0", test)):
            rows.append((i, 0, 0.0, "eval", name, v))
    return rows


def _plant(store: RunStore, config: Config, workdir, eval_rows=_eval_rows) -> dict:
    ids = {}
    for p in plan(config, workdir):
        run_id = store.create_run(p.name, p.cfg.to_dict(), p.config_hash, group=config.name)
        summary = {"accuracy": 0.8, "accuracy_ci": [0.7, 0.9], "n_comparisons": 30} if p.kind == "gold-pm" else {}
        store.update_run(run_id, status="completed", summary=json.dumps(summary), finished_at=time.time())
        if p.kind == "rl":
            store.log_metrics(run_id, eval_rows(p))
        ids[p.name] = run_id
    return ids


def test_plan_stages_kinds_and_equal_labels(tmp_path):
    config = _config(policy_sizes=["3xs", "2xs"], pm_sizes=["3xs", "2xs"], data_amounts=[16],
                     algos=["ppo", "rloo", "dpo", "best-of-n"])  # fmt: skip
    runs = {r.name: r for r in plan(config, tmp_path)}
    assert {r.kind for r in runs.values()} == {"lm", "gold-pm", "rl"}
    assert runs["lm-2xs"].stage == 0 and runs["pm-2xs-train"].stage == 1 and runs["ppo-p2xs-pm-2xs-train"].stage == 2
    assert runs["pm-online-r1"].stage == 3 and runs["ppo-online-r1"].stage == 4
    train, test = runs["pm-2xs-train"].cfg, runs["pm-2xs-test"].cfg
    assert train.sources[0].half == 0 and test.sources[0].half == 1
    assert train.sources[0].policy == test.sources[0].policy == "run:lm-2xs"
    # equal labels: the online rounds together query the labeller as often as the offline train PM
    assert runs["pm-online-r1"].axes["labels"] == runs["pm-2xs-train"].axes["labels"] == config.n_labels
    assert runs["pm-online-r0"].axes["labels"] == config.n_labels // 2
    ppo = runs["ppo-p2xs-pm-2xs-train"].cfg
    assert ppo.pm == "run:pm-2xs-train" and ppo.eval_pms == ["run:pm-2xs-test"] and ppo.gold == "spacing"
    assert ppo.run_hashes["run:pm-2xs-train"] == runs["pm-2xs-train"].config_hash
    assert runs["ppo-online-r1"].cfg.policy == "run:ppo-online-r0"
    assert sum(runs[f"ppo-online-r{r}"].cfg.steps for r in (0, 1)) == ppo.steps
    assert [r.config_hash for r in plan(config, tmp_path)] == [r.config_hash for r in runs.values()]  # deterministic


def test_bad_settings_are_user_errors_naming_the_key():
    from scalelab.errors import UserError
    from scalelab.studies.runner import load_study_config

    with pytest.raises(UserError, match="gold"):
        load_study_config("rlhf", "quick", ["gold='nope'"])
    with pytest.raises(UserError, match="rloo_k"):
        load_study_config("rlhf", "quick", ["batch_size=10"])
    with pytest.raises(UserError, match="stepz"):
        load_study_config("rlhf", "quick", ["stepz=3"])


def test_analysis_recovers_planted_fits_and_matches_runs_by_config_hash(tmp_path):
    config = _config()
    store = RunStore.in_workdir(tmp_path)
    ids = _plant(store, config, tmp_path)
    # decoys: a run of a planned name with another config, and an unplanned run in the group
    decoy = store.create_run("ppo-p3xs-pm-3xs-train", {"x": 1}, "not-the-plan", group=config.name)
    store.update_run(decoy, status="completed")
    store.log_metrics(decoy, [(0, 0, 0.0, "eval", "reward", 99.0), (0, 0, 0.0, "eval", "kl", 1.0)])
    other = store.create_run("something-else", {}, "h", group=config.name)
    store.update_run(other, status="completed")
    results = analyze(store, config)
    assert results["missing"] == []
    assert {r["run_id"] for r in results["runs"]} <= set(ids.values())
    head = results["sqrt_kl_fit"]
    assert head["a"] == pytest.approx(A, abs=1e-6) and head["b"] == pytest.approx(B, abs=1e-6)
    assert head["r2"] == pytest.approx(1.0) and head["b_ci"][0] > 0 and head["run_id"] == ids["ppo-p3xs-pm-3xs-train"]
    g = results["gold_vs_proxy"]["ppo"]
    assert g["gold_fit"]["alpha"] == pytest.approx(ALPHA, abs=1e-6)
    assert g["gold_fit"]["beta"] == pytest.approx(BETA, abs=1e-6)
    assert g["peak_kl"] == pytest.approx((ALPHA / (2 * BETA)) ** 2)
    assert set(results["gold_vs_proxy"]) == {"ppo", "best-of-n"}
    sep = results["train_pm_vs_test_pm"]["separation"]
    # the gap B (d - 1) exceeds 0.25 x the largest train gain B sqrt(12) from d = 1 + 0.25 sqrt(12) = 1.87 on
    assert sep["kl"] == 4.0
    ov = results["online_vs_offline"]
    assert [r["round"] for r in ov["rounds"]] == [0, 1]
    assert ov["gain_online_minus_offline"] == pytest.approx(0.05)
    assert ov["rounds"][-1]["labels_cumulative"] == ov["offline"]["labels"] == config.n_labels
    assert ov["rounds"][-1]["comparisons"] == ov["offline"]["comparisons"] == 30  # planted summaries
    assert "b = 1.500" in summary(results) and "30 vs 30 comparisons kept" in summary(results)
    json.dumps(results)  # plain data


def test_gold_peak_per_proxy_pm_smaller_pm_and_fewer_labels_peak_sooner(tmp_path):
    config = _config(pm_sizes=["3xs", "2xs"], data_amounts=[16], algos=["ppo"], online_rounds=0)
    store = RunStore.in_workdir(tmp_path)

    def rows(p):  # planted: the small PM's and the 16-label PM's gold peak at KL 1, the main PM's at KL 4
        return _eval_rows(p, beta=BETA if p.axes.get("pm") == "pm-2xs-train" else 2 * BETA)

    _plant(store, config, tmp_path, rows)
    results = analyze(store, config)
    peaks = {r["pm"]: r for r in results["gold_peak_by_run"] if r["policy_size"] == "3xs"}
    assert set(peaks) == {"pm-2xs-train", "pm-3xs-train", "pm-2xs-n16"}
    assert peaks["pm-2xs-train"]["peak_kl"] == pytest.approx(4.0)
    assert peaks["pm-3xs-train"]["peak_kl"] == pytest.approx(1.0)
    assert peaks["pm-2xs-n16"]["peak_kl"] == pytest.approx(1.0)
    assert peaks["pm-2xs-n16"]["labels"] == 16 and peaks["pm-2xs-train"]["peak_in_range"] is True
    assert peaks["pm-3xs-train"]["beta_ci"][0] == pytest.approx(2 * BETA)  # exact points: a degenerate interval
    assert peaks["pm-2xs-train"]["measured_peak_kl"] == 4.0
    text = summary(results)
    assert "PPO gold peak KL by proxy PM" in text and "pm-2xs-n16 (16 labels) 1.00" in text
    assert "ppo: gold 0.600 -> max 1.000 at KL 4.00" in text and "(inside the measured range)" in text


def test_analysis_reports_missing_runs(tmp_path):
    config = _config()
    store = RunStore.in_workdir(tmp_path)
    _plant(store, config, tmp_path)
    changed = _config(steps=10)  # another plan: nothing of it is in the store
    results = analyze(store, changed)
    assert "ppo-p3xs-pm-3xs-train" in results["missing"] and results["gold_vs_proxy"] == {}
    assert "b" not in results["sqrt_kl_fit"]


def test_figures_and_sections_draw_from_planted_results(tmp_path):
    from scalelab.studies.rlhf import figures, sections

    config = _config()
    store = RunStore.in_workdir(tmp_path)
    _plant(store, config, tmp_path)
    results = analyze(store, config)
    assert len(figures(results, store)) == 4
    titles = [s.title for s in sections(results, store, config)]
    assert "Train PM vs test PM" in titles and "Samples before and after RL" in titles


MICRO = """
name = "rlhf-micro"
policy_sizes = ["3xs"]
pm_sizes = ["3xs"]
context = 96
corpus_max_documents = 30
pretrain_iters = 40
pretrain_batch = 8
n_labels = 96
data_amounts = []
pm_epochs = 1.0
pm_min_steps = 4
pm_batch = 8
algos = ["ppo", "dpo", "best-of-n"]
steps = 4
batch_size = 8
max_new_tokens = 16
eval_every = 2
n_prompts = 64
eval_prompts = 8
bon_n = [1, 2, 4]
online_rounds = 2
n_samples_shown = 2
threads = 1
workers = 1
"""


@pytest.mark.slow
def test_micro_study_end_to_end_and_rerun_reuses_every_run(tmp_path, micro):
    pytest.importorskip("scalelab.align.rl.run")
    from scalelab.studies.runner import run_study

    work = tmp_path / "work"
    out = run_study("rlhf", micro, workdir=work, progress=False)
    assert out["failed"] == 0 and out["ran"] == out["planned"] == 10
    r = out["results"]
    assert r["missing"] == []
    assert {"a", "b", "r2", "b_ci"} <= set(r["sqrt_kl_fit"])
    assert set(r["gold_vs_proxy"]) == {"ppo", "dpo", "best-of-n"}
    assert r["train_pm_vs_test_pm"]["series"][0]["sqrt_kl"] == 0.0
    assert len(r["online_vs_offline"]["rounds"]) == 2
    assert len(r["samples"]["rows"]) == 2
    # the train PM and the test PM are two halves of one labelled set, sampled once
    assert len(list((work / "labels").glob("*.json"))) == 2  # the base set and online round 0's policy
    again = run_study("rlhf", micro, workdir=work, progress=False)
    assert again["ran"] == 0 and again["skipped"] == 10
