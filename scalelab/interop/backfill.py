"""Backfill trackers from the store: `scalelab runs export --to mlflow|tensorboard|wandb`.

Each finished run (completed, failed or interrupted) not yet in the tracker gets its config, every
metric row of the store and its final metrics, grouped as the live trackers group them. Running it
again adds only the runs that are new since.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from scalelab.errors import UserError
from scalelab.interop.trackers import FACTORIES, MLflowTracker, RunInfo, TensorBoardTracker, WandbTracker

FINISHED = ("completed", "failed", "interrupted")


def _already(to: str, info: RunInfo) -> bool:
    if to == "tensorboard":
        return TensorBoardTracker.folder(info).is_dir()
    if to == "wandb":
        return bool(WandbTracker.folders(info))
    return MLflowTracker.find(MLflowTracker.client(info.workdir), info.group or "scalelab", info.run_id) is not None


def backfill(workdir: str | Path, to: str, group: str | None = None, runs: list[str] | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> dict:  # fmt: skip
    """Export finished runs of the store to tracker `to`; return {"exported": [ids], "skipped": [ids], "to"}.
    `progress(done, total, run name)` is called before each run."""
    from scalelab.store import RunStore

    if to not in FACTORIES:
        raise UserError(f"--to {to!r}: backfill exports to {', '.join(map(repr, FACTORIES))}; choose one of them")
    workdir = Path(workdir)
    store = RunStore.in_workdir(workdir, readonly=True)
    try:
        rows = store.find_runs(group=group)
        if runs:
            wanted = {r["id"] for r in (store.get_run(x) for x in runs) if r is not None}
            missing = [x for x in runs if store.get_run(x) is None]
            if missing:
                raise UserError(f"no run {missing[0]!r} in {store.path}; see `scalelab runs`")
            rows = [r for r in rows if r["id"] in wanted]
        exported, skipped = [], []
        for done, row in enumerate(rows):
            if progress is not None:
                progress(done, len(rows), row["name"])
            info = RunInfo(row["id"], row["name"], row["grp"], row["config"], workdir)
            if row["status"] not in FINISHED or _already(to, info):
                skipped.append(row["id"])
                continue
            metrics = store.conn.execute(
                "SELECT step, tokens, flops, split, name, value FROM metrics WHERE run_id = ? ORDER BY step",
                (row["id"],),
            ).fetchall()
            tracker = FACTORIES[to]()
            try:
                tracker.start(info)
            except ImportError as e:
                raise UserError(f"{e.name or to} is not installed; pip install 'scalelab[track]'") from None
            tracker.log([tuple(m) for m in metrics])
            tracker.finish(row["status"], row["summary"] or {})
            exported.append(row["id"])
    finally:
        store.close()
    return {"to": to, "exported": exported, "skipped": skipped}
