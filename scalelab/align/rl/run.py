"""One RL run end to end, recorded in the store: `run_rl` (``scalelab rl train``) and `rl_worker` (kind "rl").

As a PM run does (align/pm_run.py): `run_rl(spec, workdir)` creates the run in the store and records
into it; `rl_worker(cfg_dict, workdir, run_id, threads)` is the same run as a sweep worker writing
``record.json`` / ``metrics.jsonl`` / ``progress.json`` into the run folder for the driver. The run:

1. loads the policy, a frozen reference copy, the proxy PM, eval PMs and gold reward, the prompts;
2. resumes from its newest intact checkpoint (``<run>/ckpt/step_*``, with manifest), if any;
3. trains `steps` updates, logging train metrics every step (split "train") and evaluating on
   held-out prompts every `eval_every` steps (split "eval"); best-of-N trains nothing and logs one
   eval point per N (step = N);
4. checkpoints every `ckpt_every` steps and at the end (the policy as a scalelab LM checkpoint,
   loadable by ``scalelab sample``; optimizer, value function, KL controller, RNGs in state.pt);
5. fits reward = a + b sqrt(KL) over the eval points (Bai et al. 2022) and records the summary.

NaN rewards or a KL explosion stop the run (status failed) with a message naming the last good
checkpoint, which is kept.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from scalelab.align.pm_data import load_set
from scalelab.align.pm_run import PMRunSpec, load_data
from scalelab.align.pm_train import write_progress
from scalelab.align.rl.config import RLRunSpec
from scalelab.align.rl.fits import sqrt_kl_fit
from scalelab.align.rl.models import gold_reward_fn, load_policy, load_scorer
from scalelab.align.rl.prompts import encode_prompts, load_prompts, split_prompts
from scalelab.align.rl.rewards import RewardFn
from scalelab.align.rl.trainer import Models, RLStopped, RLTrainer
from scalelab.atomic import write_json
from scalelab.errors import UserError
from scalelab.store import RunStore
from scalelab.train.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from scalelab.train.loop import resolve_device
from scalelab.train.record import FileRecorder, StoreRecorder


def run_rl(spec: RLRunSpec | None, workdir: str | Path, *, progress: bool = False,
           rewards: dict[str, RewardFn] | None = None, resume: str | None = None) -> dict:  # fmt: skip
    """Create the run in the store, train, record; returns the summary. `rewards` overrides gold names (tests).

    With `resume` (a run id / name), continue that RL run from its newest checkpoint with its own spec.
    """
    workdir = Path(workdir)
    store = RunStore.in_workdir(workdir)
    if resume is not None:
        run = store.get_run(resume)
        if run is None or set(run["config"]) - set(RLRunSpec.model_fields) or "policy" not in run["config"]:
            raise UserError(f"{resume!r} is not an RL run in {workdir}; see `scalelab runs`")
        spec, run_id = RLRunSpec.from_dict(run["config"]), run["id"]
    if spec.threads:
        torch.set_num_threads(spec.threads)
    setup = _setup(spec, workdir, rewards)
    if resume is None:
        counts = setup["models"].policy.param_counts()
        run_id = store.create_run(spec.name, spec.to_dict(), spec.config_hash(), group=spec.group,
                                  params=counts["params"], params_nonembed=counts["params_nonembed"])  # fmt: skip
    return execute(spec, setup, workdir, run_id, StoreRecorder(store, run_id), progress=progress)


def rl_worker(cfg_dict: dict, workdir: str, run_id: str, threads: int | None) -> dict:
    """One RL run as a sweep worker (kind "rl"): resumes its own checkpoint (`sweep.worker.run_worker` catches)."""
    spec = RLRunSpec.from_dict(cfg_dict)
    if threads or spec.threads:
        torch.set_num_threads(threads or spec.threads)
    recorder = FileRecorder(Path(workdir) / "runs" / run_id)
    setup = _setup(spec, Path(workdir), None)
    counts = setup["models"].policy.param_counts()
    recorder.update(params=counts["params"], params_nonembed=counts["params_nonembed"])
    return execute(spec, setup, Path(workdir), run_id, recorder, progress_file=True)


def _setup(spec: RLRunSpec, workdir: Path, rewards: dict[str, RewardFn] | None) -> dict:
    """Models, prompts and DPO pairs of a spec, every input checked before the run is created."""
    policy, reference, tokenizer, info = load_policy(spec, workdir)
    pm = load_scorer(spec.pm, spec, workdir, tokenizer, "pm") if spec.pm else None
    eval_pms = [load_scorer(ref, spec, workdir, tokenizer, f"eval_pms[{i}]") for i, ref in enumerate(spec.eval_pms)]
    gold = None
    if spec.gold:
        gold = (rewards or {}).get(spec.gold) or gold_reward_fn(spec.gold)
    texts = load_prompts(spec.prompts, n_builtin=spec.n_prompts, field=spec.prompt_field)
    if not texts:
        raise UserError(f"no prompts in {spec.prompts!r}; give a prompt file with at least one prompt")
    train, held = split_prompts(texts, spec.eval_prompts)
    ctx = policy.cfg.block_size
    ids = tuple(encode_prompts(t, tokenizer, context=ctx, max_new_tokens=spec.max_new_tokens, what=w)
                for t, w in ((train, "training"), (held, "eval")))  # fmt: skip
    dpo_pairs = _dpo_pairs(spec, pm, tokenizer, ctx) if spec.algo == "dpo" else None
    models = Models(policy, reference, tokenizer, pm, eval_pms, gold)
    return {"models": models, "prompts": (train, held), "ids": ids, "info": info, "dpo_pairs": dpo_pairs}


def _dpo_pairs(spec: RLRunSpec, pm, tokenizer, context: int) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, chosen + eot, rejected + eot) token ids of the DPO comparisons that fit the context."""
    pm_spec = (pm.meta.get("spec") if pm is not None else None) or None
    if spec.dpo_data:
        data, comparisons = spec.dpo_data, load_set(spec.dpo_data, seed=spec.seed).comparisons
    elif pm_spec:  # exactly the PM's training split (Bai et al. compare against the PM's own comparisons)
        data = pm_spec["data"]
        comparisons = load_data(PMRunSpec.from_dict(pm_spec), pm)[1]
    else:
        raise UserError("DPO needs comparisons: set dpo_data (a comparison file) or give --pm a PM run trained on one")
    eot, out = tokenizer.eot_id, []
    for c in comparisons:
        prompt = [int(t) for t in tokenizer.encode(c.prompt)] if c.prompt else [eot]
        chosen = [int(t) for t in tokenizer.encode(c.chosen)] + [eot]
        rejected = [int(t) for t in tokenizer.encode(c.rejected)] + [eot]
        if len(prompt) + max(len(chosen), len(rejected)) <= context:
            out.append((prompt, chosen, rejected))
    if not out:
        raise UserError(f"none of the {len(comparisons)} DPO comparisons of {data!r} fits the policy's context of "
                        f"{context} tokens; give shorter comparisons")  # fmt: skip
    g = torch.Generator().manual_seed(spec.seed)
    return [out[i] for i in torch.randperm(len(out), generator=g).tolist()]


def _checkpoint(run_dir: Path, trainer: RLTrainer, spec: RLRunSpec) -> Path:
    state = {**trainer.state_dict(), "rng": rng_state(), "config_hash": spec.config_hash()}
    return save_checkpoint(run_dir / "ckpt", trainer.step_no, trainer.m.policy, trainer.m.tokenizer, state)


def _resume(run_dir: Path, trainer: RLTrainer, spec: RLRunSpec, recorder) -> int:
    """Load the newest intact checkpoint of the run folder, if any; returns its step (0: fresh start)."""
    folder = latest_checkpoint(run_dir / "ckpt") if (run_dir / "ckpt").is_dir() else None
    if folder is None:
        recorder.truncate(-1)
        return 0
    state = load_state(folder / "state.pt")
    if state.get("config_hash") != spec.config_hash():
        raise UserError(f"{folder} belongs to a run with another configuration; start a new run (another run id)")
    load_weights(trainer.m.policy, folder, trainer.device)
    trainer.load_state_dict(state)
    set_rng_state(state["rng"])
    recorder.truncate(trainer.step_no)
    return trainer.step_no


def _rows(step: int, tokens: int, split: str, metrics: dict) -> list[tuple]:
    return [(step, tokens, 0.0, split, k, float(v)) for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(float(v))]  # fmt: skip


def execute(spec: RLRunSpec, setup: dict, workdir: Path, run_id: str, recorder, *, progress: bool = False,
            progress_file: bool = False) -> dict:  # fmt: skip
    """Train (resuming the run folder's checkpoint), evaluate, checkpoint and record one RL run."""
    device = resolve_device(spec.device)
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", spec.to_dict())
    m: Models = setup["models"]
    for model in (m.policy, m.reference, m.pm, *m.eval_pms):
        if model is not None:
            model.to(device)
    torch.manual_seed(spec.seed)
    trainer = RLTrainer(spec, m, setup["prompts"], setup["ids"], device, setup["info"]["lr"], setup["dpo_pairs"])
    start = _resume(run_dir, trainer, spec, recorder)
    recorder.update(status="running", started_at=time.time(), error=None)
    pfile = run_dir / "progress.json" if progress_file else None
    t0 = time.perf_counter()
    try:
        _loop(spec, trainer, run_dir, recorder, start, pfile, progress, t0)
    except BaseException as e:
        last = latest_checkpoint(run_dir / "ckpt") if (run_dir / "ckpt").is_dir() else None
        kept = f"; the last good checkpoint is kept: {last}" if last else "; no checkpoint was written yet"
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        recorder.update(status=status, error=f"{type(e).__name__}: {e}{kept}"[:2000], finished_at=time.time())
        if isinstance(e, RLStopped):
            raise RLStopped(f"{e}{kept}") from None
        raise
    summary = _summary(spec, trainer, run_id, setup["info"], time.perf_counter() - t0)
    write_json(run_dir / "summary.json", summary)
    recorder.update(status="completed", summary=summary, finished_at=time.time())
    return summary


def _loop(spec, trainer: RLTrainer, run_dir: Path, recorder, start: int, pfile, progress: bool, t0: float) -> None:
    if spec.algo == "best-of-n":
        for point in trainer.best_of_n():
            recorder.log(_rows(point["n"], trainer.tokens, "eval", {k: v for k, v in point.items() if k != "n"}))
        return
    if start == 0 and not trainer.evals:
        recorder.log(_rows(0, 0, "eval", trainer.evaluate()))  # the starting point: KL 0
    for _ in range(start, spec.steps):
        metrics = trainer.step()
        step = trainer.step_no
        recorder.log(_rows(step, trainer.tokens, "train", metrics))
        if step % spec.eval_every == 0 or step == spec.steps:
            recorder.log(_rows(step, trainer.tokens, "eval", trainer.evaluate()))
        if step % spec.ckpt_every == 0 or step == spec.steps:
            _checkpoint(run_dir, trainer, spec)
        elapsed = time.perf_counter() - t0
        loss = metrics.get("loss", -metrics.get("reward", float("nan")))
        if pfile is not None:
            rate = (step - start) / elapsed if elapsed else None
            write_progress(pfile, step, spec.steps, loss, None, elapsed,
                           (spec.steps - step) / rate if rate else None)  # fmt: skip
        if progress:
            keys = ("reward", "kl", "loss", "dpo_accuracy")
            shown = " ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)
            print(f"[rl] step {step}/{spec.steps} {shown} ({elapsed:.0f}s)", file=sys.stderr, flush=True)


def _summary(spec: RLRunSpec, trainer: RLTrainer, run_id: str, info: dict, wall_s: float) -> dict:
    evals = trainer.evals
    last = evals[-1] if evals else {}
    if spec.algo == "best-of-n":
        last = max(evals, key=lambda e: e["step"]) if evals else {}
    fit = sqrt_kl_fit([e["kl"] for e in evals], [e["reward"] for e in evals], n_boot=1000, seed=spec.seed)
    return {"run_id": run_id, "name": spec.name, "algo": spec.algo, "reward": last.get("reward"),
            "kl": last.get("kl"), "sqrt_kl": last.get("sqrt_kl"), "gold": last.get("gold"),
            **{k: v for k, v in last.items() if k.startswith("pm_")}, "sqrt_kl_fit": fit,
            "evals": evals, "steps": trainer.step_no, "samples": trainer.samples, "tokens": trainer.tokens,
            "wall_s": wall_s, "lr": info["lr"], "policy_path": info["path"], "config_hash": spec.config_hash(),
            "status": "completed"}  # fmt: skip


def read_summary(run_dir: Path) -> dict:
    """The summary.json an RL run wrote (for studies reading finished runs)."""
    return json.loads((Path(run_dir) / "summary.json").read_text())
