"""One context-distillation run as a run of the store: created or resumed, checkpointed, recorded.

`distill_context(spec, workdir)` is ``scalelab distill context``: it reuses a completed run of the
same config hash, resumes an unfinished one from its newest checkpoint, or creates a new one, and
records into the store. `distill_worker(cfg_dict, workdir, run_id, threads)` is the sweep's run kind
"distill": the driver created the run, the worker records into files of the run folder.

The student's checkpoints are those of the training loop (`Checkpointer`: weights as safetensors,
the optimizer, the batch position and every RNG), so the student loads with `load_for_inference`
and serves as a PM backbone (``run:NAME``) or an RL policy like any trained model.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from scalelab.align.distill import CacheBatches, DistillSpec, _lr_scale, distill_step, heldout_kl, plain_loss, prepare
from scalelab.atomic import write_json
from scalelab.lease import RunLease
from scalelab.model.gpt import GPT
from scalelab.progress_bar import item_bar
from scalelab.store import RunStore, ensure_workdir
from scalelab.train.checkpoint import latest_checkpoint
from scalelab.train.checkpointer import Checkpointer
from scalelab.train.loop import resolve_device
from scalelab.train.progress import ProgressFile
from scalelab.train.record import FileRecorder, StoreRecorder
from scalelab.train.state import TrainState


def distill_context(spec: DistillSpec, workdir: str | Path, *, progress: bool = False,
                    stop_after: int | None = None) -> dict:  # fmt: skip
    """Distil `spec.prompt` into `spec.model`; returns the run summary (a finished run of this config is reused)."""
    workdir = Path(workdir)
    ensure_workdir(workdir)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    preflight(spec, workdir)  # a prompt that cannot fit is refused before any run is recorded
    store = RunStore.in_workdir(workdir)
    h = spec.config_hash()
    prior = store.find_runs(config_hash=h, group=spec.group)
    done = [r for r in prior if r["status"] == "completed"]
    if done:
        return done[-1]["summary"] | {"reused": True}
    if prior:  # an interrupted or failed run of this config: go on from its checkpoint
        run_id = prior[-1]["id"]
    else:
        run_id = store.create_run(spec.name or "distill", spec.to_dict(), h, group=spec.group)
    return execute(spec, workdir, run_id, StoreRecorder(store, run_id), progress=progress, stop_after=stop_after)


def preflight(spec: DistillSpec, workdir: Path) -> None:
    """Refuse a spec whose prompt is empty, missing, or leaves no room in the model's context."""
    from scalelab.align.distill import resolve_model
    from scalelab.prompting import fit_prompt, load_prompt
    from scalelab.train.checkpoint import load_for_inference

    model, tokenizer, _ = load_for_inference(resolve_model(spec, workdir), workdir, "cpu")
    fit_prompt(load_prompt(spec.prompt), tokenizer, model.cfg.block_size, min_room=spec.window or 2)


def distill_worker(cfg_dict: dict, workdir: str, run_id: str, threads: int | None) -> dict:
    """One distillation as a sweep worker (kind "distill"): records into files (`sweep.worker.run_worker` catches)."""
    spec = DistillSpec.from_dict(cfg_dict)
    if threads or spec.threads:
        torch.set_num_threads(threads or spec.threads)
    recorder = FileRecorder(Path(workdir) / "runs" / run_id)
    return execute(spec, Path(workdir), run_id, recorder, progress_file=True)


def execute(spec: DistillSpec, workdir: Path, run_id: str, recorder, *, progress: bool = False,
            progress_file: bool = False, stop_after: int | None = None) -> dict:  # fmt: skip
    """Build the caches, train the student from its newest checkpoint, evaluate, record; returns the summary."""
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLease(run_dir, run_id):
        try:
            return _execute(spec, workdir, run_id, run_dir, recorder, progress, progress_file, stop_after)
        except BaseException as e:
            recorder.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                            error=f"{type(e).__name__}: {e}"[:2000], finished_at=time.time())  # fmt: skip
            raise


def _execute(spec, workdir, run_id, run_dir, recorder, progress, progress_file, stop_after) -> dict:
    device = resolve_device(spec.device)
    write_json(run_dir / "config.json", spec.to_dict())
    torch.manual_seed(spec.seed)
    prep = prepare(spec, workdir, device)
    eot = prep.tokenizer.eot_id
    teacher = prep.teacher.to(device)
    student = GPT(teacher.cfg).to(device)
    student.load_state_dict(teacher.state_dict())
    student.train()
    counts = student.param_counts()
    opt = torch.optim.AdamW(student.parameters(), lr=spec.lr, betas=(0.9, 0.95), weight_decay=spec.weight_decay)
    sampler = CacheBatches(len(prep.train), spec.batch_size, spec.seed)
    ckpt = Checkpointer(run_dir / "ckpt", spec.ckpt_every, prep.tokenizer, spec.to_dict())
    state, latest = TrainState(), latest_checkpoint(run_dir / "ckpt")
    held = prep.heldout.windows
    if latest is not None and (run_dir / "before.json").is_file():
        state = Checkpointer.load(latest, student, [opt], sampler, device)
        before = json.loads((run_dir / "before.json").read_text())
    else:
        before = {"kl": heldout_kl(student, prep.heldout, eot, device=device),
                  "plain_loss": plain_loss(student, held, eot, device=device),
                  "teacher_loss_prompted": plain_loss(teacher, held, eot, prep.prompt_ids, device=device)}  # fmt: skip
        write_json(run_dir / "before.json", before)
    recorder.update(status="running", started_at=time.time(), error=None, params=counts["params"],
                    params_nonembed=counts["params_nonembed"])  # fmt: skip
    recorder.truncate(state.step if latest is not None else -1)
    pfile = ProgressFile(run_dir / "progress.json" if progress_file else None)
    tokens_per_step = sampler.batch_size * prep.train.windows.shape[1]
    rows: list[tuple] = []
    bar = _bar(progress, spec.steps, state.step)
    t_session, loss = time.perf_counter(), math.nan
    stopped = False
    while state.step < spec.steps:
        for group in opt.param_groups:
            group["lr"] = spec.lr * _lr_scale(spec, state.step)
        t0 = time.perf_counter()
        loss = distill_step(student, opt, prep.train, sampler.next_rows(), eot, spec.grad_clip, device)
        state.train_time += time.perf_counter() - t0
        state.step += 1
        state.tokens += tokens_per_step
        if not math.isfinite(loss):
            raise FloatingPointError(f"the distillation loss became {loss} at step {state.step}; lower the lr")
        if state.step % spec.log_every == 0 or state.step == spec.steps:
            tps = state.tokens / max(state.train_time, 1e-9)
            rows.append((state.step, state.tokens, 0.0, "train", "kl", loss))
            elapsed = state.elapsed + time.perf_counter() - t_session
            eta = (spec.steps - state.step) * state.train_time / max(state.step, 1)
            pfile.write(state.step, spec.steps, loss, None, tps, elapsed, eta)
            if bar is not None:
                bar.update(bar.task_ids[0], completed=state.step, info=f"kl {loss:.4f}  {tps:,.0f} tok/s")
        stopped = stop_after is not None and state.step >= stop_after and state.step < spec.steps
        if ckpt.due(state.step, spec.steps) or stopped:
            recorder.log(rows)
            rows = []
            ckpt.save(student, [opt], sampler, state, state.elapsed + time.perf_counter() - t_session)
        if stopped:
            break
    if bar is not None:
        bar.stop()
    recorder.log(rows)
    state.elapsed += time.perf_counter() - t_session
    if stopped:
        recorder.update(status="interrupted", finished_at=time.time())
        return {"run_id": run_id, "status": "interrupted", "steps": state.step}
    kl_after = heldout_kl(student, prep.heldout, eot, device=device)
    loss_after = plain_loss(student, held, eot, device=device)
    summary = {
        "run_id": run_id, "name": spec.name, "status": "completed", "model": spec.model, "teacher": prep.teacher_path,
        "prompt": prep.prompt.source, "prompt_digest": prep.prompt.digest, **prep.prompt_fit, "data": spec.data,
        "top_k": prep.k, "top_k_note": prep.k_note, "kl_before": before["kl"], "kl_after": kl_after,
        "kl_factor": before["kl"] / kl_after if kl_after > 0 else None,
        "plain_loss_before": before["plain_loss"], "plain_loss_after": loss_after,
        "alignment_tax": loss_after - before["plain_loss"], "teacher_loss_prompted": before["teacher_loss_prompted"],
        "steps": state.step, "tokens": state.tokens, "tokens_per_s": state.tokens / max(state.train_time, 1e-9),
        "train_s": state.train_time, "wall_s": state.elapsed, "final_train_loss": loss,
        "cache": {s: {**st, "folder": str(c.folder)} for (s, st), c in
                  zip(prep.cache_stats.items(), (prep.train, prep.heldout))},
        "params": counts["params"], "params_nonembed": counts["params_nonembed"], "device": str(device),
        "config_hash": spec.config_hash(), "run_dir": str(run_dir),
    }  # fmt: skip
    for name in ("kl_before", "kl_after", "plain_loss_before", "plain_loss_after", "alignment_tax"):
        rows.append((state.step, state.tokens, 0.0, "heldout", name, float(summary[name])))
    recorder.log(rows)
    write_json(run_dir / "summary.json", summary)
    recorder.update(status="completed", summary=summary, finished_at=time.time(), tokens=state.tokens,
                    final_train_loss=loss, final_val_loss=kl_after)  # fmt: skip
    return summary


def _bar(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    bar = item_bar("distill", total, done)
    bar.start()
    return bar
