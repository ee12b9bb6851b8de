"""The training loop: one run from a config to a recorded, checkpointed, resumable result.

`train(cfg, workdir)` tokenizes (cached), builds the model, trains with gradient accumulation,
clipping, autocast and an lr schedule, evaluates on fixed validation windows, logs to the run
store, checkpoints atomically, stops cleanly on Ctrl-C or SIGTERM and marks NaN runs failed. On
CPU a resumed run reproduces the loss curve of an uninterrupted one exactly.

In the manner of torchtitan's trainer the pieces are separate: a typed `TrainState`, `train_step`
(one optimizer step), and an `Evaluator`, a `Checkpointer` and a `MetricLogger` that each own their
cadence; `_Run.go` ties them together. One process owns a run at a time (`scalelab.lease`).
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from scalelab.config import RunConfig
from scalelab.data.batches import RandomWindows, SequentialEpochs
from scalelab.data.shards import prepare_shards
from scalelab.errors import RunDiverged, UserError
from scalelab.flops import flops_per_token, mfu, peak_flops
from scalelab.lease import RunLease
from scalelab.model.gpt import GPT
from scalelab.model.sizes import resolve
from scalelab.store import RunStore, ensure_workdir
from scalelab.train import distributed as dd
from scalelab.train.checkpoint import latest_checkpoint
from scalelab.train.checkpointer import Checkpointer
from scalelab.train.evaluator import Evaluator
from scalelab.train.metrics import MetricLogger
from scalelab.train.optim import build_optimizers
from scalelab.train.precision import autocast, matmul_precision
from scalelab.train.progress import ProgressFile, TrainProgress
from scalelab.train.record import FileRecorder, StoreRecorder
from scalelab.train.resume import check_resumable, config_change
from scalelab.train.schedule import lr_factor
from scalelab.train.state import TrainState
from scalelab.train.step import first_compiled_step, train_step


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
        with run.owned(), matmul_precision(tc.matmul_precision, device):
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
        self.resume, self.group = resume, group
        self.init_info: dict | None = None  # the source of `train.init_from`, once loaded
        run_id = given_id
        if d.main and given_id is None:
            run_id = self._open_run(resume, group)
        self.run_id = dd.broadcast(run_id, d)
        self.run_dir = workdir / "runs" / self.run_id
        self.ckpt_dir = self.run_dir / "ckpt"
        self.rec = None
        if d.main:
            self.rec = StoreRecorder(self.store, self.run_id) if record == "store" else FileRecorder(self.run_dir)
        self.bar = TrainProgress(enabled=progress and d.main)
        self.accounting = None
        self.prior: dict | None = None  # the store row of a run resumed by name or id
        self.resume_from: Path | None = None
        self.resumed = bool(resume or given_id)  # refined once the checkpoint is looked up
        self.started = False  # set once the run is recorded as running (its checkpoint loaded)
        self.recorded = False  # set once _finish wrote the outcome
        self.stop = _StopFlag()
        self.config_history: list = []
        self.trackers = None  # opened in go(), on the main process, when train.trackers names any
        self.compile_s: float | None = None  # wall time of the first, compiling step (`train.compile`)
        self.compile_failed: str | None = None  # why compilation fell back to eager, if it did

    @contextmanager
    def owned(self):
        """Hold the run's lease while training; an exception marks the run failed (with its text) and
        a second Ctrl-C / SIGTERM marks it interrupted, then the exception goes on. A resumed run that
        fails before it starts (a refused checkpoint) keeps its status."""
        lease = RunLease(self.run_dir, self.run_id).acquire() if self.d.main else None
        try:
            with self.stop:  # from here a signal checkpoints: the loop checks the flag after each step
                yield
        except BaseException as e:
            if self.d.main and not self.recorded and (self.started or not self.resumed):
                aborted = isinstance(e, KeyboardInterrupt)
                self.rec.update(status="interrupted" if aborted else "failed", finished_at=time.time(),
                                error=None if aborted else f"{type(e).__name__}: {e}")  # fmt: skip
            if self.trackers is not None:
                self.trackers.finish("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", {})
            raise
        finally:
            self.bar.stop()
            if lease is not None:
                lease.release()

    # ------------------------------------------------------------------ run record
    def _open_run(self, resume: str | None, group: str | None) -> str:
        """The id of the run to resume (checked once its lease is held), or of a newly created one."""
        store, cfg = self.store, self.cfg
        if resume:
            prior = store.get_run(resume)
            if prior is None:
                raise UserError(f"no run {resume!r} in {store.path}; see `scalelab runs`")
            return prior["id"]
        counts = _counts(self.gpt_cfg)
        return store.create_run(
            cfg.name, cfg.to_dict(), cfg.config_hash(), group=group, world_size=self.d.world,
            params=counts["params"], params_nonembed=counts["params_nonembed"],
            flops_per_token=self._flops_per_token(counts),
        )  # fmt: skip

    def _check_resume(self) -> None:
        """With the lease held: may this run go on with this config, and from which checkpoint."""
        if self.resume and self.d.main:
            prior = self.store.get_run(self.run_id)
            check_resumable(prior["config"], self.cfg, self.gpt_cfg)
            done = prior["summary"].get("iters", 0)
            if prior["status"] == "completed" and (self.tc.iters or 0) <= done:
                raise UserError(f"run {prior['id']} already completed; raise train.iters to train it further")
            self.prior = prior
        if self.resumed:
            self.resume_from = latest_checkpoint(self.ckpt_dir)
            self.resumed = self.resume is not None or self.resume_from is not None

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

    def _start(self, state: TrainState) -> None:
        """Record the run as running from `state.step`, dropping metrics logged after that step."""
        if not self.d.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        self._record_config(state.step)
        self.rec.update(status="running", started_at=time.time(), error=None)
        self.started = True
        self.rec.truncate(state.step if self.resume_from is not None else -1)

    def _flops_per_token(self, counts: dict) -> int:
        g = self.gpt_cfg
        return flops_per_token(counts["params_flops"], g.n_layer, g.n_head, g.head_dim, g.block_size)

    # ------------------------------------------------------------------ building
    def _build(self):
        """(model, optimizers, sampler, steps planned, repeated-subset eval windows or None)."""
        cfg, tc, d = self.cfg, self.tc, self.d
        torch.manual_seed(tc.seed)
        model = GPT(self.gpt_cfg).to(self.device)
        opts = build_optimizers(model, tc, self.device)
        T, B = self.gpt_cfg.block_size, tc.batch_size
        iters = tc.iters if tc.iters is not None else math.ceil(tc.tokens / self._tokens_per_step())
        train_tokens = self._train_tokens()
        repeated_w = None
        if cfg.data.repeat_fraction > 0:
            from scalelab.data.repetition import RepetitionMixer

            starts = self.shards.doc_starts("train")
            sampler = RepetitionMixer(
                train_tokens, starts[starts < train_tokens.size], T, B, iters, cfg.data.repeat_fraction,
                cfg.data.repeat_epochs, granularity=cfg.data.repeat_unit, seed=tc.seed, rank=d.rank,
                world=d.world, grad_accum=tc.grad_accum,
            )  # fmt: skip
            repeated_w = sampler.repeated_eval_windows(tc.eval_batches, B, seed=tc.seed)
            self.accounting = sampler.accounting()
        elif tc.sampling == "sequential":
            sampler = SequentialEpochs(train_tokens, T, B, tc.seed, d.rank, d.world)
        else:
            sampler = RandomWindows(train_tokens, T, B, tc.seed, d.rank)
        return model, opts, sampler, iters, repeated_w

    def _train_tokens(self):
        """The training split, cut to its first `data.train_tokens` tokens when set (then cycled by the sampler)."""
        tokens = self.shards.tokens("train")
        cap = self.cfg.data.train_tokens
        if cap is None:
            return tokens
        if cap > tokens.size:
            raise UserError(f"data.train_tokens={cap} but the training split of {self.cfg.data.source!r} holds only "
                            f"{tokens.size} tokens; lower data.train_tokens or use a larger corpus")  # fmt: skip
        return tokens[:cap]

    def _init_weights(self, model: GPT) -> None:
        """`train.init_from` on a fresh start (a resumed run has its own weights in its checkpoint)."""
        from scalelab.train.init_from import load_initial_weights, resolve_init_from

        folder = resolve_init_from(self.tc.init_from, self.workdir, self.run_id, self.group)
        self.init_info = load_initial_weights(model, folder, self.shards.tokenizer, self.device)

    def _tokens_per_step(self) -> int:
        return self.tc.batch_size * self.gpt_cfg.block_size * self.tc.grad_accum * self.d.world

    def _lr_scale(self, step: int, iters: int) -> float:
        tc = self.tc
        return lr_factor(step, iters, tc.warmup_iters, tc.schedule, tc.min_lr / tc.lr, tc.decay_fraction)

    # ------------------------------------------------------------------ main
    def go(self) -> dict:
        tc, d, device = self.tc, self.d, self.device
        self._check_resume()
        model, opts, sampler, iters, repeated_w = self._build()
        state = TrainState()
        if self.resume_from is not None:
            state = Checkpointer.load(self.resume_from, model, opts, sampler, device)
        elif tc.init_from:
            self._init_weights(model)
        self._start(state)
        ctx = autocast(self.tc.dtype, device)
        fwd = dd.apply_ddp(dd.apply_compile(model, tc.compile, tc.compile_mode), d, device)
        counts = model.param_counts()
        fpt = self._flops_per_token(counts)
        evaluator = Evaluator(self.shards.tokens("val"), self._train_tokens(), tc, self.gpt_cfg.block_size,
                              repeated_w, self.extra_evals, device, ctx, d, self.target)  # fmt: skip
        ckpt = Checkpointer(self.ckpt_dir, tc.ckpt_every, self.shards.tokenizer, self.cfg.to_dict(), enabled=d.main)
        progress_file = ProgressFile(self.run_dir / "progress.json" if d.main else None)
        if d.main and tc.trackers:
            from scalelab.interop.trackers import open_trackers

            self.trackers = open_trackers(tc.trackers, self.workdir, self.run_id, self.cfg.name, self.cfg.to_dict())
        logger = MetricLogger(self.rec, tc.log_every, iters, self._tokens_per_step(), fpt, device, self.bar,
                              progress_file, self.trackers)  # fmt: skip
        status, error, first, early = "running", None, state.step, False
        self.bar.start(iters, state.step)
        t0 = time.perf_counter()
        logger.restart_clock()

        def elapsed() -> float:
            return state.elapsed + (time.perf_counter() - t0)

        try:
            while state.step < iters:
                lr_scale = self._lr_scale(state.step, iters)
                if tc.compile and self.compile_s is None:
                    loss, gnorm, fwd, self.compile_s, self.compile_failed = first_compiled_step(
                        model, fwd, opts, sampler, tc, lr_scale, ctx, d, device)  # fmt: skip
                else:
                    loss, gnorm = train_step(model, fwd, opts, sampler, tc, lr_scale, ctx, d, device)
                state.step += 1
                state.tokens += self._tokens_per_step()
                is_eval, is_ckpt = evaluator.due(state.step, iters), ckpt.due(state.step, iters)
                log_now = logger.due(state.step, also=is_eval or is_ckpt)
                eta = (time.perf_counter() - t0) / (state.step - first) * (iters - state.step)
                logger.step_done(state, loss, gnorm, opts[0].param_groups[0]["lr"], log_now, elapsed(), eta)
                if is_eval:
                    logger.eval_done(evaluator.run(model, state, iters, logger.log, elapsed))
                if is_ckpt:
                    ckpt.save(model, opts, sampler, state, elapsed())
                early = is_eval and evaluator.patience_spent(state) and state.step < iters
                if early and not is_ckpt:
                    ckpt.save(model, opts, sampler, state, elapsed())
                if is_eval or is_ckpt:
                    logger.flush()
                if log_now:
                    logger.restart_clock()
                if early:  # Hernandez et al. 2021 fine-tune and train from scratch with early stopping
                    status = "completed"
                    break
                halt = self.stop.set or (self.stop_after is not None and state.step >= self.stop_after)
                if dd.any_flag(halt, d, device) and state.step < iters:
                    ckpt.save(model, opts, sampler, state, elapsed())
                    status = "interrupted"
                    break
            else:
                status = "completed"
        except RunDiverged as e:
            status, error = "failed", str(e)
        state.elapsed = elapsed()
        logger.flush()
        return self._finish(status, error, state, iters, counts, fpt, early)

    def _finish(self, status: str, error: str | None, state: TrainState, iters: int, counts: dict, fpt: int,
                early: bool = False) -> dict:  # fmt: skip
        tps = state.tokens / state.train_time if state.train_time > 0 else 0.0
        peak = peak_flops(torch.cuda.get_device_name(self.device)) if self.device.type == "cuda" else None
        summary = {
            "run_id": self.run_id, "name": self.cfg.name, "status": status, "error": error,
            "params": counts["params"], "params_nonembed": counts["params_nonembed"],
            "flops_per_token": fpt, "iters": state.step, "iters_planned": iters, "tokens": state.tokens,
            "flops": state.tokens * fpt, "final_train_loss": state.last_train_est,
            "final_val_loss": state.last_val, "best_val_loss": state.best_val,
            "tokens_per_s": tps, "wall_s": state.elapsed, "train_s": state.train_time,
            "time_to_target_s": state.time_to_target, "target_val_loss": self.target,
            "mfu": mfu(fpt, tps, peak * self.d.world if peak else None), "device": str(self.device),
            "world_size": self.d.world, "run_dir": str(self.run_dir), "repetition": self.accounting,
            "config_history": self.config_history,
            "best_step": state.best_step, "best_tokens": state.best_tokens, "early_stopped": early,
            "unique_train_tokens": self._train_tokens().size, "init_from": self.init_info,
            "compile_s": self.compile_s, "compile_failed": self.compile_failed,
        }  # fmt: skip
        if self.d.main:
            self.recorded = True
            self.rec.update(
                status=status, error=error, finished_at=time.time(), tokens=state.tokens,
                flops=state.tokens * fpt, final_train_loss=state.last_train_est,
                final_val_loss=state.last_val, summary=summary,
            )  # fmt: skip
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            if self.trackers is not None:
                self.trackers.finish(status, summary)
        self.bar.stop()
        if status == "failed":
            raise RunDiverged(f"run {self.run_id} failed: {error}; the last good checkpoint is kept in {self.ckpt_dir}")
        return summary


def _counts(gpt_cfg) -> dict:
    with torch.device("meta"):
        return GPT(gpt_cfg).param_counts()
