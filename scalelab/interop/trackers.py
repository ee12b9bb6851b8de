"""Experiment trackers: TensorBoard, MLflow and W&B mirrors of what the run store records.

`train.trackers = ["tensorboard", "mlflow", "wandb"]` (any subset) sends each run's config, its
metrics at every flush of the logger, and its final metrics to local, offline stores inside the
work directory:
- TensorBoard event files in `<workdir>/tensorboard/<group>/<name>-<run id>/`;
- an MLflow SQLite tracking store `<workdir>/mlflow.db` (artifacts in `<workdir>/mlflow-artifacts/`),
  one experiment per group (sweep or study), `mlflow ui --backend-store-uri sqlite:///<workdir>/mlflow.db`;
- W&B in offline mode in `<workdir>/wandb/offline-run-<time>-<run id>/` (`wandb sync` uploads it
  later; set WANDB_MODE=online to log live, WANDB_PROJECT to name the project), grouped by the run's
  group (sweep or study).
The SQLite run store stays the source of truth: a tracker that is not installed or raises is named
in one warning and dropped for the rest of the run, which goes on.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

NAMES = ("tensorboard", "mlflow", "wandb")
TRACK_INSTALL = "pip install 'scalelab[track]'"
FINAL_KEYS = ("final_train_loss", "final_val_loss", "best_val_loss", "tokens", "flops", "tokens_per_s", "wall_s",
              "params", "params_nonembed", "mfu")  # fmt: skip


class TrackerWarning(UserWarning):
    """A tracker failed; the run goes on and is recorded in the store."""


@dataclass
class RunInfo:
    run_id: str
    name: str
    group: str | None
    config: dict
    workdir: Path


def flat_config(config: dict, prefix: str = "") -> dict[str, str]:
    """{'train.lr': '0.001', ...}: a nested config as dotted keys with text values."""
    out: dict[str, str] = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out |= flat_config(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if not isinstance(v, str) else v
    return out


def final_metrics(summary: dict) -> dict[str, float]:
    return {k: float(summary[k]) for k in FINAL_KEYS if isinstance(summary.get(k), (int, float))}


class TensorBoardTracker:
    name = "tensorboard"

    @staticmethod
    def folder(info: RunInfo) -> Path:
        return info.workdir / "tensorboard" / (info.group or "runs") / f"{info.name}-{info.run_id}"

    def start(self, info: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.folder(info)))
        self.writer.add_text("config", "```\n" + json.dumps(info.config, indent=1) + "\n```")
        self.last_step = 0

    def log(self, rows: list[tuple]) -> None:
        for step, _tokens, _flops, split, name, value in rows:
            self.writer.add_scalar(f"{split}/{name}", value, step)
            self.last_step = max(self.last_step, step)
        self.writer.flush()

    def finish(self, status: str, summary: dict) -> None:
        for k, v in final_metrics(summary).items():
            self.writer.add_scalar(f"final/{k}", v, self.last_step)
        self.writer.add_text("status", status)
        self.writer.close()

    def artifact(self, path: Path) -> None:
        self.writer.add_text(f"artifact/{path.name}", str(path))


class MLflowTracker:
    name = "mlflow"
    STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}

    @staticmethod
    def client(workdir: Path):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=f"sqlite:///{(workdir / 'mlflow.db').resolve()}")

    @staticmethod
    def find(client, experiment: str, run_id: str):
        """The MLflow run of a scalelab run id in an experiment (a resumed run continues it), or None."""
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        found = client.search_runs([exp.experiment_id], filter_string=f"tags.`scalelab.run_id` = '{run_id}'")
        return found[0] if found else None

    def start(self, info: RunInfo) -> None:
        from mlflow.entities import Param

        self.c = self.client(info.workdir)
        experiment = info.group or "scalelab"
        old = self.find(self.c, experiment, info.run_id)
        if old is not None:
            self.id = old.info.run_id
            self.c.update_run(self.id, status="RUNNING")
            return
        exp = self.c.get_experiment_by_name(experiment)
        if exp is None:
            where = (info.workdir / "mlflow-artifacts" / experiment).resolve().as_uri()
            exp_id = self.c.create_experiment(experiment, artifact_location=where)
        else:
            exp_id = exp.experiment_id
        tags = {"scalelab.run_id": info.run_id, "scalelab.group": info.group or ""}
        self.id = self.c.create_run(exp_id, run_name=info.name, tags=tags).info.run_id
        params = [Param(k, v[:6000]) for k, v in flat_config(info.config).items()]
        for i in range(0, len(params), 100):
            self.c.log_batch(self.id, params=params[i : i + 100])

    def log(self, rows: list[tuple]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{split}/{name}", float(value), now, int(step)) for step, _t, _f, split, name, value in rows]
        for i in range(0, len(metrics), 1000):
            self.c.log_batch(self.id, metrics=metrics[i : i + 1000])

    def finish(self, status: str, summary: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(summary.get("iters") or 0)
        final = [Metric(f"final/{k}", v, now, step) for k, v in final_metrics(summary).items()]
        self.c.log_batch(self.id, metrics=final)
        self.c.set_terminated(self.id, self.STATUS.get(status, "FAILED"))

    def artifact(self, path: Path) -> None:
        self.c.log_artifact(self.id, str(path))


class WandbTracker:
    name = "wandb"

    @staticmethod
    def folders(info: RunInfo) -> list[Path]:
        """The offline run folders W&B wrote for this run (one per start: a resumed run adds one)."""
        return sorted((info.workdir / "wandb").glob(f"offline-run-*-{info.run_id}"))

    def start(self, info: RunInfo) -> None:
        import wandb

        # console off: W&B would otherwise wrap stdout/stderr, where the CLI writes its JSON and progress
        settings = wandb.Settings(console="off", silent=True, disable_git=True, save_code=False,
                                  x_disable_stats=True, x_save_requirements=False)  # fmt: skip
        self.run = wandb.init(mode=os.environ.get("WANDB_MODE", "offline"), dir=str(info.workdir),
                              project=os.environ.get("WANDB_PROJECT", "scalelab"), group=info.group,
                              name=info.name, id=info.run_id, resume="allow", config=info.config,
                              reinit="create_new", settings=settings)  # fmt: skip

    def log(self, rows: list[tuple]) -> None:
        by_step: dict[int, dict] = {}
        for step, _t, _f, split, name, value in rows:
            by_step.setdefault(int(step), {})[f"{split}/{name}"] = value
        for step in sorted(by_step):
            self.run.log(by_step[step], step=step)

    def finish(self, status: str, summary: dict) -> None:
        self.run.summary.update(final_metrics(summary) | {"status": status})
        self.run.finish(exit_code=0 if status == "completed" else 1)

    def artifact(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")


FACTORIES = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}


class Trackers:
    """The configured trackers behind one guard: every call that raises warns once (naming the tracker
    and the error) and drops that tracker; nothing a tracker does can fail the run."""

    def __init__(self, names: list[str], info: RunInfo, factories: dict | None = None):
        self.info, self.finished = info, False
        self.active: dict[str, object] = {}  # configured name -> tracker
        for name in dict.fromkeys(names):
            make = (factories or FACTORIES).get(name)
            if make is None:
                self._warn(name, f"unknown tracker (known: {', '.join(NAMES)})")
                continue
            self.active[name] = make()
            self._call(name, "start", info)

    def _warn(self, name: str, why: str) -> None:
        warnings.warn(f"tracker {name!r} is off for run {self.info.run_id}: {why}; the run goes on and is "
                      "recorded in the store (`scalelab runs export` can backfill it later)", TrackerWarning,
                      stacklevel=3)  # fmt: skip

    def _call(self, name: str, method: str, *args) -> None:
        tracker = self.active.get(name)
        if tracker is None:
            return
        try:
            getattr(tracker, method)(*args)
        except ImportError as e:
            del self.active[name]
            self._warn(name, f"{e.name or e} is not installed ({TRACK_INSTALL})")
        except Exception as e:  # noqa: BLE001 -- a tracker must never fail a run
            del self.active[name]
            self._warn(name, f"{type(e).__name__}: {str(e)[:300]}")

    def log(self, rows: list[tuple]) -> None:
        for name in list(self.active):
            self._call(name, "log", list(rows))

    def artifact(self, path: Path) -> None:
        """Attach a file (a study's report) to every tracker's run."""
        for name in list(self.active):
            self._call(name, "artifact", Path(path))

    def finish(self, status: str, summary: dict) -> None:
        if self.finished:
            return
        self.finished = True
        for name in list(self.active):
            self._call(name, "finish", status, summary)


def open_trackers(names: list[str], workdir: Path, run_id: str, name: str, config: dict,
                  group: str | None = None) -> Trackers | None:  # fmt: skip
    """The run's trackers (None when none is configured); the group is read from the store when not given
    (a sweep worker knows only its run id)."""
    if not names:
        return None
    if group is None and (Path(workdir) / "scalelab.db").is_file():
        try:
            from scalelab.store import RunStore

            store = RunStore.in_workdir(workdir, readonly=True)
            row = store.conn.execute("SELECT grp FROM runs WHERE id = ?", (run_id,)).fetchone()
            store.close()
            group = row[0] if row else None
        except Exception:  # noqa: BLE001 -- the group only names a folder
            group = None
    return Trackers(names, RunInfo(run_id, name, group, config, Path(workdir)))


def attach_report(names: list[str], workdir: Path, group: str, report: Path, summary: dict | None = None) -> None:
    """Attach a sweep's or study's report (HTML or Markdown) to its trackers: one tracker run per group,
    `<group>-report`, holding the file and the results' numbers. Never raises (as for runs)."""
    if not names:
        return
    info = RunInfo(f"{group}-report", f"{group} report", group, {"report": str(report)}, Path(workdir))
    trackers = Trackers(names, info)
    trackers.artifact(Path(report))
    trackers.finish("completed", summary or {})
