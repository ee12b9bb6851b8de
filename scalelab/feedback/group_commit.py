"""Group commit of comparisons: one writer thread, one transaction and one fsync per batch.

With one transaction (and one fsync) per comparison, submits from many labellers at once queue
behind each other's fsyncs: 50 back-to-back labellers measured a p95 of 699 ms on a quiet 2-core
machine (benchmarks/RESULTS_feedback.md). Here a single writer thread takes the first waiting
comparison and every other one already waiting (up to `max_batch`), stores them in one
transaction (`FeedbackDB.add_comparisons`: a savepoint each, so one refused comparison does not
undo the others), commits once with ``synchronous=FULL``, and only then completes each request's
future. The durability promise is unchanged: a comparison acknowledged is on disk. There is no
timer: while one batch is being committed the next one gathers, so a lone submit waits for one
commit only, and a crowd shares the fsyncs (the batch grows with the load).
"""

from __future__ import annotations

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
        self._queue: queue.SimpleQueue[tuple[ComparisonItem, Future] | None] = queue.SimpleQueue()
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

    def close(self, timeout: float | None = 10.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _next_batch(self) -> tuple[list[tuple[ComparisonItem, Future]], bool]:
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
            if not batch:
                continue
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            try:
                results = self.db.add_comparisons([item for item, _ in live])
            except BaseException as e:  # the commit failed: nothing of this batch is stored, every request says so
                for _, fut in live:
                    fut.set_exception(e)
                continue
            self.batches += 1
            self.committed += sum(not isinstance(r, Exception) for r in results)
            for (_, fut), result in zip(live, results, strict=True):
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
