"""The gold-labelled PM run's pieces: halves and label budgets, the spec's hash, bad references."""

import pytest

from scalelab.align.gold_pm import GoldPMSpec, LabelSource, offered, resolve_policy, select
from scalelab.data.comparisons import Comparison
from scalelab.errors import UserError


def _pairs(n: int) -> list[Comparison]:
    return [Comparison("p", f"a{i}", f"b{i}", meta={"pair": i}) for i in range(n) if i % 3]  # some dropped (ties)


def test_halves_are_disjoint_and_budgets_count_offered_pairs():
    pairs = _pairs(20)
    even = select(pairs, LabelSource(policy="x", n_pairs=20, half=0))
    odd = select(pairs, LabelSource(policy="x", n_pairs=20, half=1))
    assert {c.meta["pair"] % 2 for c in even} == {0} and {c.meta["pair"] % 2 for c in odd} == {1}
    assert len(even) + len(odd) == len(pairs)
    first = select(pairs, LabelSource(policy="x", n_pairs=20, half=0, max_offered=8))
    assert [c.meta["pair"] for c in first] == [2, 4]  # 0 and 6 were dropped as ties: offered, not kept
    assert offered(LabelSource(policy="x", n_pairs=20, half=0, max_offered=8)) == 4
    assert offered(LabelSource(policy="x", n_pairs=7, half=1)) == 3 and offered(LabelSource(policy="x", n_pairs=7)) == 7


def test_spec_hash_ignores_name_group_threads_only():
    spec = GoldPMSpec(sources=[LabelSource(policy="run:lm", n_pairs=8)], pm={"base": "run:lm"})
    same = GoldPMSpec(name="other", group="g", threads=2, sources=[LabelSource(policy="run:lm", n_pairs=8)],
                      pm={"base": "run:lm"})  # fmt: skip
    assert spec.config_hash() == same.config_hash()
    assert spec.config_hash() != GoldPMSpec(sources=[LabelSource(policy="run:lm", n_pairs=8, half=0)],
                                            pm={"base": "run:lm"}).config_hash()  # fmt: skip


def test_unknown_policy_run_names_the_fix(tmp_path):
    from scalelab.store import RunStore

    RunStore.in_workdir(tmp_path).close()
    with pytest.raises(UserError, match="no completed run named 'lm-2xs'"):
        resolve_policy("run:lm-2xs", None, "g", tmp_path)
