"""`scalelab feedback ...`: serve the comparison interface, manage labellers, export, rate models.

Parse, call `scalelab.feedback`, print; no science here. The server needs the `feedback` extra
(``pip install 'scalelab[feedback]'``); export and elo need only the core dependencies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

from scalelab.cli.common import JsonOpt, WorkdirOpt, note, out, print_json, rows_table, say
from scalelab.errors import UserError

feedback_app = typer.Typer(no_args_is_help=True, help="Human feedback: compare responses in a browser, export, Elo.")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
_LABELLER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MAX_PROMPTS_BYTES = 50_000_000


def _db(workdir: Path, must_exist: bool = True):
    from scalelab.feedback.db import DB_NAME, FeedbackDB

    if must_exist and not (workdir / DB_NAME).is_file():
        raise UserError(f"no feedback store in {workdir} ({DB_NAME}); add a labeller and serve first, "
                        "or pass the right --workdir")  # fmt: skip
    return FeedbackDB.in_workdir(workdir)


def _labeller_name(name: str) -> str:
    if not _LABELLER.fullmatch(name):
        raise UserError(f"labeller name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
    return name


def read_prompts(path: Path) -> list[str]:
    """Prompts from a text file (one a line) or JSONL (a string, or an object with 'prompt' or 'human')."""
    if not path.is_file():
        raise UserError(f"prompts file {path} not found; give a text or JSONL file with one prompt a line")
    if path.stat().st_size > MAX_PROMPTS_BYTES:
        raise UserError(f"prompts file {path} is over {MAX_PROMPTS_BYTES} bytes; give a smaller file")
    prompts = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if path.suffix in (".jsonl", ".json"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{path} line {n} is not JSON; use one JSON string or object a line") from None
            if isinstance(obj, dict):
                obj = obj.get("prompt") or obj.get("human")
            line = obj
            if not isinstance(line, str) or not line.strip():
                raise UserError(f"{path} line {n}: expected a string or an object with 'prompt' or 'human'")
        prompts.append(line.strip()[:4000])
    if not prompts:
        raise UserError(f"prompts file {path} holds no prompts")
    return prompts


@feedback_app.command("serve")
def serve_cmd(
    models: str = typer.Option(
        ..., "--models", help="One or two run ids / names in the store, comma-separated (one model: two samples of it)."
    ),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Text or JSONL file of prompts to offer."),
    mode: str = typer.Option(
        "helpful", "--mode", help="helpful (pick the better) or red-team (pick the more harmful)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    tokens: int = typer.Option(64, "--tokens", min=1, max=1024, help="New tokens per response."),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0),
    top_k: Optional[int] = typer.Option(50, "--top-k", min=1),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the samples and of the left/right order."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, ..."),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch CPU threads for sampling (default: torch's; 1 is fastest on a shared machine).",
    ),
    secure_cookies: Optional[bool] = typer.Option(
        None, "--secure-cookies/--no-secure-cookies", help="Mark cookies Secure (default: on unless bound to loopback)."
    ),
    workdir: Path = WorkdirOpt,
):
    """Serve the comparison interface and its JSON API until interrupted."""
    try:
        import uvicorn

        from scalelab.feedback.app import Settings, create_app
        from scalelab.feedback.server import uvicorn_config
    except ImportError as e:
        raise UserError(f"the feedback server needs the feedback extra ({e.name} is missing): "
                        "pip install 'scalelab[feedback]'") from None  # fmt: skip
    import random

    from scalelab.feedback.db import MODES
    from scalelab.feedback.responder import Responder, load_models

    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use helpful or red-team")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    loaded = load_models([m.strip() for m in models.split(",") if m.strip()], workdir, device=device)
    responder = Responder(loaded, tokens, temperature, top_k, random.Random(seed))
    loopback = host in LOOPBACK
    settings = Settings(mode=mode, prompts=read_prompts(prompts) if prompts else [],
                        secure_cookies=(not loopback) if secure_cookies is None else secure_cookies)  # fmt: skip
    if not loopback:
        note(f"warning: serving on {host}, reachable from other machines; put it behind TLS (cookies are Secure)")
    app = create_app(_db(workdir, must_exist=False), responder, settings)
    note(f"feedback server on http://{host}:{port}  models: {', '.join(responder.model_names)}  mode: {mode}")
    uvicorn.Server(uvicorn_config(app, host, port)).run()


@feedback_app.command("add-labeller")
def add_labeller_cmd(name: str = typer.Argument(..., help="The labeller's name."), workdir: Path = WorkdirOpt,
                     json_out: bool = JsonOpt):  # fmt: skip
    """Add a labeller and print their sign-in token once (only its hash is stored)."""
    token = _db(workdir, must_exist=False).add_labeller(_labeller_name(name))
    if json_out:
        print_json({"labeller": name, "token": token})
    else:
        say(f"token for {name} (shown once; give it to them privately):")
        say(token)


@feedback_app.command("revoke-labeller")
def revoke_labeller_cmd(name: str = typer.Argument(...), workdir: Path = WorkdirOpt):
    """Revoke a labeller's token and end their sessions; their comparisons are kept."""
    _db(workdir).revoke_labeller(_labeller_name(name))
    say(f"revoked {name}")


@feedback_app.command("labellers")
def labellers_cmd(workdir: Path = WorkdirOpt, json_out: bool = JsonOpt):
    """The labellers, when they were added or revoked, and how many comparisons each made."""
    rows = _db(workdir).labellers()
    if json_out:
        print_json({"labellers": rows})
    else:
        out.print(rows_table(rows, "labellers", left=("name",)))


@feedback_app.command("export")
def export_cmd(out_path: Path = typer.Argument(..., metavar="OUT.jsonl", help="Output JSONL file."),
               format: str = typer.Option("hh", "--format", help="hh (chosen/rejected transcripts) or generic "
                                          "(prompt, chosen, rejected, margin = strength, meta)."),
               workdir: Path = WorkdirOpt, json_out: bool = JsonOpt):  # fmt: skip
    """Write the comparisons as JSONL that `scalelab pm train --format hh|generic` reads."""
    from scalelab.feedback.export import export_comparisons

    result = export_comparisons(_db(workdir), out_path, format)
    if json_out:
        print_json(result.summary())
    else:
        say(
            f"wrote {result.written} comparisons ({format}) to {result.path}"
            + (f"; left out {result.skipped_equal} with equal responses" if result.skipped_equal else "")
        )


@feedback_app.command("elo")
def elo_cmd(workdir: Path = WorkdirOpt, bootstrap: int = typer.Option(1000, "--bootstrap", min=0),
            seed: int = typer.Option(0, "--seed"),
            report: Optional[Path] = typer.Option(None, "--report", help="HTML page of the ratings (default: "
                                                  "<workdir>/reports/feedback-elo.html)."),
            pm: Optional[str] = typer.Option(None, "--pm", help="A preference-model run (id or name): relate its mean "
                                             "score per model to Elo (Bai et al. 2022: ~174 Elo per PM unit)."),
            json_out: bool = JsonOpt):  # fmt: skip
    """Bradley-Terry / Elo ratings of the models with bootstrap intervals, and the win-rate matrix."""
    from scalelab.feedback.elo import elo_ratings, outcomes, write_elo_report
    from scalelab.report import report_path

    rows = _db(workdir).comparisons()
    result = elo_ratings(outcomes(rows), n_bootstrap=bootstrap, seed=seed)
    summary = result.summary()
    if pm is not None:
        from scalelab.feedback.elo import elo_per_pm_unit, pm_scores_by_model

        scores = pm_scores_by_model(_load_pm(pm, workdir), rows)
        summary.update(pm=pm, pm_scores=scores, elo_per_pm_unit=elo_per_pm_unit(result, scores))
    meta = f"PM: {pm}; Elo per unit of PM score: {summary['elo_per_pm_unit']}" if pm else ""
    page = write_elo_report(result, report or report_path(workdir, "feedback-elo"), meta=meta)
    summary["report"] = str(page)
    if json_out:
        print_json(summary)
        return
    out.print(rows_table(result.table(), "Elo (mean 0, 95% bootstrap interval)", left=("model",), spec=".1f"))
    rates = result.win_rate()
    out.print(rows_table([{"model": m, **{o: rates[i][j] for j, o in enumerate(result.models)}}
                          for i, m in enumerate(result.models)], "win rate (row beats column)",
                         left=("model",), spec=".2f"))  # fmt: skip
    if pm is not None:
        say(f"Elo per unit of PM score ({pm}): {summary['elo_per_pm_unit']}; mean PM scores: {summary['pm_scores']}")
    say(f"{result.n_comparisons} comparisons; report: {page}")


def _load_pm(name: str, workdir: Path):
    """A preference model from a PM run in the store, by checked id or name (never a path)."""
    from scalelab.align.pm import PreferenceModel
    from scalelab.feedback.responder import check_model_name
    from scalelab.store import RunStore

    db = workdir / "scalelab.db"
    run = RunStore(db).get_run(check_model_name(name)) if db.is_file() else None
    if run is None:
        raise UserError(f"no run named {name!r} in {workdir}; give a PM run from `scalelab runs`")
    return PreferenceModel.load(workdir / "runs" / check_model_name(run["id"]))
