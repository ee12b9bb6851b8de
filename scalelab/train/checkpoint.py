"""Checkpoints: weights as safetensors, plus optimizer, RNG and data-position state as plain data.

Each checkpoint is a folder `step_{N:08d}`:
- `model.safetensors`, `model.json` (the resolved `GPTConfig`), `tokenizer.json`;
- `state.pt`: optimizer, RNG and sampler state, only tensors / numbers / strings / lists / dicts,
  read back with torch's weights-only unpickler (never code);
- `manifest.json`: the sha256 and size of every other file, the step, the tokenizer's kind and
  vocabulary size.

It is written under a temporary name, verified against its manifest, renamed into place, and
only then named by the file `latest` (replaced atomically). The previous checkpoint is kept
(`keep=2`), so a latest checkpoint found corrupt or truncated later is reported (a
`CheckpointWarning` naming the file) and the previous one is used instead.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from scalelab.atomic import building_dir, write_text
from scalelab.data import tokenizers as tk
from scalelab.errors import UserError
from scalelab.model.gpt import GPT, GPTConfig

MANIFEST = "manifest.json"
REQUIRED = ("model.safetensors", "model.json", "tokenizer.json", "state.pt")


class CheckpointWarning(UserWarning):
    """A checkpoint was found corrupt and an older one is used instead."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def step_of(folder: Path) -> int:
    return int(folder.name.split("_")[-1]) if folder.name.startswith("step_") else 0


# ----------------------------------------------------------------------------- plain-data state


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
    except (RuntimeError, EOFError, OSError) as e:
        why = f"{type(e).__name__}: {str(e)[:200]}"
        raise UserError(f"{path} is unreadable ({why}); start from another checkpoint") from None


# ----------------------------------------------------------------------------- writing and verifying


def write_manifest(folder: Path, extra: dict | None = None) -> dict:
    """Hash every file of a checkpoint folder into its manifest (keeping earlier extra fields)."""
    old = _read_manifest(folder) or {}
    files = {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}  # fmt: skip
    manifest = {k: v for k, v in old.items() if k != "files"} | (extra or {}) | {"format": 1, "files": files}
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def verify_checkpoint(folder: Path) -> str | None:
    """None when the folder is a complete checkpoint matching its manifest, else what is wrong."""
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    manifest = _read_manifest(folder)
    if manifest is None:
        return None if not (folder / MANIFEST).exists() else f"{MANIFEST} is unreadable"  # no manifest: older format
    for name, want in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {want['bytes']} (truncated?)"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its sha256 in {MANIFEST}"
    return None


def save_checkpoint(ckpt_dir: Path, step: int, model: GPT, tokenizer, state: dict, keep: int = 2) -> Path:
    """Write model + state for `step`, verify it, point `latest` at it; keep the newest `keep` checkpoints."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"step_{step:08d}"
    with building_dir(final, replace=True) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        save_state(state, tmp / "state.pt")
        (tmp / "model.json").write_text(json.dumps(model.cfg.to_dict()))
        tk.save_spec(tokenizer, tmp / "tokenizer.json")
        write_manifest(tmp, {"step": step, "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size}})
        problem = verify_checkpoint(tmp)  # read back from disk before the previous checkpoint may go
        if problem is not None:
            raise OSError(f"the checkpoint just written in {tmp} does not verify ({problem}); the previous one is kept")
    write_text(ckpt_dir / "latest", final.name)
    old = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir() and p != final)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; a corrupt newer one is named in a warning and skipped.

    None when there is no checkpoint at all; a UserError when there are some but none is intact.
    """
    ckpt_dir = Path(ckpt_dir)
    found = sorted((p for p in ckpt_dir.glob("step_*") if p.is_dir()), reverse=True)
    pointer = ckpt_dir / "latest"
    named = ckpt_dir / pointer.read_text().strip() if pointer.is_file() else None
    if named is not None and named in found:  # the pointer first (it names the newest complete one)
        found.remove(named)
        found.insert(0, named)
    bad = []
    for p in found:
        problem = verify_checkpoint(p)
        if problem is None:
            for q, why in bad:
                warnings.warn(f"checkpoint {q} is corrupt ({why}); using the previous one, {p.name}",
                              CheckpointWarning, stacklevel=2)  # fmt: skip
            return p
        bad.append((p, problem))
    if bad:
        raise UserError(
            "no intact checkpoint in " + str(ckpt_dir) + ": " + "; ".join(f"{p.name}: {why}" for p, why in bad)
            + "; start a new run (or restore the folder from a backup)"
        )
    return None


def load_weights(model: GPT, folder: Path, device: str | torch.device = "cpu") -> None:
    """Load `model.safetensors` into `model`, turning a corrupt file or a shape mismatch into a UserError."""
    path = folder / "model.safetensors"
    try:
        load_model(model, str(path), device=str(device))
    except SafetensorError as e:
        raise UserError(f"{path} is corrupt or truncated ({e}); use another checkpoint of the run") from None
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:4]
        raise UserError(
            f"the weights in {path} do not fit the model described by {folder / 'model.json'} "
            f"({'; '.join(lines)[:400]}); the files come from different models: use a checkpoint as written"
        ) from None


# ----------------------------------------------------------------------------- inference


def resolve_run_folder(run_or_path: str | Path, workdir: str | Path | None) -> Path:
    """A folder from a run id / prefix / name in the work directory's store, or a path that exists."""
    p = Path(run_or_path)
    if p.exists():
        return p
    db = Path(workdir) / "scalelab.db" if workdir is not None else None
    if db is not None and db.is_file():
        from scalelab.store import RunStore

        store = RunStore(db, readonly=True)
        try:
            run = store.get_run(str(run_or_path))
        finally:
            store.close()
        if run is not None:
            return Path(workdir) / "runs" / run["id"]
    raise UserError(f"{str(run_or_path)!r} is neither a checkpoint path nor a run in {workdir}; see `scalelab runs`")


def _checkpoint_folder(p: Path) -> Path:
    if (p / "model.safetensors").is_file():  # a step_* folder, given explicitly: no fallback
        problem = verify_checkpoint(p)
        if problem is not None and not problem.startswith("missing state.pt"):
            raise UserError(f"checkpoint {p} is corrupt ({problem}); use another step_* folder or the run id")
        return p
    if p.is_dir():
        found = latest_checkpoint(p / "ckpt") if (p / "ckpt").is_dir() else latest_checkpoint(p)
        if found is not None:
            return found
    raise UserError(f"no checkpoint in {p}; give a run id, a run folder or a step_* folder")


def _check_tokenizer(folder: Path, tokenizer, gpt: GPTConfig, manifest: dict | None) -> None:
    """The tokenizer must be the one the model was trained with: same kind, same vocabulary."""
    if tokenizer.vocab_size > gpt.vocab_size or tokenizer.eot_id >= gpt.vocab_size:
        raise UserError(
            f"{folder / 'tokenizer.json'} has {tokenizer.vocab_size} tokens but the model in {folder} has "
            f"{gpt.vocab_size}: the tokenizer belongs to another model; restore the checkpoint's own tokenizer.json"
        )
    want = (manifest or {}).get("tokenizer")
    if want and (want.get("kind") != tokenizer.kind or want.get("vocab_size") != tokenizer.vocab_size):
        raise UserError(
            f"{folder / 'tokenizer.json'} is a {tokenizer.kind} tokenizer of {tokenizer.vocab_size} tokens, but the "
            f"model was trained with a {want.get('kind')} tokenizer of {want.get('vocab_size')} tokens; restore "
            "the checkpoint's own tokenizer.json"
        )


def load_for_inference(run_or_path: str | Path, workdir: str | Path | None = None,
                       device: str | torch.device = "cpu") -> tuple[GPT, object, dict]:  # fmt: skip
    """(model in eval mode, tokenizer, info) of a run's newest intact checkpoint, for sampling and scoring.

    `run_or_path`: a run id / id prefix / name in `workdir`'s store (opened read-only), a run folder,
    a `ckpt` folder or a `step_*` folder. Checks the checksums, that the tokenizer is the model's and
    that the weights fit `model.json`; each problem is a UserError naming the file.
    `info`: {"path", "step", "run_id", "model" (GPTConfig dict), "tokenizer" (kind), "vocab_size"}.
    """
    folder = _checkpoint_folder(resolve_run_folder(run_or_path, workdir))
    try:
        gpt = GPTConfig(**json.loads((folder / "model.json").read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"{folder / 'model.json'} is not a model description ({e}); use another checkpoint") from None
    try:
        tokenizer = tk.load_spec(folder / "tokenizer.json")
    except UserError:
        raise
    except Exception as e:  # json, a missing key, or the tokenizers library refusing the text
        raise UserError(f"{folder / 'tokenizer.json'} is not a tokenizer ({type(e).__name__}: {e})") from None
    _check_tokenizer(folder, tokenizer, gpt, _read_manifest(folder))
    model = GPT(gpt)
    load_weights(model, folder, "cpu")
    model = model.to(device).eval()
    run_dir = folder.parent.parent if folder.parent.name == "ckpt" else None
    info = {"path": str(folder), "step": step_of(folder), "run_id": run_dir.name if run_dir else None,
            "model": gpt.to_dict(), "tokenizer": tokenizer.kind, "vocab_size": tokenizer.vocab_size}  # fmt: skip
    return model, tokenizer, info


def load_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer, step) from a checkpoint, run or ckpt folder: `load_for_inference` without a store,
    the model left in training mode as before (callers fine-tune it)."""
    model, tokenizer, info = load_for_inference(path, None, device)
    return model.train(), tokenizer, info["step"]
