"""`scalelab bench train`: a preset trained end to end, reported as throughput and time to target.

tokens/s counts the training steps only (evaluation and checkpoints excluded); `steady_tokens_per_s`
and `steady_mfu` leave out the first logging window too (compilation and warm-up); time to target
is the wall time from the start of training until an evaluation first reaches the target loss.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from scalelab import presets
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.train.loop import train

DEFAULT_TARGETS = {"shakespeare-char": 1.874}
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _preset_name(preset: str, recipe: str) -> tuple[str, list[str]]:
    combined = f"{preset}-{recipe}"
    if combined in presets.names():
        return combined, []
    if preset in presets.names():
        return preset, [f"model.recipe='{recipe}'"]
    stems = sorted({n.rsplit("-", 1)[0] if n.endswith(("-gpt2", "-modern")) else n for n in presets.names()})
    raise UserError(f"unknown bench preset {preset!r}; available: {', '.join(stems)}")


def find_data(source: str, data: str | None) -> str:
    """The --data path, else the preset's path if it exists, else the same file in ../shared/data."""
    if data:
        if not Path(data).exists():
            raise UserError(f"--data {data}: no such file")
        return data
    if Path(source).exists():
        return source
    fallback = SHARED_DATA / Path(source).name
    if fallback.exists():
        return str(fallback)
    raise UserError(f"the preset reads {source}, which is not here; pass --data PATH to the text file")


def bench_train(
    preset: str = "shakespeare-char",
    recipe: str = "gpt2",
    data: str | None = None,
    device: str = "cpu",
    overrides: list[str] | None = None,
    workdir: str | None = None,
    target: float | None = None,
    progress: bool = False,
) -> dict:
    name, extra = _preset_name(preset, recipe)
    cfg = presets.load_preset(name, extra + list(overrides or []) + [f"train.device='{device}'"])
    cfg.data.source = find_data(cfg.data.source, data)
    target = target if target is not None else DEFAULT_TARGETS.get(preset)
    with tempfile.TemporaryDirectory(prefix="scalelab-bench-") as tmp:
        summary = train(cfg, workdir or tmp, target_val_loss=target, progress=progress)
        steady = _steady_tokens_per_s(workdir or tmp, summary["run_id"])
    peak = summary["mfu"] and summary["flops_per_token"] * summary["tokens_per_s"] / summary["mfu"]
    return {
        "steady_tokens_per_s": steady,
        "steady_mfu": summary["flops_per_token"] * steady / peak if peak and steady else None,
        "preset": preset, "recipe": recipe, "device": summary["device"], "params": summary["params"],
        "tokens_per_s": summary["tokens_per_s"], "final_val_loss": summary["final_val_loss"],
        "time_to_target_s": summary["time_to_target_s"], "target_val_loss": target,
        "iters": summary["iters"], "mfu": summary["mfu"], "wall_s": summary["wall_s"],
        "train_s": summary["train_s"], "tokens": summary["tokens"], "run_id": summary["run_id"],
        "compile_s": summary.get("compile_s"),
    }  # fmt: skip


def _steady_tokens_per_s(workdir, run_id: str) -> float | None:
    """Median tokens/s of the logged windows after the first (which holds compilation and warm-up)."""
    rows = RunStore.in_workdir(workdir).metric_series([run_id], "train", "tokens_per_s").get(run_id, [])
    values = sorted(v for (_, _, _, v) in rows[1:] if v > 0)
    return values[len(values) // 2] if values else None
