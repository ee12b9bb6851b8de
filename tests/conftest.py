"""Shared fixtures: tiny configs on the embedded corpus (run configs and study presets), and the shared data folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalelab.config import load_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_overrides(**extra) -> list[str]:
    base = {
        "data.source": "'stdlib'",
        "data.max_documents": "60",
        "model.n_layer": "1",
        "model.n_head": "2",
        "model.n_embd": "32",
        "model.block_size": "32",
        "train.iters": "30",
        "train.batch_size": "8",
        "train.eval_every": "10",
        "train.eval_batches": "2",
        "train.ckpt_every": "10",
        "train.log_every": "5",
        "train.warmup_iters": "5",
        "train.device": "'cpu'",
        "train.threads": "1",
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


TINY_BASE = {
    "data": {"source": "stdlib"},
    "model": {"recipe": "modern", "block_size": 32},
    "train": {"eval_batches": 2, "device": "cpu", "threads": 1},
}
"""What the tiny models of the study tests share: the embedded corpus, width-32 windows, one CPU thread."""


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"


def tiny_base(data: dict | None = None, model: dict | None = None, train: dict | None = None) -> str:
    """The `[base.data]`, `[base.model]` and `[base.train]` tables of a study preset: `TINY_BASE` with the
    keys of `data`, `model` and `train` added (or replaced), as TOML text to append to the preset."""
    more = {"data": data or {}, "model": model or {}, "train": train or {}}
    text = ""
    for table, keys in TINY_BASE.items():
        text += f"[base.{table}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in (keys | more[table]).items())
    return text


@pytest.fixture
def micro(request, tmp_path) -> str:
    """The test module's `MICRO` study preset (TOML text) written to a file: its path, as `run_study` takes it."""
    path = tmp_path / "micro.toml"
    path.write_text(request.module.MICRO)
    return str(path)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on a shared 2-core machine two threads can be many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_cfg():
    def make(**extra):
        return load_config(None, tiny_overrides(**extra))

    return make


@pytest.fixture
def shakespeare() -> Path:
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip("../shared/data/tinyshakespeare.txt is not present")
    return path


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability: fault-injection tests (run alone with -m reliability)")
