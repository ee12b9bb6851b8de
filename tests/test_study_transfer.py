"""The transfer law (D_E inversion, D_T fit) on planted numbers, and the transfer study's config, plan and
a micro study end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scalelab.errors import UserError
from scalelab.laws.transfer import fit_transfer, invert_scratch_curve, transfer_table
from scalelab.studies.runner import load_study_config, run_study


def planted(d):
    return 6.0 * np.asarray(d, dtype=float) ** -0.12  # a from-scratch L(D), pure power law


D = np.geomspace(1e3, 1e6, 7)


def test_inversion_recovers_planted_data_sizes_and_flags_extrapolation():
    for want in (1e3, 2.5e3, 4e4, 9.9e5, 1e6):
        got, flag = invert_scratch_curve(D, planted(D), float(planted(want)))
        assert got == pytest.approx(want, rel=1e-9) and flag is None
    beyond, flag = invert_scratch_curve(D, planted(D), float(planted(3e7)))
    assert flag == "beyond_largest" and beyond == pytest.approx(3e7, rel=1e-9)  # never clipped to 1e6
    before, flag = invert_scratch_curve(D, planted(D), float(planted(50)))
    assert flag == "below_smallest" and before == pytest.approx(50, rel=1e-9)
    noisy = planted(D) * np.array([1, 1, 1.02, 1, 1, 1, 1])  # a bump: the best loss with at most D is used
    assert invert_scratch_curve(D, noisy, float(planted(D[2])))[1] is None
    with pytest.raises(UserError, match="two finite points"):
        invert_scratch_curve([1e3], [2.0], 1.5)


def test_table_gives_d_t_multiplier_and_ossification():
    rows = transfer_table(1e5, D, planted(D), [1e3, 1e4, 1e5], [planted(1e5), planted(3e4), planted(2e5)])
    assert [r["D_E"] for r in rows] == pytest.approx([1e5, 3e4, 2e5])
    assert [r["D_T"] for r in rows] == pytest.approx([99000, 20000, 1e5])
    assert rows[0]["multiplier"] == pytest.approx(100)
    assert not any(r["ossified"] or r["extrapolated"] for r in rows)
    worse = transfer_table(1e5, D, planted(D), [1e5], [planted(2e4)])[0]  # fine-tuned worse than scratch at D_F
    assert worse["ossified"] and worse["D_T"] < 0 and worse["multiplier"] == pytest.approx(0.2)


def test_fit_recovers_planted_k_alpha_beta_with_intervals():
    n, d_f = np.meshgrid([1e4, 1e5, 1e6], [1e3, 1e4, 1e5, 1e6])
    d_t = 1.9e4 * d_f**0.18 * n**0.38
    exact = fit_transfer(d_f, n, d_t, n_boot=50)
    assert (exact.k, exact.alpha, exact.beta) == pytest.approx((1.9e4, 0.18, 0.38), rel=1e-6)
    noise = np.exp(0.1 * np.random.default_rng(1).standard_normal(d_t.shape))
    fit = fit_transfer(d_f, n, d_t * noise, n_boot=400, seed=2)
    for key, want in (("alpha", 0.18), ("beta", 0.38)):
        lo, hi = fit.ci[key]
        assert lo < want < hi and hi - lo < 0.2
    assert fit.paper_inside["alpha"] and fit.n_points == 12 and fit.excluded == 0
    # ossified points (D_T <= 0) are left out, and too few points is a clear error
    with_bad = fit_transfer(np.append(d_f, 1e6), np.append(n, 1e4), np.append(d_t, -5.0), n_boot=20)
    assert with_bad.excluded == 1
    with pytest.raises(UserError, match="at least 4 points"):
        fit_transfer([1e3, 1e4], [1e4, 1e5], [10.0, 20.0])


MICRO = """
name = "transfer-micro"
sizes = ["3xs", "2xs"]
max_documents = 30
block_size = 16
batch_size = 4
pretrain_iters = 16
finetune_tokens = [40, 400, 4000]
scratch_tokens = [40, 160, 640, 2560, 10240]
max_iters = 12
eval_every = 4
eval_batches = 2
patience = 2
bootstrap = 50
threads = 1
workers = 1
device = "cpu"
"""


def test_config_and_plan(tmp_path, micro):
    module, config = load_study_config("transfer", micro)
    runs = module.plan(config, tmp_path)
    assert len(runs) == 2 * (1 + 3 + 5)
    by_name = {r.name: r for r in runs}
    ft = by_name["finetune-2xs-D400"]
    pre = by_name["pretrain-2xs"]
    assert ft.stage == 1 and pre.stage == 0 and ft.cfg.data.source == "stdlib:code"
    assert ft.cfg.train.init_from == f"run:pretrain-2xs@{pre.config_hash}" and ft.cfg.data.train_tokens == 400
    assert by_name["scratch-2xs-D640"].cfg.train.init_from is None
    assert ft.params_nonembed > by_name["finetune-3xs-D400"].params_nonembed
    _, longer = load_study_config("transfer", micro, ["pretrain_iters=17"])
    assert {r.name: r.config_hash for r in module.plan(longer, tmp_path)}["finetune-2xs-D400"] != ft.config_hash
    with pytest.raises(UserError, match="trained per corpus"):
        load_study_config("transfer", micro, ["tokenizer='char'"])
    with pytest.raises(UserError, match="less than one window"):
        load_study_config("transfer", micro, ["finetune_tokens=[10, 100]"])
    assert load_study_config("transfer", "quick")[1].name == "transfer-quick"
    assert load_study_config("transfer", "full")[1].sizes[-1] == "l"


@pytest.mark.slow
def test_micro_study_end_to_end(tmp_path, micro, one_torch_thread):
    out = run_study("transfer", micro, workdir=tmp_path / "w", progress=False)
    assert out["failed"] == 0 and out["ran"] == 18
    res = out["results"]
    assert len(res["table"]) == 6 and not res["missing"]
    for row in res["table"]:
        assert math.isfinite(row["D_E"]) or row["extrapolated"]
    assert "fit" in res and ("error" in res["fit"] or set(res["fit"]["ci"]) == {"k", "alpha", "beta"})
    assert "Transfer study transfer-micro" in out["summary"] and out["report"].endswith(".html")
    again = run_study("transfer", micro, workdir=tmp_path / "w", progress=False)
    assert again["ran"] == 0 and again["skipped"] == 18  # reused by config hash
