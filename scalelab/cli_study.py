"""`scalelab study NAME`: one command per paper; each study module owns its presets and report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from scalelab.cli_common import DEFAULT_WORKDIR

study_app = typer.Typer(no_args_is_help=True, help="Run a paper's study end to end and write its report.")


def _run(module: str, preset: str, spec: Optional[Path], workdir: Path, json_out: bool) -> None:
    import importlib

    study = importlib.import_module(f"scalelab.studies.{module}")
    result = study.run_study(preset=preset, spec=spec, workdir=workdir, progress=not json_out and sys.stderr.isatty())
    if json_out:
        print(json.dumps(result, default=str))
    else:
        print(result.get("summary", ""))
        print(f"report: {result.get('report')}")


@study_app.command("repetition")
def repetition(
    preset: str = typer.Option("quick", "--preset", help="quick (CPU, <= 15 min) or full (one GPU)."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="A TOML spec overriding the preset."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w"),
    json_out: bool = typer.Option(False, "--json"),
):
    """Hernandez et al. 2022: repeated data, double descent, effective size, induction heads."""
    _run("repetition", preset, spec, workdir, json_out)


@study_app.command("preference")
def preference(
    preset: str = typer.Option("quick", "--preset", help="quick (CPU, <= 15 min) or full (one GPU)."),
    spec: Optional[Path] = typer.Option(None, "--spec", help="A TOML spec overriding the preset."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", "-w"),
    json_out: bool = typer.Option(False, "--json"),
):
    """Askell et al. 2021: ranked vs binary vs imitation preference models, with and without PMP."""
    _run("preference", preset, spec, workdir, json_out)
