"""Group commit of comparisons: one writer thread, one transaction and one fsync per batch.

With one transaction (and one fsync) per comparison, submits from many labellers at once queue
behind each other's fsyncs: 50 back-to-back labellers measured a p95 of 699 ms on a quiet 2-core
machine (benchmarks/RESULTS_feedback.md). Here a single writer thread takes the first waiting
comparison and every other one already waiting (up to `max_batch`), stores them in one
transaction (`FeedbackDB.add_comparisons`: every check before any write, so one refused comparison
does not undo the others), commits once with ``synchronous=FULL``, and only then completes each
request's future. The durability promise is unchanged: a comparison acknowledged is on disk. There is no
timer: while one batch is being committed the next one gathers, so a lone submit waits for one
commit only, and a crowd shares the fsyncs (the batch grows with the load).

A coroutine on an event loop submits with `submit_async` and awaits an asyncio future: the writer
settles all of one batch's futures of a loop with one `call_soon_threadsafe` (one wake-up of the
loop per commit, not one per request, and no `concurrent.futures.Future` + `wrap_future` pair,
with its lock and condition, per request).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future

from scalelab.feedback.db import ComparisonItem, FeedbackDB


class GroupCommitter:
    """Submit comparisons from any thread; each returned future completes after its batch's commit."""

    def __init__(self, db: FeedbackDB, max_batch: int = 256):
        self.db = db
        self.max_batch = max_batch
        self.batches = 0
        """Commits made (for the benchmark: comparisons / batches is the mean batch size)."""
        self.committed = 0
        self._queue: queue.SimpleQueue[tuple[ComparisonItem, Future | asyncio.Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="feedback-group-commit", daemon=True)
        self._thread.start()

    def submit(self, item: ComparisonItem) -> Future:
        """Queue one comparison; the future holds its row id, or raises its `NotFound` / `Conflict`
        (or the commit's error)."""
        if not self._thread.is_alive():
            raise RuntimeError("the group committer is closed")
        fut: Future = Future()
        self._queue.put((item, fut))
        return fut

    def submit_async(self, item: ComparisonItem) -> asyncio.Future:
        """`submit` for a coroutine on the running event loop: await the returned future (on that loop)."""
        if not self._thread.is_alive():
            raise RuntimeError("the group committer is closed")
        fut = asyncio.get_running_loop().create_future()
        self._queue.put((item, fut))
        return fut

    def close(self, timeout: float | None = 10.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _next_batch(self) -> tuple[list[tuple[ComparisonItem, Future | asyncio.Future]], bool]:
        """(the first waiting comparison and all others already waiting, whether to stop after it)."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            # a thread's request cancelled before its commit is not stored (a coroutine's is: its loop owns it)
            live = [(item, f) for item, f in batch if not isinstance(f, Future) or f.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results: list = self.db.add_comparisons([item for item, _ in live])
            except BaseException as e:  # the commit failed: nothing of this batch is stored, every request says so
                results = [e] * len(live)
            else:
                self.batches += 1
                self.committed += sum(not isinstance(r, BaseException) for r in results)
            by_loop: dict[asyncio.AbstractEventLoop, list] = {}
            for (_, fut), result in zip(live, results, strict=True):
                if isinstance(fut, Future):
                    _settle(fut, result)
                else:
                    by_loop.setdefault(fut.get_loop(), []).append((fut, result))
            for loop, settled in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle_all, settled)
                except RuntimeError:  # that loop is closed: nobody waits on these futures any more
                    pass


def _settle(fut: Future | asyncio.Future, result: int | BaseException) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


def _settle_all(settled: list[tuple[asyncio.Future, int | BaseException]]) -> None:
    """On the futures' own loop: complete each (a cancelled one is skipped)."""
    for fut, result in settled:
        _settle(fut, result)
