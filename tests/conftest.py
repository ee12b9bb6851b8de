"""Shared fixtures: tiny configs on the embedded corpus, and the shared data folder."""

from __future__ import annotations

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
