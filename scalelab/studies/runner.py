"""Running any study the same way: preset + overrides -> plan -> sweep executors -> analysis -> report.

`run_study("repetition", "quick", ["design.sizes=['L1','L2']"], workdir)` loads the study's preset
(a TOML file beside its package, or a path) with `--set` overrides through the config reader of
`scalelab train`, plans its runs, trains what the store does not hold yet (stage by stage, resumable,
locally or on Ray), analyses, draws, and writes one self-contained HTML report with a Markdown twin.
"""

from __future__ import annotations

import importlib
import time
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console

from scalelab.config import apply_overrides, build_config, read_toml
from scalelab.errors import UserError
from scalelab.names import check_name
from scalelab.plain import to_plain
from scalelab.studies import STUDIES


def study_module(name: str) -> ModuleType:
    if name not in STUDIES:
        raise UserError(f"no study {name!r}; the studies are: {', '.join(STUDIES)}")
    return importlib.import_module(f"scalelab.studies.{name}")


def presets(name: str) -> list[str]:
    """The preset names shipped beside a study's package."""
    folder = resources.files(f"scalelab.studies.{name}")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str, preset: str) -> Path:
    """A shipped preset by name, or a TOML file by path."""
    if preset.endswith(".toml") or "/" in preset or "\\" in preset:
        path = Path(preset)
        if not path.is_file():
            raise UserError(f"no preset file {preset}; give an existing TOML file, or a preset name "
                            f"(`scalelab study {name} --dry-run --preset NAME`)")
        return path
    if preset not in presets(name):
        raise UserError(f"study {name!r} has no preset {preset!r}; the presets are: {', '.join(presets(name))}, "
                        "or give the path of a TOML file")  # fmt: skip
    return Path(str(resources.files(f"scalelab.studies.{name}") / f"{preset}.toml"))


def load_study_config(name: str, preset: str = "quick", overrides: list[str] | None = None) -> tuple[ModuleType, Any]:
    """(the study's module, its validated Config) from a preset and `key=value` overrides."""
    module = study_module(name)
    path = preset_path(name, preset)
    raw = apply_overrides(read_toml(path), overrides)
    config = build_config(raw, origin=str(path), cls=module.Config)
    check_name(config.name, "the study's name (the group of its runs and its report's file name; --set name=...)")
    return module, config


def plan_rows(runs: list, store, group: str) -> list[dict]:
    """The plan as table rows, with each run's state in the store (new / completed / interrupted ...)."""
    rows = []
    for r in runs:
        prior = store.find_runs(config_hash=r.config_hash, group=group) if store else []
        rows.append({"name": r.name, "kind": r.kind, "stage": r.stage, "params": r.params,
                     "params_nonembed": r.params_nonembed, "tokens": r.tokens, "iters": r.iters, "flops": r.flops,
                     "status": prior[-1]["status"] if prior else "new"})  # fmt: skip
    return rows


def run_study(
    name: str,
    preset: str = "quick",
    overrides: list[str] | None = None,
    workdir: str | Path = "scalelab-work",
    *,
    dry_run: bool = False,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_run: float = 0.0,
    retry_failed: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> dict:
    """Run a study end to end and return plain data (see the module docstring); a dry run only plans."""
    from scalelab.report import report_path
    from scalelab.store import RunStore
    from scalelab.sweep.run import execute

    t0 = time.perf_counter()
    workdir = Path(workdir)
    console = console or Console(stderr=True, quiet=not progress)
    module, config = load_study_config(name, preset, overrides)
    runs = module.plan(config, workdir)
    head = {"study": name, "preset": preset, "group": config.name}
    if dry_run:
        store = RunStore.in_workdir(workdir, readonly=True) if (workdir / "scalelab.db").exists() else None
        rows = plan_rows(runs, store, config.name)
        totals = {"runs": len(rows), "new": sum(r["status"] == "new" for r in rows),
                  "flops": sum(r["flops"] for r in rows), "tokens": sum(r["tokens"] for r in rows)}  # fmt: skip
        return head | {"dry_run": True, "runs": rows, "totals": totals}
    if hasattr(module, "prepare"):  # the data files the runs read, built once (never for a dry run)
        module.prepare(config, workdir)
        # plan again: a run's config hash stamps its input files by content, and a later stage names the
        # hash of the earlier run it builds on; planned before the files existed, both hashes were of paths
        runs = module.plan(config, workdir)
    sweep = execute(runs, config.name, workdir, executor, workers or getattr(config, "workers", 1), retry_failed,
                    address, gpus_per_run, getattr(config, "probes", False), console, progress)  # fmt: skip
    counts = {k: sweep[k] for k in ("planned", "skipped", "ran", "completed", "failed", "interrupted")}
    if sweep["interrupted"]:
        return head | counts | {"summary": "interrupted: run the same command again to resume", "report": None,
                                "wall_s": time.perf_counter() - t0}  # fmt: skip
    store = RunStore.in_workdir(workdir)
    results = module.analyze(store, config)
    summary = module.summary(results)
    path = report_path(workdir, config.name)
    write_study_report(module, name, config, results, store, summary, path)
    from scalelab.interop.trackers import attach_report, trackers_of

    attach_report(trackers_of(runs), workdir, config.name, path)
    return head | counts | {"results": to_plain(results), "summary": summary, "report": str(path),
                            "wall_s": time.perf_counter() - t0}  # fmt: skip


def write_study_report(module: ModuleType, name: str, config, results: dict, store, summary: str, path: Path) -> Path:
    """One report writer for every study: the study's own sections, or summary + figures + runs."""
    from scalelab.report import Section, write_report

    if hasattr(module, "sections"):
        sections = module.sections(results, store, config)
    else:
        runs = store.list_runs(["id", "name", "status", "params", "tokens", "flops", "final_val_loss"], config.name)
        sections = [Section("Summary", summary), Section("Figures", figures=module.figures(results, store)),
                    Section("Runs", "Every number here traces back to these run ids.", tables=[runs])]
    title = f"scalelab study {name}: {config.name}"
    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} from {store.path}"
    return write_report(path, title, sections, meta=meta)
