"""`scalelab demo`: the main job. A small scaling sweep on the embedded corpus, the fits, a
forecast of the largest model from the smaller ones, and the HTML report; then a sample."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rich.console import Console

from scalelab.sampling import sample_text
from scalelab.sweep.run import run_sweep
from scalelab.sweep.spec import load_spec


def demo_spec():
    path = resources.files("scalelab.studies") / "demo_sweep.toml"
    return load_spec(Path(str(path)))


def run_demo(workdir: str | Path, progress: bool = True, console: Console | None = None) -> dict:
    from scalelab.sweep.report import report_sweep

    console = console or Console()
    spec = demo_spec()
    console.print("scalelab demo: 5 model sizes on the Python standard library, 0.75 tokens per parameter")
    res = run_sweep(spec, workdir, console=console)
    if res["interrupted"]:
        console.print("interrupted: run `scalelab demo` again to resume")
        return res
    fits, path = report_sweep(workdir, spec.name, spec.analysis.bootstrap, spec.analysis.fit_params,
                              spec.analysis.forecast_holdout)  # fmt: skip
    from scalelab.studies.scaling import headline, summary_text

    console.print(summary_text(fits))
    largest = max((r for r in fits["runs"] if r["status"] == "completed"), key=lambda r: r["params"])
    text = sample_text(largest["id"], "def ", 160, 0.8, 50, 0, workdir)
    console.print(f"a sample from the largest model ({largest['params']:,} parameters):")
    console.print("def " + text, markup=False, highlight=False)
    console.print(f"report: {path}")
    out = {"report": str(path), "sample": text, **{k: res[k] for k in ("planned", "skipped", "ran", "wall_s")}}
    out["fits"] = headline(fits)
    return out
