"""The sweep's live progress line, read from the runs' progress files."""

import json

from rich.console import Console

from scalelab.sweep.progress import SweepProgress


def test_progress_line(tmp_path):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "progress.json").write_text(json.dumps(
        {"step": 50, "iters": 100, "loss": 2.5, "val_loss": 2.61, "eta_s": 30.0}))
    m = SweepProgress(tmp_path, planned=5, done=0, flops_left=6e9, console=Console(), enabled=False)
    m.skip(1e9, 1)
    m.start("a", "L1", 1e9)
    m.start("b", "L2", 2e9)
    line = m.line()
    assert line.startswith("runs 1/5 done")
    assert "L1: step 50/100 loss 2.500 val 2.610 ETA 30s" in line and "1 starting or queued" in line
    m.finish("a", "failed")
    m._t0 -= 100  # 100 s in, with 1e9 of 5e9 FLOPs trained: about 400 s left
    line = m.line()
    assert "runs 2/5 done (1 failed)" in line and "all ETA ~6.7m" in line
