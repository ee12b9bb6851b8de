"""The papers' studies, one package each, all of one shape.

Every study is a package `scalelab/studies/<name>/` that reads like the method section of its paper:

    __init__.py   the docstring: the paper, the question, the design, the outputs; it re-exports
                  Config, plan, analyze, summary and figures
    config.py     `Config`, a typed (pydantic) config; `name` is the group of its runs in the store
    quick.toml    a preset for 2 CPU cores (<= 15 min fresh); full.toml for one GPU; others allowed
    plan.py       plan(config, workdir) -> list[PlannedRun], executed by the sweep executors
    analyze.py    analyze(store, config) -> plain data with intervals; summary(results) -> text
    figures.py    figures(results, store) -> matplotlib figures

and optionally `sections(results, store, config) -> list[report.Section]` when the default report
(summary, figures, the table of runs) is not enough, and `prepare(config, workdir)` when the runs
read data files that take a while to build: `plan` only names them, `prepare` writes them once
before training (skipped by a dry run). `studies.runner` does the rest the same way for
every study: it loads a preset with `--set` overrides through the config reader of `scalelab train`,
runs the plan with the sweep executors (resume after an interruption, reuse of finished runs by
config hash, Ray, a dry run, live progress), analyses, draws and writes one report. The command is
`scalelab study NAME [--preset P] [--set k=v ...] [--dry-run] [--json] [--workdir W]`.
"""

STUDIES: dict[str, str] = {
    "scaling": "Kaplan et al. 2020, Hoffmann et al. 2022: L(N), the compute frontier, L(N, D), forecasts",
    "repetition": "Hernandez et al. 2022: repeated data, double descent, effective size, induction heads",
    "efficiency": "Hernandez & Brown 2020: compute to a target loss, efficiency multipliers, doubling time",
    "preference": "Askell et al. 2021: ranked vs binary vs imitation preference models, with and without PMP",
    "assistant": "Askell et al. 2021: prompting vs context distillation across size; alignment tax; PM starts; OOD",
    "transfer": "Hernandez et al. 2021: effective data transferred D_T = k D_F^alpha N^beta, text -> Python",
    "predictability": "Ganguli et al. 2022: smooth loss vs abrupt task capabilities across scale; forecast errors",
    "rlhf": "Bai et al. 2022, Gao et al. 2022: reward vs sqrt(KL), train vs test PM, over-optimisation, online RLHF",
}
"""Every study's package name and a one-line description."""
