"""Where a training run writes its record: straight into the run store, or into files in the run
folder that the driver of a sweep ingests (only the driver writes the store)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from scalelab.atomic import write_json
from scalelab.store import RunStore


class StoreRecorder:
    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id

    def update(self, **fields) -> None:
        self.store.update_run(self.run_id, **fields)

    def log(self, rows: list) -> None:
        self.store.log_metrics(self.run_id, rows)

    def truncate(self, step: int) -> None:
        self.store.truncate_metrics(self.run_id, step)


class FileRecorder:
    """`record.json` (run fields, replaced atomically) and `metrics.jsonl` (appended) in the run folder."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)

    def update(self, **fields) -> None:
        path = self.dir / "record.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        record.update(fields)
        write_json(path, record)

    def log(self, rows: list) -> None:
        with open(self.dir / "metrics.jsonl", "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")

    def truncate(self, step: int) -> None:
        path = self.dir / "metrics.jsonl"
        if path.exists():
            keep = [line for line in path.read_text().splitlines() if line and json.loads(line)[0] <= step]
            tmp = path.with_name(f".metrics.jsonl.tmp{os.getpid()}")
            tmp.write_text("".join(line + "\n" for line in keep))
            tmp.replace(path)


def read_run_files(run_dir: Path) -> tuple[dict, list]:
    """(record fields, metric rows) written by a FileRecorder."""
    run_dir = Path(run_dir)
    rec_path, met_path = run_dir / "record.json", run_dir / "metrics.jsonl"
    record = json.loads(rec_path.read_text()) if rec_path.exists() else {}
    rows = [tuple(json.loads(line)) for line in met_path.read_text().splitlines() if line] if met_path.exists() else []
    return record, rows


def ingest(store: RunStore, run_id: str, run_dir: Path) -> dict:
    """Copy a worker's files into the store (replacing that run's metrics); return the record."""
    record, rows = read_run_files(run_dir)
    store.truncate_metrics(run_id, -1)
    if rows:
        store.log_metrics(run_id, rows)
    fields = {k: v for k, v in record.items() if k in store_columns()}
    if fields:
        store.update_run(run_id, **fields)
    return record


def store_columns() -> tuple[str, ...]:
    from scalelab.store import RUN_COLUMNS

    return RUN_COLUMNS
