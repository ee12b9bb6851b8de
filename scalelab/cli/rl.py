"""`scalelab rl train`: optimise a policy against a preference model (PPO, RLOO, DPO, best-of-N).

Parse, call `scalelab.align.rl.run.run_rl`, print; no science here. Progress goes to stderr; with
``--json`` the last stdout line is one JSON object (reward, kl, sqrt_kl_fit, gold, run_id, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scalelab.cli.common import JsonOpt, SetOpt, WorkdirOpt, key_value_table, out, print_json

rl_app = typer.Typer(no_args_is_help=True, help="RLHF: optimise a policy against a preference model.")


@rl_app.command("train")
def train_cmd(
    policy: Optional[str] = typer.Option(
        None, "--policy", help="The starting policy: an LM run id / name, run folder or checkpoint folder."
    ),
    pm: Optional[str] = typer.Option(
        None, "--pm", help="The proxy preference model: a PM run id or folder (scalelab pm train)."
    ),
    algo: str = typer.Option("ppo", "--algo", help="ppo, rloo, dpo or best-of-n."),
    prompts: str = typer.Option(
        "builtin",
        "--prompts",
        help="'builtin' (function headers of the embedded "
        "corpus) or a file: one prompt per line, or JSONL with a 'prompt' field.",
    ),
    overrides: Optional[list[str]] = SetOpt,
    name: Optional[str] = typer.Option(None, "--name", help="Run name in the store (default: rl-ALGO)."),
    resume: Optional[str] = typer.Option(
        None, "--resume", help="Continue this RL run (id or name) from its newest checkpoint, with its own settings."
    ),
    workdir: Path = WorkdirOpt,
    json_out: bool = JsonOpt,
):
    """Train a policy with RL against a PM; evaluate reward and KL on held-out prompts; record the run.

    Every RLRunSpec field can be set with --set, e.g. --set steps=50 --set lambda_kl=0.01 --set gold=NAME.
    """
    from scalelab.align.rl.config import RLRunSpec
    from scalelab.align.rl.run import run_rl
    from scalelab.config import apply_overrides
    from scalelab.errors import UserError

    if resume is not None:
        summary = run_rl(None, workdir, progress=True, resume=resume)
    else:
        if policy is None:
            raise UserError("give the starting policy: --policy RUN_OR_CHECKPOINT (or --resume RL_RUN)")
        raw = {"policy": policy, "pm": pm, "algo": algo, "prompts": prompts, "name": name or f"rl-{algo}"}
        spec = RLRunSpec.from_dict(apply_overrides(raw, overrides))
        summary = run_rl(spec, workdir, progress=True)  # progress lines go to stderr
    result = {k: v for k, v in summary.items() if k != "evals"}
    result["n_evals"] = len(summary.get("evals", []))
    if json_out:
        print_json(result)
    else:
        fit = summary["sqrt_kl_fit"]
        shown = {**result, "fit_b": fit.get("b"), "fit_b_ci": fit["ci"].get("b"), "fit_r2": fit.get("r2")}
        out.print(key_value_table(shown, ("run_id", "algo", "reward", "kl", "sqrt_kl", "gold", "fit_b", "fit_b_ci",
                                          "fit_r2", "steps", "samples", "wall_s")))  # fmt: skip
