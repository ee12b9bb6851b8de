"""Checkpoints: weights as safetensors, plus optimizer, RNG and data-position state.

Each checkpoint is a folder `step_{N:08d}` written under a temporary name and renamed into place;
the file `latest` (also replaced atomically) names the newest complete one. A crash at any
moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from scalelab.data import tokenizers as tk
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def rng_state() -> dict:
    """Every RNG's state as plain data (tensors, numbers, strings, lists): loadable with weights_only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},  # fmt: skip
        "python": {"version": version, "state": list(mt), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))  # fmt: skip
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


def save_state(state: dict, path: Path) -> None:
    """Optimizer, RNG and data-position state; only plain data, so that `load_state` needs no pickle code."""
    torch.save(state, path)


def load_state(path: Path, device: str | torch.device = "cpu") -> dict:
    """Read a `state.pt` with torch's weights-only unpickler: tensors, numbers, strings, lists and dicts.

    Anything else (an object whose unpickling would import and call code) is refused: a checkpoint
    can come from a shared work directory, and unpickling a crafted one runs arbitrary commands.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path} holds more than plain data (tensors, numbers, strings, lists, dicts); refusing to load "
            f"it, since unpickling it could run code ({first[:200]}). If you did not write this file, delete "
            "it; a checkpoint written by an older scalelab cannot be resumed: start a new run"
        ) from None


def save_checkpoint(ckpt_dir: Path, step: int, model: GPT, tokenizer, state: dict, keep: int = 1) -> Path:
    """Write model + state for `step`; keep the newest `keep` checkpoints."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step_{step:08d}"
    tmp = ckpt_dir / f".step_{step:08d}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    save_state(state, tmp / "state.pt")
    (tmp / "model.json").write_text(json.dumps(model.cfg.to_dict()))
    tk.save_spec(tokenizer, tmp / "tokenizer.json")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _atomic_write_text(ckpt_dir / "latest", final.name)
    old = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir() and p != final)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        p = ckpt_dir / pointer.read_text().strip()
        if (p / "state.pt").is_file():
            return p
    done = sorted(p for p in ckpt_dir.glob("step_*") if (p / "state.pt").is_file())
    return done[-1] if done else None


def load_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer, step) from a checkpoint folder (a `step_*` folder or its parent)."""
    p = Path(path)
    if p.is_dir() and not (p / "model.safetensors").is_file():
        found = latest_checkpoint(p) or latest_checkpoint(p / "ckpt")
        if found is None:
            raise UserError(f"no checkpoint in {p}; give a run id, a run folder or a step_* folder")
        p = found
    if not (p / "model.safetensors").is_file():
        raise UserError(f"{path} is not a checkpoint (no model.safetensors); give a run id or checkpoint folder")
    cfg = GPTConfig(**json.loads((p / "model.json").read_text()))
    model = GPT(cfg)
    load_model(model, str(p / "model.safetensors"), device="cpu")
    tokenizer = tk.load_spec(p / "tokenizer.json")
    step = int(p.name.split("_")[-1]) if p.name.startswith("step_") else 0
    return model.to(device), tokenizer, step
