"""Group commit of SQLite writes: one writer thread, one COMMIT for whatever queued up.

Shared by the metadata store (coffre.meta.sqlite) and the small-blob rows
(coffre.blob.small), which keep their own databases, statements and error rules: this
module holds only the queueing and the commit discipline, below both layers.

Callers on event loops queue jobs; one writer thread takes up to ``max_batch`` of them,
runs them in ONE transaction and COMMITs (with ``synchronous=FULL``, one WAL fsync covers
the batch), and only then answers each caller on its own loop: nothing is acknowledged
before it is durable. When the transaction as a whole fails (BEGIN, a statement that
aborts it, disk full, the COMMIT itself), nothing of it is durable: it is rolled back and
each job runs again alone, so that one job cannot fail the others. Under one caller at a
time this is exactly one transaction per job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

# A job's outcome: its result, or the exception its own caller gets.
Outcome = tuple[Any, BaseException | None]


class CommitThread:
    """The one writer thread of one or more stores (each with its own SQLite file).

    A small PUT commits twice, one after the other: its blob's row, then its object's row.
    With a writer thread per store, each commit wakes a sleeping thread, which sleeps again
    once its batch is done; with one thread for both, a batch of one store that queued while
    the other's was committing runs right after it, without that thread going to sleep and
    being woken again. Measured (4 KiB PUT c16, 5 repetitions side by side,
    docs/benchmarks.md): 0.81x the server CPU per PUT (user and kernel both lower), 1.16x
    the PUTs per second. The cost: a long transaction of one store (a lifecycle or reclaim
    batch) also delays the other's commits, as it already delayed every PUT's object row.

    Each store that uses it calls ``acquire`` once and ``release`` when it closes: the
    thread stops with the last one, after every job queued before.
    """

    def __init__(self, name: str = "coffre-commit") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._users = 0
        self._lock = threading.Lock()

    def acquire(self) -> Executor:
        with self._lock:
            self._users += 1
        return self._pool

    async def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        else:
            # The thread runs jobs in order: once this no-op ran, so did every job queued before it.
            await asyncio.wrap_future(self._pool.submit(_nothing))


def _nothing() -> None:
    return None


class Job:
    """One queued write and the future its caller awaits, on the caller's loop."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def done(self, result: Any, error: BaseException | None) -> None:
        """Writer thread: answer the caller on its loop (which may be closed if it went away)."""
        try:
            self.loop.call_soon_threadsafe(self._set, result, error)
        except RuntimeError:
            pass

    def _set(self, result: Any, error: BaseException | None) -> None:
        if self.future.done():  # the caller was cancelled
            self.abandoned(error)
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)

    def abandoned(self, error: BaseException | None) -> None:
        """Loop thread: the outcome came after the caller went away (nothing to do by default)."""


J = TypeVar("J", bound=Job)


class GroupCommit(Generic[J]):
    """The queue of one writer connection, drained by one thread of ``pool``.

    ``connection()``: the writer connection, None until the store is opened.
    ``run(conn, batch)``: inside the open transaction, one outcome per job, in order; a
    job that fails alone must leave the transaction usable (a SAVEPOINT, or a statement
    that SQLite undoes by itself) and report its exception as its outcome.
    ``prepare(conn, batch)``: before BEGIN (a PRAGMA that cannot change inside a
    transaction). ``commits`` counts the COMMITs made (tests see group commit through it).
    """

    def __init__(self, pool: Executor, connection: Callable[[], sqlite3.Connection | None],
                 run: Callable[[sqlite3.Connection, list[J]], list[Outcome]], *, max_batch: int,
                 failed: Any = None, what: str = "store",
                 prepare: Callable[[sqlite3.Connection, list[J]], None] | None = None) -> None:
        self._pool = pool
        self._connection = connection
        self._run = run
        self._max_batch = max_batch
        self._failed = failed  # the result handed with an exception
        self._what = what
        self._prepare = prepare
        self.commits = 0
        # Jobs queued while the writer is busy, and whether a drain is already scheduled on
        # the writer thread (both guarded by _lock).
        self._queue: deque[J] = deque()
        self._draining = False
        self._lock = threading.Lock()

    async def submit(self, job: J) -> Any:
        """Queue ``job``; its result once the transaction holding it is durable."""
        with self._lock:
            self._queue.append(job)
            schedule = not self._draining
            self._draining = True
        if schedule:
            try:
                self._pool.submit(self._drain)
            except BaseException as exc:  # the pool is shut down: nobody will run the queue
                with self._lock:
                    stranded = list(self._queue)
                    self._queue.clear()
                    self._draining = False
                for j in stranded:
                    if j is not job:
                        j.done(self._failed, exc)
                raise
        return await job.future

    def _drain(self) -> None:
        """Writer thread: commit batches until the queue is empty."""
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    return
                n = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
            self._commit(batch)

    def _commit(self, batch: list[J]) -> None:
        conn = self._connection()
        if conn is None:
            for j in batch:
                j.done(self._failed, RuntimeError(f"{self._what} not opened"))
            return
        try:
            if self._prepare is not None:
                self._prepare(conn, batch)
            conn.execute("BEGIN IMMEDIATE")
            outcomes = self._run(conn, batch)
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - the batch as a whole did not commit
            # Nothing of this batch is durable. Undo it, then run each job alone so that one
            # cannot fail the others.
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if len(batch) == 1:
                batch[0].done(self._failed, exc)
                return
            for j in batch:
                self._commit([j])
            return
        self.commits += 1
        for j, (result, error) in zip(batch, outcomes, strict=True):
            j.done(result, error)
