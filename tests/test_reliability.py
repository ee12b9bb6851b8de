"""Fault injection: hostile checkpoints, signals, kills, concurrent owners, corrupt files, bad input.

Run alone with `python -m pytest -m reliability`.
"""

from __future__ import annotations

import builtins

import pytest
import torch

from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.train.checkpoint import latest_checkpoint
from scalelab.train.loop import train

pytestmark = pytest.mark.reliability


class _Evil:
    """Unpickling this creates a file: what a crafted checkpoint would do with a shell command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _plant(ckpt, obj) -> None:
    """Replace a checkpoint's state.pt, as an attacker with write access to the work directory would
    (rewriting the checksum manifest too, so that only the unpickler stands in the way)."""
    torch.save(obj, ckpt / "state.pt")
    from scalelab.train import checkpoint as ck

    if hasattr(ck, "write_manifest") and (ckpt / "manifest.json").exists():
        ck.write_manifest(ckpt)


def test_crafted_pickle_state_is_refused_and_runs_nothing(tiny_cfg, tmp_path):
    part = train(tiny_cfg(), tmp_path, progress=False, stop_after=10)
    ckpt = latest_checkpoint(tmp_path / "runs" / part["run_id"] / "ckpt")
    marker = tmp_path / "pwned"
    _plant(ckpt, {"state": _Evil(marker)})
    with pytest.raises(UserError, match="refusing to load"):
        train(tiny_cfg(), tmp_path, resume=part["run_id"], progress=False)
    assert not marker.exists()
    assert RunStore.in_workdir(tmp_path).get_run(part["run_id"])["status"] == "interrupted"


@pytest.mark.parametrize("name", ["../../../../tmp/x/pwned", "m[/]x", "a b", ".hidden", "x" * 101, "", "a\nb"])
def test_path_like_names_are_refused(name):
    from scalelab.config import load_config
    from scalelab.names import check_name
    from scalelab.sweep.spec import SweepSpec

    with pytest.raises(UserError):
        check_name(name, "name")
    with pytest.raises(UserError, match="name"):
        load_config(None, [f"name='{name}'"] if "\n" not in name else ["name='a\\nb'"])
    with pytest.raises(Exception, match="sweep name"):
        SweepSpec(name=name)


def test_good_names_pass():
    from scalelab.names import check_name

    for name in ("run", "scaling-size=L2-C=1e+13", "a.b_c-1"):
        assert check_name(name, "name") == name


def test_run_id_prefix_is_literal_not_a_pattern(tmp_path):
    store = RunStore.in_workdir(tmp_path)
    a = store.create_run("a", {}, "h1")
    store.create_run("b", {}, "h2")
    assert store.get_run("%") is None and store.get_run("_") is None and store.get_run("") is None
    assert store.get_run(a[:-1])["id"] == a
    with pytest.raises(UserError, match="ambiguous"):
        store.get_run(a[:7])  # both share the date prefix 'YYMMDD-'
    assert store.get_run(a)["id"] == a and store.get_run("b")["name"] == "b"
