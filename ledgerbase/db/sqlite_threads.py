"""SQLite's threads: reader connections and the one writer, fed in batches, off the event loop.

A thread-pool hand-off per query costs more than a primary-key lookup itself
(profiled: ``ThreadPoolExecutor.submit`` and the worker wake-up took about a
quarter of a get-by-id request). Here the event loop only puts a request on a
queue; a reader thread takes every request waiting, runs them, and wakes the
loop once for the whole batch. Under load that turns one hand-off per query
into one per batch.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ledgerbase.errors import UnavailableError

_BATCH = 64
_STOP = None

Job = tuple[str, Sequence[Any], bool, "asyncio.Future[Any]"]
Outcome = tuple["asyncio.Future[Any]", Any, "Exception | None"]


class ReaderPool:
    """``size`` read-only connections, each in its own thread, sharing one queue of reads."""

    def __init__(self, path: Path, size: int, connect: Callable[[Path], sqlite3.Connection],
                 translate: Callable[[sqlite3.Error], Exception]) -> None:
        self._path = path
        self._connect = connect
        self._translate = translate
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"sqlite-reader-{i}", daemon=True)
                         for i in range(max(1, size))]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delivery = _Delivery()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the reader threads; results are delivered on ``loop``."""
        self._loop = loop
        self._delivery.loop = loop
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop the threads once the reads already queued are done."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=10)

    def submit(self, sql: str, params: Sequence[Any], one: bool) -> asyncio.Future[Any]:
        """Queue a read; the future gets the first row (``one``) or all rows."""
        assert self._loop is not None, "the reader pool is not started"
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((sql, params, one, future))
        return future

    def _run(self) -> None:
        connection = self._connect(self._path)
        try:
            while True:
                batch, stopping = _take_batch(self._queue)
                self._delivery.put([self._execute(connection, item) for item in batch])
                if stopping:
                    return
        finally:
            connection.close()

    def _execute(self, connection: sqlite3.Connection, job: Job) -> tuple[asyncio.Future[Any], Any, Exception | None]:
        sql, params, one, future = job
        try:
            cursor = connection.execute(sql, params)
            return future, cursor.fetchone() if one else cursor.fetchall(), None
        except sqlite3.Error as error:
            return future, None, self._translate(error)


Item = TypeVar("Item")


def _take_batch(jobs: queue.SimpleQueue[Item | None]) -> tuple[list[Item], bool]:
    """Block for one job, then take whatever else is waiting (up to a batch); True on stop."""
    batch: list[Item] = []
    job = jobs.get()
    while job is not None:
        batch.append(job)
        if len(batch) >= _BATCH:
            return batch, False
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return batch, False
    return batch, True


class _Delivery:
    """Hands finished work back to the event loop, waking it once for everything finished meanwhile.

    A wake-up (``call_soon_threadsafe``: a write to the loop's self-pipe and a
    pass of its selector) per batch cost about 3 us of a get-by-id; finished
    work now waits in a deque and the loop is woken only when no wake-up is
    already pending. Deque operations and the flag are safe under the GIL: work
    finished while a wake-up is pending is drained by it, and work finished
    after the drain began schedules another.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._done: collections.deque[Outcome] = collections.deque()
        self._pending = False

    def put(self, outcomes: list[Outcome]) -> None:
        """From a database thread: queue results and wake the loop if it is not already waking."""
        self._done.extend(outcomes)
        if not self._pending:
            self._pending = True
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._pending = False
        done = self._done
        while done:
            future, result, error = done.popleft()
            if future.cancelled():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


WriteJob = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class Checkpointer:
    """Copies the WAL back into the database file in a thread of its own, after writes.

    SQLite checkpoints by itself inside the COMMIT that takes the WAL past 1,000 pages,
    on the committing connection, and with synchronous=NORMAL that checkpoint waits for
    the WAL and the database file to reach the disk. On the one writer every write queued
    behind it waited too: under single-row updates the writer spent 12% of its time in
    fdatasync with the ledger off and 21% with it on (the ledger writes pages of its own),
    and the server used 0.5-0.8 of its core. Here the writer's connection does not
    checkpoint; this thread runs a PASSIVE checkpoint (which never blocks the writer or a
    reader) after commits, at most one per ``interval`` seconds.
    """

    def __init__(self, connection: sqlite3.Connection, interval: float) -> None:
        self._connection = connection
        self._interval = interval
        self._wrote = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> None:
        """Start the thread (it owns the connection from now on)."""
        self._thread.start()

    def wrote(self) -> None:
        """From the writer: something was committed."""
        if not self._wrote.is_set():
            self._wrote.set()

    def close(self) -> None:
        """Stop the thread and close its connection (SQLite's last close checkpoints anyway)."""
        self._stopping.set()
        self._wrote.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while True:
                self._wrote.wait()
                if self._stopping.is_set():
                    return
                self._wrote.clear()
                try:
                    self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy (another process checkpoints) or failing: the next commit retries
                if self._stopping.wait(self._interval):
                    return
        finally:
            self._connection.close()


# Measured under single-row updates: every 0.05 s the checkpoints took 8 us of CPU per write,
# every 0.25 s 4 us (a page written many times in between is copied once); every 1 s the WAL
# grew to tens of MB and the writer and readers slowed down looking pages up in it.
CHECKPOINT_INTERVAL = 0.2


class RolledBack(Exception):  # noqa: N818 (an outcome, not a failure)
    """Raised by a job whose work is done but must not be kept (``Prefer: tx=rollback``)."""

    def __init__(self, result: Any) -> None:
        super().__init__("rolled back")
        self.result = result


class Writer:
    """The one writer connection, in its own thread, running write jobs with group commit.

    A write request hands over one function that does all its work on the
    writer connection: one hand-off per transaction instead of one per
    statement (measured: an insert took four, and spent most of its time
    waiting for them). Jobs queued meanwhile run back to back in one
    transaction, each inside a savepoint of its own (so each is still all or
    nothing, and a failing job leaves the others alone), and are answered
    together once that transaction has committed: a commit is most of what a
    single-row insert costs SQLite (measured: 46 us per insert committed alone,
    9 us in groups of 32). No job is answered before its commit, so what was
    acknowledged is durable as before. Checkpoints run in a thread of their own
    (``Checkpointer``).
    """

    def __init__(self, path: Path, connect: Callable[[Path], sqlite3.Connection],
                 translate: Callable[[sqlite3.Error], Exception]) -> None:
        self._path = path
        self._connect = connect
        self._translate = translate
        self._schema_version: int | None = None
        self._grouping = False
        self._queue: queue.SimpleQueue[WriteJob | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._delivery = _Delivery()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Open the writer connection in its thread; raises what opening it raised."""
        self._loop = loop
        self._delivery.loop = loop
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Stop after the queued transactions."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def submit(self, work: Callable[[sqlite3.Connection], Any]) -> asyncio.Future[Any]:
        """Queue ``work(connection)``; the future gets its result or exception."""
        assert self._loop is not None, "the writer is not started"
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((work, future))
        return future

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            connection = self._connect(self._path)
            checkpointer = Checkpointer(self._connect(self._path), CHECKPOINT_INTERVAL)
            connection.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException as error:  # reported to start(), which raises it
            if connection is not None:
                connection.close()
            self._failure = error
            self._ready.set()
            return
        checkpointer.start()
        self._ready.set()
        try:
            while True:
                writes, stopping = _take_batch(self._queue)
                if len(writes) == 1 or self._may_group(connection):
                    self._delivery.put(self._run_group(connection, writes))
                else:
                    self._delivery.put([outcome for job in writes
                                        for outcome in self._run_group(connection, [job])])
                checkpointer.wrote()
                if stopping:
                    return
        finally:
            checkpointer.close()
            connection.close()

    def _may_group(self, connection: sqlite3.Connection) -> bool:
        """False while the schema has deferred constraints: SQLite checks them at COMMIT, where
        one job's violation would fail its whole group; such jobs commit one at a time."""
        try:
            version = int(connection.execute("PRAGMA schema_version").fetchone()[0])
            if version != self._schema_version:
                deferred = connection.execute(
                    "SELECT count(*) FROM sqlite_master WHERE lower(sql) LIKE '%deferred%'").fetchone()[0]
                self._schema_version, self._grouping = version, deferred == 0
        except sqlite3.Error:
            return False
        return self._grouping

    def _run_group(self, connection: sqlite3.Connection, writes: list[WriteJob]) -> list[Outcome]:
        """Run ``writes`` in one transaction, a savepoint each; their outcomes once it has committed."""
        outcomes: list[Outcome] = []
        kept: list[Outcome] = []  # done, waiting for the COMMIT
        for work, future in writes:
            try:
                if not connection.in_transaction:
                    connection.execute("BEGIN IMMEDIATE")
                connection.execute("SAVEPOINT lb_write")
            except sqlite3.Error as error:
                outcomes.append((future, None, self._translate(error)))
                continue
            try:
                result = work(connection)
                connection.execute("RELEASE lb_write")
                kept.append((future, result, None))
                continue
            except RolledBack as rolled_back:
                outcome: Outcome = (future, rolled_back.result, None)
            except Exception as error:  # handed to the awaiting request, which raises it
                if isinstance(error, sqlite3.Error):
                    error = self._translate(error)
                outcome = (future, None, error)
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK TO lb_write")
                    connection.execute("RELEASE lb_write")
                except sqlite3.Error as error:
                    outcomes.append((future, None, self._translate(error)))
                    outcomes.extend(_lost(kept, error))
                    kept = []
                    _abandon(connection)
                    continue
            elif kept:
                # SQLite ended the whole transaction (an I/O error, a full disk, an interrupted
                # statement): the jobs before this one went with it, unanswered and unwritten
                outcomes.extend(_lost(kept, outcome[2]))
                kept = []
            outcomes.append(outcome)
        if connection.in_transaction:
            try:
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                _abandon(connection)
                return outcomes + [(future, None, self._translate(error)) for future, _, _ in kept]
        return outcomes + kept


def _lost(kept: list[Outcome], cause: object) -> list[Outcome]:
    """Outcomes for jobs whose work was undone with their group's transaction: try again."""
    return [(future, None, UnavailableError(
        f"the write was undone with the transaction it shared ({cause}); it can be sent again"))
        for future, _, _ in kept]


def _abandon(connection: sqlite3.Connection) -> None:
    """Roll back whatever is left of a transaction that failed."""
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # nothing more to undo
