"""`scalelab pm ...` (train and score preference models) and `scalelab eval ...` (binary-choice evals).

Parse, call `scalelab.align`, print; no science here. Every command prints one JSON object as its
last line with ``--json``; user mistakes raise `UserError`, which `scalelab.cli:main` prints (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scalelab.cli.common import JsonOpt, WorkdirOpt, key_value_table, out, print_json, show_progress
from scalelab.cli.progress import live_line

pm_app = typer.Typer(no_args_is_help=True, help="Preference models: train and score.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluations of checkpoints.")

FormatOpt = typer.Option("auto", "--format", help="Comparison file format: hh, generic or auto.")
PromptOpt = typer.Option(None, "--prompt", help="A prompt file (or a shipped prompt: assistant) prepended to every "
                         "context; reports prompted and unprompted side by side.")
PROMPTED_PM_KEYS = ("accuracy_prompted", "accuracy_ci_prompted", "ece_prompted", "n_truncated_prompted", "prompt")


def _print(obj: dict, json_out: bool, keys: tuple[str, ...]) -> None:
    if json_out:
        print_json(obj)
    else:
        out.print(key_value_table(obj, keys))


@pm_app.command("train")
def train_cmd(
    data: str = typer.Option(..., "--data", help="Comparison file (HH-RLHF or generic JSONL/CSV) or an automatic "
                             "set: code:stdlib, corruptions:stdlib, arith[:N]."),
    format: str = FormatOpt,
    objective: str = typer.Option("ranked", "--objective", help="ranked, binary or imitation (Askell et al. 2021)."),
    base: Optional[str] = typer.Option(None, "--base", help="Backbone: a run id, checkpoint or PM folder, or "
                                       "hf:FOLDER for a Hugging Face causal LM."),
    size: Optional[str] = typer.Option(None, "--size", help="A fresh ladder model instead of --base (e.g. 'xs')."),
    context: int = typer.Option(256, "--context", min=1, help="Context in tokens of a fresh --size model; "
                                "also caps an hf: backbone (never beyond its own)."),
    pmp: Optional[str] = typer.Option(None, "--pmp", help="Preference-model pre-training set (file or keyword, "
                                      "e.g. corruptions:stdlib), binarised, before fine-tuning on --data."),
    pmp_max: int = typer.Option(4000, "--pmp-max", min=1, help="At most this many PMP comparisons (before "
                                "binarising)."),
    pmp_steps: Optional[int] = typer.Option(None, "--pmp-steps", min=1, help="PMP optimizer steps (default: one "
                                            "epoch)."),
    pmp_lr: float = typer.Option(3e-4, "--pmp-lr", min=0.0, help="PMP learning rate."),
    ranked_pmp: bool = typer.Option(False, "--ranked-pmp", help="Use the PMP set as ranked pairs, not binarised."),
    test: Optional[str] = typer.Option(None, "--test", help="A separate test file (default: split off "
                                       "--test-fraction)."),
    test_fraction: float = typer.Option(0.1, "--test-fraction", min=0.0, max=1.0, help="Held-out fraction (by "
                                        "document / prompt)."),
    data_max: Optional[int] = typer.Option(None, "--data-max", min=1, help="Read or build at most N comparisons."),
    max_train: Optional[int] = typer.Option(None, "--max-train", min=1, help="Train on the first N training "
                                            "pairs only."),
    max_test: Optional[int] = typer.Option(None, "--max-test", min=1, help="Evaluate on the first N test pairs only."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Optimizer steps (overrides --epochs)."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.0, help="Passes over the training comparisons."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Comparisons per step."),
    lr: float = typer.Option(3e-4, "--lr", min=0.0, help="Peak AdamW learning rate."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: all cores)."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name in the store."),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Train a preference model, evaluate it on held-out pairs, save it and record the run."""
    from scalelab.align.pm_run import PMRunSpec, run_pm
    from scalelab.align.pm_train import PMTrainConfig

    train_cfg = PMTrainConfig(objective=objective, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    spec = PMRunSpec(data=data, objective=objective, format=format, test=test, test_fraction=test_fraction,
                     data_max=data_max, max_train=max_train, max_test=max_test, base=base, size=size, context=context,
                     pmp=pmp, pmp_binary=not ranked_pmp, pmp_max=pmp_max, pmp_steps=pmp_steps, pmp_lr=pmp_lr,
                     train=train_cfg, device=device, threads=threads, name=name)  # fmt: skip
    summary = run_pm(spec, workdir, progress=show_progress())
    _print(summary, json_out, ("run_id", "objective", "accuracy", "accuracy_ci", "ece", "n_train", "n_test",
                               "n_skipped", "n_truncated", "pmp_accuracy", "pairs_per_s", "pm_path"))  # fmt: skip


@pm_app.command("score")
def score_cmd(
    checkpoint: str = typer.Argument(..., help="A PM run id, run folder or pm/ folder."),
    data: str = typer.Option(..., "--data", help="Comparison file or automatic-set keyword."),
    format: str = FormatOpt,
    max_pairs: Optional[int] = typer.Option(None, "--max", min=1, help="Score only the first N comparisons."),
    seed: int = typer.Option(0, "--seed", help="Seed of automatic sets and of the bootstrap."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="Write the reliability diagram to this PNG."),
    prompt: Optional[str] = PromptOpt,
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Accuracy (bootstrap 95% interval) and calibration (ECE) of a saved PM on comparisons."""
    from scalelab.align.pm import encode_pairs, load_pm
    from scalelab.align.pm_data import load_set
    from scalelab.align.pm_train import evaluate_pm

    with live_line("pm score") as phase:
        phase("loading the PM")
        pm = load_pm(checkpoint, workdir)
        phase("reading comparisons")
        loaded = load_set(data, format=format, seed=seed, max_pairs=max_pairs)
        phase(f"scoring {len(loaded.comparisons)} comparisons")
        pairs = encode_pairs(pm, loaded.comparisons)
        ev = evaluate_pm(pm, pairs, seed=seed)
    out = {**ev.summary(), "n_skipped": loaded.n_skipped, "n_truncated": pairs.counts.n_truncated,
           "n_response_truncated": pairs.counts.n_response_truncated, "objective": pm.objective,
           "scoring": pm.scoring, "checkpoint": checkpoint}  # fmt: skip
    if figure is not None:
        from scalelab.evals.calibration import reliability_figure

        reliability_figure(ev.calibration).savefig(figure, dpi=110, bbox_inches="tight")
        out["figure"] = str(figure)
    if prompt is not None:  # the same comparisons with the prompt before each: side by side
        from scalelab.align.distill_evals import pm_side_by_side
        from scalelab.prompting import load_prompt

        with live_line("pm score --prompt") as phase:
            phase(f"scoring {len(loaded.comparisons)} prompted comparisons")
            side = pm_side_by_side(pm, loaded.comparisons, load_prompt(prompt), seed=seed)
        out.update({k: v for k, v in side.items() if k.endswith("_prompted") or k == "prompt"})
    _print(out, json_out, ("accuracy", "accuracy_ci", "ece", "n_test", "n_skipped", "n_truncated", "scoring",
                           *(PROMPTED_PM_KEYS if prompt is not None else ())))  # fmt: skip


@eval_app.command("choice")
def choice_cmd(
    checkpoint: str = typer.Argument(..., help="A PM (chooses by score) or a plain LM checkpoint (chooses by "
                                     "the log-probability of each response)."),
    data: Path = typer.Option(..., "--data", help="Binary-choice JSONL: query, responses [2], correct, category."),
    prompt: Optional[str] = PromptOpt,
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """HHH-style binary-choice evaluation (Askell et al. 2021): pick the higher-scored response."""
    from scalelab.align.pm import TruncationCounts, load_pm
    from scalelab.evals.choice_format import load_choice_items, score_choice

    items = load_choice_items(data)
    with live_line("eval choice") as phase:
        phase("loading the model")
        pm = load_pm(checkpoint, workdir)
        if prompt is not None:  # unprompted and prompted side by side
            from scalelab.align.distill_evals import choice_side_by_side
            from scalelab.prompting import load_prompt

            phase(f"scoring {len(items)} items with and without the prompt")
            side = choice_side_by_side(pm, items, load_prompt(prompt)) | {"checkpoint": checkpoint}
        else:
            phase(f"scoring {len(items)} items")
            first = [pm.encode(item.query, item.responses[0]) for item in items]
            second = [pm.encode(item.query, item.responses[1]) for item in items]
            scores = pm.score_texts(first).numpy(), pm.score_texts(second).numpy()
    if prompt is not None:
        _print(side, json_out, ("accuracy", "accuracy_prompted", "n", "n_truncated", "n_truncated_prompted", "prompt",
                                "scoring"))  # fmt: skip
        return
    counts = TruncationCounts()
    for text in first + second:
        counts.add(text)
    result = score_choice(items, *scores)
    out = {"accuracy": result.accuracy, "n": result.n, "per_category": result.per_category,
           "n_truncated": counts.n_truncated, "scoring": pm.scoring, "checkpoint": checkpoint}  # fmt: skip
    _print(out, json_out, ("accuracy", "n", "per_category", "n_truncated", "scoring"))


@eval_app.command("loss")
def loss_cmd(
    model: str = typer.Option(..., "--model", help="A run id / name, run folder or checkpoint folder."),
    data: str = typer.Option(..., "--data", help="Text: stdlib, a file, a folder, a glob or a .jsonl file."),
    prompt: Optional[str] = PromptOpt,
    windows: int = typer.Option(64, "--windows", min=1, help="Text windows scored (seeded offsets)."),
    window: Optional[int] = typer.Option(None, "--window", min=2, help="Tokens per window (default: the context, "
                                         "or the room the prompt leaves)."),
    max_documents: Optional[int] = typer.Option(None, "--max-documents", min=1, help="Read at most N documents."),
    seed: int = typer.Option(0, "--seed"),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Mean next-token loss (nats/token) of a model on a data set, with and without --prompt."""
    from scalelab.align.distill_evals import loss_side_by_side
    from scalelab.prompting import load_prompt
    from scalelab.train.checkpoint import load_for_inference

    with live_line("eval loss") as phase:
        phase("loading the model")
        lm, tokenizer, info = load_for_inference(model, workdir, "cpu")
        phase(f"scoring {windows} windows" + (" with and without the prompt" if prompt else ""))
        res = loss_side_by_side(lm, tokenizer, data, load_prompt(prompt) if prompt else None, window=window,
                                n_windows=windows, seed=seed, max_documents=max_documents)  # fmt: skip
    res["model"] = info["path"]
    _print(res, json_out, ("loss", "loss_prompted", "delta", "window", "n_windows", "tokens", "prompt", "model"))
