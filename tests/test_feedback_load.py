"""Load on loopback: 50 labellers at once submit 2,000 comparisons; none lost, none duplicated.

The p95 latency is printed, not asserted (tests assert no wall-clock times); it is measured in
benchmarks/bench_feedback.py and recorded in benchmarks/RESULTS_feedback.md.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

pytest.importorskip("fastapi", reason="the feedback extra is not installed")
pytest.importorskip("uvicorn", reason="the feedback extra is not installed")
pytest.importorskip("httpx", reason="the feedback extra is not installed")

from scalelab.feedback.app import Settings, create_app  # noqa: E402
from scalelab.feedback.db import FeedbackDB  # noqa: E402
from scalelab.feedback.export import export_comparisons  # noqa: E402
from scalelab.feedback.load import plan_turns, run_load  # noqa: E402
from scalelab.feedback.responder import Responder  # noqa: E402
from scalelab.feedback.server import serve_in_thread  # noqa: E402

LABELLERS, PER_LABELLER = 50, 40


@pytest.mark.slow
def test_2000_concurrent_comparisons_none_lost_none_duplicated(tmp_path):
    db = FeedbackDB.in_workdir(tmp_path)
    plan = plan_turns(db, LABELLERS, PER_LABELLER)
    assert plan.n == 2000
    settings = Settings(comparisons_per_minute=1e6, comparison_burst=10_000)
    app = create_app(db, Responder([], rng=random.Random(0)), settings)
    with serve_in_thread(app) as url:
        result = asyncio.run(run_load(url, plan, timeout_s=600))
        # a second round of the same turns: every one refused as already compared
        again = asyncio.run(run_load(url, type(plan)(plan.labellers[:5]), timeout_s=120))
    print("load:", json.dumps(result.summary()))
    assert result.statuses == {200: 2000}
    assert len(set(result.ids)) == 2000
    assert again.statuses == {409: 5 * PER_LABELLER}
    rows = FeedbackDB.in_workdir(tmp_path).comparisons()
    assert len(rows) == 2000 and len({r["turn_id"] for r in rows}) == 2000
    assert {r["turn_id"] for r in rows} == {t for _, turns in plan.labellers for t in turns}
    out = export_comparisons(db, tmp_path / "hh.jsonl", "hh")
    assert out.written == 2000
    assert len((tmp_path / "hh.jsonl").read_text().splitlines()) == 2000
