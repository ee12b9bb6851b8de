"""`scalelab ood ...`: out-of-distribution detection on a model's activations (Bai et al. 2022, 5.4).

    scalelab ood fit   --model RUN --in SOURCE [--n N] [--seed S] [--max-tokens T] [--workdir W] [--json]
    scalelab ood score --model RUN --in SOURCE --out SOURCE [--n N] [--n-boot B] [--fit DIR] [--json]

SOURCE: a text file (one prompt per line), a folder, a .jsonl (field --field), any data source, or
`ood:near` / `ood:far` / `ood:hh` (a built-in benchmark; --in takes its in-distribution side,
--out its OOD side). The --in texts are split by the seed into halves: `fit` fits on the first
half and saves the fit (safetensors + JSON) under `<workdir>/ood/<run id>/`; `score` scores the
second half against --out, with the saved fit of the same model, source, n, seed and max-tokens
when there is one (or --fit DIR), else it fits the first half itself (and then also reports the
outlier-exposure curve). Progress goes to stderr; with --json one JSON object is the last line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from scalelab.cli.common import JsonOpt, WorkdirOpt, fmt, note, out, print_json, rows_table, say
from scalelab.cli.progress import eta_bar

ood_app = typer.Typer(no_args_is_help=True, help="Out-of-distribution detection on activations.")

ModelOpt = typer.Option(..., "--model", "-m", help="Run id / name in the store, a run folder or a step_* folder.")
InOpt = typer.Option(..., "--in", help="In-distribution texts: a file, folder, .jsonl, data source or ood:near|far|hh.")
NOpt = typer.Option(1000, "--n", min=4, help="At most this many texts per side (a seeded sample).")
SeedOpt = typer.Option(0, "--seed", help="Seed of the sampling, the fit/test split and the bootstrap.")
MaxTokOpt = typer.Option(128, "--max-tokens", min=1, help="Texts are cut to this many tokens (and the context).")
BatchOpt = typer.Option(32, "--batch-size", min=1, help="Texts per forward pass.")
FieldOpt = typer.Option("text", "--field", help="The text field of a .jsonl source.")
Bf16Opt = typer.Option(False, "--bf16", help="bfloat16 matmuls (autocast): ~3x less CPU time where the CPU has AMX.")
ThreadsOpt = typer.Option(0, "--threads", min=0, help="Torch threads for the forward passes (0: torch's default).")


def _fit_folder(workdir: Path, run_key: str, source: str, n: int, seed: int, max_tokens: int) -> Path:
    """Where `ood fit` saves: a name hashed from the settings, so no user text becomes a path."""
    run_hash = hashlib.sha256(run_key.encode()).hexdigest()[:12]
    key = hashlib.sha256(f"{source}|{n}|{seed}|{max_tokens}".encode()).hexdigest()[:12]
    return workdir / "ood" / run_hash / f"fit-{key}"


def _split(texts: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(fit half, test half) by a seeded permutation; the same for `fit` and `score`."""
    import numpy as np

    order = np.random.default_rng(seed + 7919).permutation(len(texts))
    half = len(texts) // 2
    return [texts[i] for i in order[:half]], [texts[i] for i in order[half:]]


def _activations(model, tokenizer, texts: list[str], what: str, batch_size: int, max_tokens: int,
                 bf16: bool):  # fmt: skip  -> np.ndarray (n, layers, d)
    from scalelab.evals.ood import pooled_activations

    note(f"activations of {len(texts)} {what} texts")
    with eta_bar(what, len(texts)) as progress:
        return pooled_activations(model, tokenizer, texts, batch_size=batch_size, max_tokens=max_tokens, bf16=bf16,
                                  progress=progress)  # fmt: skip


def _load(model_ref: str, workdir: Path, threads: int):
    import torch

    from scalelab.train.checkpoint import load_for_inference

    if threads:
        torch.set_num_threads(threads)
    model, tokenizer, info = load_for_inference(model_ref, workdir)
    note(f"model {info['path']}: {model.cfg.n_layer} layers of width {model.cfg.n_embd}, {tokenizer.kind} tokenizer")
    return model, tokenizer, info


def _in_texts(source: str, n: int, seed: int, field: str) -> tuple[list[str], list[str]]:
    from scalelab.data.ood_sets import texts_from_source
    from scalelab.errors import UserError

    texts = texts_from_source(source, n, seed, side="in", text_field=field)
    if len(texts) < 4:
        raise UserError(f"--in {source!r} gives {len(texts)} texts; give at least 4 (half fit, half test)")
    return _split(texts, seed)


@ood_app.command("fit")
def fit_cmd(
    model_ref: str = ModelOpt, source: str = InOpt, n: int = NOpt, seed: int = SeedOpt,
    max_tokens: int = MaxTokOpt, batch_size: int = BatchOpt, field: str = FieldOpt, threads: int = ThreadsOpt,
    bf16: bool = Bf16Opt, workdir: Path = WorkdirOpt, json_out: bool = JsonOpt,
):  # fmt: skip
    """Fit per-layer class mean and shared covariance on the first half of the --in texts; save it."""
    from scalelab.evals.ood import fit_activations, tokenizer_id

    model, tokenizer, info = _load(model_ref, workdir, threads)
    fit_texts, _ = _in_texts(source, n, seed, field)
    acts = _activations(model, tokenizer, fit_texts, "fit", batch_size, max_tokens, bf16)
    tok = {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "id": tokenizer_id(tokenizer)}
    meta = {"max_tokens": max_tokens, "bf16": bf16, "model": {"path": info["path"], "run_id": info["run_id"]},
            "tokenizer": tok, "source": source, "n": n, "seed": seed}  # fmt: skip
    fit = fit_activations(acts, None, meta)
    folder = fit.save(_fit_folder(workdir, info["run_id"] or info["path"], source, n, seed, max_tokens))
    res = {"fit": str(folder), "n_fit": len(fit_texts), "dim": fit.meta["dim"], "layers": fit.meta["n_layer"],
           "shrinkage": fit.shrunk, "shrinkage_by_layer": [f.shrinkage for f in fit.layers]}  # fmt: skip
    if json_out:
        print_json(res)
        return
    say(f"OOD fit of {len(fit_texts)} texts, {res['layers']} layers of width {res['dim']}, saved in {folder}")
    if fit.shrunk:
        say(f"fewer texts than dimensions: Ledoit-Wolf shrinkage {fmt(res['shrinkage_by_layer'], '.3f')}")


@ood_app.command("score")
def score_cmd(
    model_ref: str = ModelOpt, source: str = InOpt,
    out_source: str = typer.Option(..., "--out", help="OOD texts: same kinds of SOURCE as --in."),
    n: int = NOpt, seed: int = SeedOpt, max_tokens: int = MaxTokOpt, batch_size: int = BatchOpt,
    n_boot: int = typer.Option(200, "--n-boot", min=0, help="Bootstrap resamples of the AUROC interval."),
    fit_dir: Path | None = typer.Option(None, "--fit", help="A saved fit (default: the one `ood fit` saved, if any)."),
    field: str = FieldOpt, threads: int = ThreadsOpt, bf16: bool = Bf16Opt, workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):  # fmt: skip
    """AUROC per layer (Mahalanobis and relative Mahalanobis, bootstrap CI) of --in test texts vs --out."""
    from scalelab.data.ood_sets import texts_from_source
    from scalelab.evals.ood import OODFit, auroc_report, fit_activations

    model, tokenizer, info = _load(model_ref, workdir, threads)
    fit_texts, test_texts = _in_texts(source, n, seed, field)
    out_texts = texts_from_source(out_source, n, seed, side="out", text_field=field)
    saved = fit_dir or _fit_folder(workdir, info["run_id"] or info["path"], source, n, seed, max_tokens)
    fit_acts = None
    if fit_dir is not None or (saved / "ood_fit.json").is_file():
        fit = OODFit.load(saved)
        fit.check_model(model, tokenizer)
        note(f"using the saved fit {saved} ({fit.meta['n_fit']} texts)")
    else:
        fit_acts = _activations(model, tokenizer, fit_texts, "fit", batch_size, max_tokens, bf16)
        fit = fit_activations(fit_acts, None, {"max_tokens": max_tokens, "bf16": bf16})
    cut, half = fit.meta.get("max_tokens") or max_tokens, bool(fit.meta.get("bf16"))  # as the fit was made
    test_in = _activations(model, tokenizer, test_texts, "in-test", batch_size, cut, half)
    test_out = _activations(model, tokenizer, out_texts, "out", batch_size, cut, half)
    note(f"bootstrap ({n_boot} resamples) and outlier exposure")
    res = auroc_report(fit, test_in, test_out, n_boot=n_boot, seed=seed, fit_in=fit_acts)
    res = {"model": info["path"], "run_id": info["run_id"], "in": source, "out": out_source, **res}
    if json_out:
        print_json(res)
        return
    rows = [{"layer": r["layer"], "AUROC": r["auroc"], "CI": fmt(r["ci"], ".3f"), "rel. AUROC": r["auroc_rel"],
             "rel. CI": fmt(r["ci_rel"], ".3f")} for r in res["layers"]]  # fmt: skip
    out.print(rows_table(rows, title="OOD AUROC per layer (Mahalanobis; simplified relative Mahalanobis)", spec=".3f"))
    best = res["layers"][res["best_layer"]]
    say(f"best layer {res['best_layer']}: AUROC {best['auroc']:.3f} [{best['ci'][0]:.3f}, {best['ci'][1]:.3f}] "
        f"({res['n_in_test']} in vs {res['n_out_test']} out, fit on {res['n_fit']} texts)")  # fmt: skip
    if res["shrinkage"]:
        say(f"fewer fit texts ({res['n_fit']}) than dimensions ({res['dim']}): Ledoit-Wolf shrinkage covariance")
    if "exposure" in res:
        curve = ", ".join(f"m={c['m']}: {c['auroc']:.3f}" for c in res["exposure"]["curve"])
        say(f"outlier exposure at layer {res['exposure']['layer']} (AUROC vs labelled outliers): {curve}")
