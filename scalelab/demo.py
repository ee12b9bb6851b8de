"""`scalelab demo`: the main job on the embedded corpus."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from scalelab.presets import load_preset
from scalelab.sampling import sample_text
from scalelab.train.loop import train


def run_demo(workdir: str | Path, progress: bool = True, console: Console | None = None) -> dict:
    console = console or Console()
    cfg = load_preset("demo-single")
    console.print(f"training a {cfg.model.size} {cfg.model.recipe} model on the Python standard library ...")
    summary = train(cfg, workdir, progress=progress)
    text = sample_text(summary["run_id"], "def ", 200, 0.8, 50, 0, workdir)
    console.print(f"val loss {summary['final_val_loss']:.3f} nats/byte after {summary['tokens']:,} tokens "
                  f"({summary['wall_s']:.0f} s); a sample:")  # fmt: skip
    console.print("def " + text, markup=False, highlight=False)
    return {"run_id": summary["run_id"], "final_val_loss": summary["final_val_loss"], "sample": text}
