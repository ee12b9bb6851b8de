"""The training loop: one run from a config to a recorded, checkpointed, resumable result.

`train(cfg, workdir)` tokenizes (cached), builds the model, trains with gradient accumulation,
clipping, autocast and an lr schedule, evaluates on fixed validation windows, logs to the run
store, checkpoints atomically, stops cleanly on Ctrl-C and marks NaN runs failed. On CPU a
resumed run reproduces the loss curve of an uninterrupted one exactly.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from scalelab.config import RunConfig
from scalelab.data.batches import RandomWindows, SequentialEpochs, eval_windows
from scalelab.data.shards import prepare_shards
from scalelab.errors import RunDiverged, UserError
from scalelab.flops import flops_per_token, mfu, peak_flops
from scalelab.lease import RunLease
from scalelab.model.gpt import GPT
from scalelab.model.sizes import resolve
from scalelab.store import RunStore, ensure_workdir
from scalelab.train import distributed as dd
from scalelab.train.checkpoint import (
    latest_checkpoint,
    load_state,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from scalelab.train.optim import build_optimizers, set_lr
from scalelab.train.progress import TrainProgress
from scalelab.train.record import FileRecorder, StoreRecorder
from scalelab.train.resume import check_resumable, config_change
from scalelab.train.schedule import lr_factor


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r} but no CUDA device is available; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"train.device={name!r} but there are {torch.cuda.device_count()} CUDA devices; use 'cuda'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"train.device={name!r} but MPS is not available here; use 'cpu' or 'auto'")
    return dev


@torch.no_grad()
def evaluate(model: GPT, windows, device: torch.device, ctx, d: dd.Dist) -> float:
    """Mean loss over fixed windows (n_batches, B, T + 1), split across processes."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in windows[d.rank :: d.world]:
        t = torch.from_numpy(batch).to(device)
        with ctx:
            _, loss = model(t[:, :-1], t[:, 1:])
        total += loss.item()
        count += 1
    model.train(was)
    if d.enabled:
        return dd.all_mean(total, d, device) / max(dd.all_mean(count, d, device), 1e-9)
    return total / max(count, 1)


class _StopFlag:
    """SIGINT (Ctrl-C) or SIGTERM (what SLURM and Kubernetes send before killing) asks the loop to
    checkpoint and stop at the next step; a second signal aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.set = False
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(
    cfg: RunConfig,
    workdir: str | Path,
    *,
    resume: str | None = None,
    group: str | None = None,
    target_val_loss: float | None = None,
    progress: bool = True,
    extra_evals=None,
    stop_after: int | None = None,
    run_id: str | None = None,
    record: str = "store",
) -> dict:
    """Train one run and return its summary (also stored in the run store).

    `resume` names a run (id, id prefix or name) to continue from its latest checkpoint.
    `extra_evals` is a list of callables (model, step) -> {name: value}, logged at each eval.
    `stop_after` stops (as an interruption) after that many steps: for tests of resumption.
    `run_id` + `record="files"` is the sweep-worker mode: the driver created the run, the worker
    writes its record into files in the run folder (resuming from a checkpoint there if any), and
    the driver ingests them, so that only the driver writes the store.
    """
    workdir = Path(workdir)
    ensure_workdir(workdir)
    tc = cfg.train
    device = resolve_device(tc.device)
    d = dd.setup(device.type)
    if d.enabled and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    try:
        run = _Run(cfg, workdir, device, d, resume, group, target_val_loss, progress, extra_evals, stop_after,
                   run_id, record)  # fmt: skip
        with run.owned():
            return run.go()
    finally:
        dd.teardown(d)


class _Run:
    def __init__(self, cfg, workdir, device, d, resume, group, target, progress, extra_evals, stop_after,
                 given_id=None, record="store"):  # fmt: skip
        self.cfg, self.tc, self.workdir, self.device, self.d = cfg, cfg.train, workdir, device, d
        self.target, self.extra_evals, self.stop_after = target, extra_evals or [], stop_after
        # tokens: rank 0 first, so that other ranks read the cache
        if d.main:
            self.shards = prepare_shards(cfg.data, workdir / "cache", progress=progress)
        if d.enabled:
            torch.distributed.barrier()
            if not d.main:
                self.shards = prepare_shards(cfg.data, workdir / "cache", progress=False)
        self.gpt_cfg = resolve(cfg.model, self.shards.vocab_size)
        self.store = RunStore.in_workdir(workdir) if d.main and record == "store" else None
        self.prior: dict | None = None  # the store row of a run being resumed by name or id
        run_id = given_id
        if d.main and given_id is None:
            run_id = self._open_run(resume, group)
        self.run_id = dd.broadcast(run_id, d)
        self.run_dir = workdir / "runs" / self.run_id
        self.ckpt_dir = self.run_dir / "ckpt"
        self.resume_from = latest_checkpoint(self.ckpt_dir) if (resume or given_id) else None
        self.rec = None
        if d.main:
            self.rec = StoreRecorder(self.store, self.run_id) if record == "store" else FileRecorder(self.run_dir)
        self.progress = TrainProgress(enabled=progress and d.main)
        self.accounting = None
        self.resumed = bool(resume or (given_id and self.resume_from is not None))
        self.started = False  # set once the run is recorded as running (its checkpoint loaded)
        self.recorded = False  # set once _finish wrote the outcome
        self.stop = _StopFlag()
        self.config_history: list = []

    @contextmanager
    def owned(self):
        """Hold the run's lease while training; an exception marks the run failed (with its text) and
        a second Ctrl-C / SIGTERM marks it interrupted, then the exception goes on."""
        lease = RunLease(self.run_dir, self.run_id).acquire() if self.d.main else None
        try:
            with self.stop:  # from here a signal checkpoints: the loop checks the flag after each step
                yield
        except BaseException as e:
            if self.d.main and not self.recorded and (self.started or not self.resumed):
                aborted = isinstance(e, KeyboardInterrupt)
                self.rec.update(status="interrupted" if aborted else "failed", finished_at=time.time(),
                                error=None if aborted else f"{type(e).__name__}: {e}")  # fmt: skip
            raise
        finally:
            self.progress.stop()
            if lease is not None:
                lease.release()

    # ------------------------------------------------------------------ run record
    def _open_run(self, resume: str | None, group: str | None) -> str:
        store, cfg = self.store, self.cfg
        if resume:
            prior = store.get_run(resume)
            if prior is None:
                raise UserError(f"no run {resume!r} in {store.path}; see `scalelab runs`")
            check_resumable(prior["config"], cfg, self.gpt_cfg)
            self.prior = prior
            if prior["status"] == "completed" and (cfg.train.iters or 0) <= prior["summary"].get("iters", 0):
                raise UserError(f"run {prior['id']} already completed; raise train.iters to train it further")
            return prior["id"]
        counts = _counts(self.gpt_cfg)
        run_id = store.create_run(
            cfg.name, cfg.to_dict(), cfg.config_hash(), group=group, world_size=self.d.world,
            params=counts["params"], params_nonembed=counts["params_nonembed"],
            flops_per_token=self._flops_per_token(counts),
        )  # fmt: skip
        return run_id

    def _record_config(self, step: int) -> None:
        """Resumed with other settings: the store gets the config that runs now, the summary its history."""
        if self.prior is None:
            return
        self.config_history = list(self.prior["summary"].get("config_history", []))
        change = config_change(self.prior["config"], self.cfg, step)
        if change is not None:
            self.config_history.append(change)
            self.store.update_config(self.run_id, self.cfg.to_dict(), self.cfg.config_hash())
            self.rec.update(summary=self.prior["summary"] | {"config_history": self.config_history})

    def _flops_per_token(self, counts: dict) -> int:
        g = self.gpt_cfg
        return flops_per_token(counts["params_flops"], g.n_layer, g.n_head, g.head_dim, g.block_size)

    # ------------------------------------------------------------------ main
    def go(self) -> dict:
        cfg, tc, d, device = self.cfg, self.tc, self.d, self.device
        torch.manual_seed(tc.seed)
        model = GPT(self.gpt_cfg).to(device)
        counts = model.param_counts()
        fpt = self._flops_per_token(counts)
        opts = build_optimizers(model, tc, device)
        T, B = self.gpt_cfg.block_size, tc.batch_size
        tokens_per_step = B * T * tc.grad_accum * d.world
        iters = tc.iters if tc.iters is not None else math.ceil(tc.tokens / tokens_per_step)
        train_tokens = self.shards.tokens("train")
        repeated_w = None
        if cfg.data.repeat_fraction > 0:
            from scalelab.data.repetition import RepetitionMixer

            sampler = RepetitionMixer(
                train_tokens, self.shards.doc_starts("train"), T, B, iters, cfg.data.repeat_fraction,
                cfg.data.repeat_epochs, granularity=cfg.data.repeat_unit, seed=tc.seed, rank=d.rank,
                world=d.world, grad_accum=tc.grad_accum,
            )  # fmt: skip
            repeated_w = sampler.repeated_eval_windows(tc.eval_batches, B, seed=tc.seed)
            self.accounting = sampler.accounting()
        elif tc.sampling == "sequential":
            sampler = SequentialEpochs(train_tokens, T, B, tc.seed, d.rank, d.world)
        else:
            sampler = RandomWindows(train_tokens, T, B, tc.seed, d.rank)
        val_w = eval_windows(self.shards.tokens("val"), T, B, tc.eval_batches, tc.eval_seed)
        train_w = eval_windows(train_tokens, T, B, tc.eval_batches, tc.eval_seed + 1)
        final_batches = tc.final_eval_batches or tc.eval_batches
        state = {"step": 0, "tokens": 0, "elapsed": 0.0, "train_time": 0.0, "best_val": None,
                 "time_to_target": None, "last_val": None, "last_train_est": None}  # fmt: skip
        if self.resume_from is not None:
            state = self._load(self.resume_from, model, opts, sampler, state)
        if d.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
            self._record_config(state["step"])
            self.rec.update(status="running", started_at=time.time(), error=None)
            self.started = True
            if self.resume_from is not None:
                self.rec.truncate(state["step"])
            else:
                self.rec.truncate(-1)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self._bf16() else nullcontext()
        fwd = dd.apply_ddp(dd.apply_compile(model, tc.compile, tc.compile_mode), d, device)
        rows: list = []
        status, error = "running", None

        def log(step, split, name, value):
            rows.append((step, state["tokens"], state["tokens"] * fpt, split, name, float(value)))

        def eval_now(step, n_batches):
            vw, tw = (val_w, train_w) if n_batches == tc.eval_batches else (
                eval_windows(self.shards.tokens("val"), T, B, n_batches, tc.eval_seed),
                eval_windows(train_tokens, T, B, n_batches, tc.eval_seed + 1))  # fmt: skip
            val = evaluate(model, vw, device, ctx, d)
            est = evaluate(model, tw, device, ctx, d)
            state["last_val"], state["last_train_est"] = val, est
            log(step, "val", "loss", val)
            log(step, "train", "loss_est", est)
            if repeated_w is not None:
                log(step, "repeated", "loss", evaluate(model, repeated_w, device, ctx, d))
            for fn in self.extra_evals:
                for name, value in fn(model, step).items():
                    log(step, "eval", name, value)
            if state["best_val"] is None or val < state["best_val"]:
                state["best_val"] = val
            if self.target is not None and state["time_to_target"] is None and val <= self.target:
                state["time_to_target"] = state["elapsed"] + (time.perf_counter() - wall0)
            self.progress.eval(val)
            return val

        def flush():
            if d.main and rows:
                self.rec.log(rows)
            rows.clear()

        step = state["step"]
        self.progress.start(iters, step)
        wall0 = time.perf_counter()
        mark = wall0
        window_tokens, window_time = 0, 0.0
        stop = self.stop
        if True:
            try:
                while step < iters:
                    set_lr(opts, lr_factor(step, iters, tc.warmup_iters, tc.schedule, tc.min_lr / tc.lr,
                                           tc.decay_fraction))  # fmt: skip
                    loss_sum = 0.0
                    for micro in range(tc.grad_accum):
                        x, y = sampler.next(device)
                        sync = nullcontext()
                        if d.enabled and micro < tc.grad_accum - 1:
                            sync = fwd.no_sync()
                        with sync, ctx:
                            _, loss = fwd(x, y)
                        (loss / tc.grad_accum).backward()
                        loss_sum += loss.detach()
                    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip or float("inf"))
                    for opt in opts:
                        opt.step()
                    for opt in opts:
                        opt.zero_grad(set_to_none=True)
                    step += 1
                    state["tokens"] += tokens_per_step
                    window_tokens += tokens_per_step
                    is_eval = step % tc.eval_every == 0 or step == iters
                    is_ckpt = step % tc.ckpt_every == 0 or step == iters
                    is_log = step % tc.log_every == 0 or is_eval or is_ckpt or step == 1
                    if is_log or device.type == "cpu":
                        train_loss = (loss_sum / tc.grad_accum).item()
                        if not (math.isfinite(train_loss) and math.isfinite(float(gnorm))):
                            raise RunDiverged(f"loss became {train_loss} (grad norm {float(gnorm)}) at step {step}")
                    if is_log:
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        now = time.perf_counter()
                        window_time += now - mark
                        state["train_time"] += now - mark
                        tps = window_tokens / window_time if window_time > 0 else 0.0
                        log(step, "train", "loss", train_loss)
                        log(step, "train", "lr", opts[0].param_groups[0]["lr"])
                        log(step, "train", "tokens_per_s", tps)
                        self.progress.update(step, train_loss, tps)
                        window_tokens, window_time = 0, 0.0
                        if is_eval:
                            eval_now(step, final_batches if step == iters else tc.eval_batches)
                        state["step"] = step
                        if is_ckpt and d.main:
                            self._save(step, model, opts, sampler, state, wall0)
                        if is_eval or is_ckpt:
                            flush()
                        mark = time.perf_counter()
                    halt = stop.set or (self.stop_after is not None and step >= self.stop_after)
                    if dd.any_flag(halt, d, device) and step < iters:
                        state["step"] = step
                        if d.main:
                            self._save(step, model, opts, sampler, state, wall0)
                        status = "interrupted"
                        break
                else:
                    status = "completed"
            except RunDiverged as e:
                status, error = "failed", str(e)
        state["elapsed"] += time.perf_counter() - wall0
        flush()
        return self._finish(status, error, state, step, iters, counts, fpt, tokens_per_step)

    def _bf16(self) -> bool:
        dt = self.tc.dtype
        return dt == "bfloat16" or (dt == "auto" and self.device.type == "cuda")

    # ------------------------------------------------------------------ state
    def _save(self, step, model, opts, sampler, state, wall0) -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise RunDiverged(f"weights became non-finite by step {step}")
        st = dict(state)
        st["elapsed"] = state["elapsed"] + (time.perf_counter() - wall0)
        full = {"state": st, "optimizers": [o.state_dict() for o in opts], "sampler": sampler.state_dict(),
                "rng": rng_state(), "config": self.cfg.to_dict()}  # fmt: skip
        save_checkpoint(self.ckpt_dir, step, model, self.shards.tokenizer, full)

    def _load(self, path: Path, model, opts, sampler, state) -> dict:
        load_weights(model, path, self.device)
        full = load_state(path / "state.pt", self.device)
        for opt, sd in zip(opts, full["optimizers"]):
            opt.load_state_dict(sd)
        sampler.load_state_dict(full["sampler"])
        set_rng_state(full["rng"])
        return dict(full["state"])

    def _finish(self, status, error, state, step, iters, counts, fpt, tokens_per_step) -> dict:
        tps = state["tokens"] / state["train_time"] if state["train_time"] > 0 else 0.0
        peak = peak_flops(torch.cuda.get_device_name(self.device)) if self.device.type == "cuda" else None
        summary = {
            "run_id": self.run_id, "name": self.cfg.name, "status": status, "error": error,
            "params": counts["params"], "params_nonembed": counts["params_nonembed"],
            "flops_per_token": fpt, "iters": step, "iters_planned": iters, "tokens": state["tokens"],
            "flops": state["tokens"] * fpt, "final_train_loss": state["last_train_est"],
            "final_val_loss": state["last_val"], "best_val_loss": state["best_val"],
            "tokens_per_s": tps, "wall_s": state["elapsed"], "train_s": state["train_time"],
            "time_to_target_s": state["time_to_target"], "target_val_loss": self.target,
            "mfu": mfu(fpt, tps, peak * self.d.world if peak else None), "device": str(self.device),
            "world_size": self.d.world, "run_dir": str(self.run_dir), "repetition": self.accounting,
            "config_history": self.config_history,
        }  # fmt: skip
        if self.d.main:
            self.recorded = True
            self.rec.update(
                status=status, error=error, finished_at=time.time(), tokens=state["tokens"],
                flops=state["tokens"] * fpt, final_train_loss=state["last_train_est"],
                final_val_loss=state["last_val"], summary=summary,
            )  # fmt: skip
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        self.progress.stop()
        if status == "failed":
            raise RunDiverged(f"run {self.run_id} failed: {error}; the last good checkpoint is kept in {self.ckpt_dir}")
        return summary


def _counts(gpt_cfg) -> dict:
    with torch.device("meta"):
        return GPT(gpt_cfg).param_counts()

