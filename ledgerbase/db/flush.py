"""The WAL flush after PostgreSQL commits that did not wait for the disk, shared by concurrent writes.

A write numbered by the ledger commits without waiting for its WAL flush (the capture trigger
turns ``synchronous_commit`` off, so the numbering lock is not held through a disk flush;
docs/ledger.md). Before the write is answered, a later transaction that does wait for its
flush must commit: its commit record comes after the write's in the WAL, so once it returns
the write is on disk. One such transaction serves every write whose COMMIT had returned
before it was sent, so the writes that finish while a flush is under way share the next one,
run on a connection of its own, and a write's connection goes back to the pool at its
COMMIT instead of after its flush. With a flush transaction per write (in the COMMIT's round
trip), 16 connections updating rows made 0.50-0.63 disk flushes per write and PostgreSQL
spent 405-465 µs of CPU per write; shared, 0.21-0.28 and 315-355 µs (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

# A transaction that waits for the WAL to be flushed up to its commit, so up to every commit
# before it: PostgreSQL waits only for a transaction that has an id and wrote WAL, and a
# transactional logical message gives it both (``SELECT pg_current_xact_id()`` alone
# commits without waiting). Decoding plugins see an empty message with this prefix.
WAL_FLUSH = "SELECT pg_logical_emit_message(true, 'ledgerbase.flush', '')"


# The connection went away under the flush (not an error of the flush itself).
_LOST = (OSError, asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError,
         asyncpg.AdminShutdownError)


class WalFlusher:
    """Flushes the WAL up to every commit that returned before ``flush`` was called.

    Calls made while a flush transaction runs wait for the next one (the running one may have
    been sent before their commit); that one serves all of them. ``connect`` opens the
    connection the flushes run on; it is opened again after it fails.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._connection: asyncpg.Connection | None = None
        self._next: asyncio.Future[None] | None = None  # the callers of the flush not sent yet
        self._runner: asyncio.Task[None] | None = None
        self.flushes = 0  # flush transactions run, for tests and metrics

    async def flush(self) -> None:
        """Return once the WAL is on disk up to every commit that returned before this call.

        Raises what the flush raised (asyncpg or OSError errors) when it failed; a caller that
        is cancelled does not cancel the flush others wait for.
        """
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._next.add_done_callback(_retrieve)
        waiter = self._next
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        await asyncio.shield(waiter)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                waiter, self._next = self._next, None
                try:
                    await self._flush_once()
                except asyncio.CancelledError:
                    waiter.set_exception(ConnectionError("the WAL flush was interrupted"))
                    raise
                except Exception as error:
                    waiter.set_exception(error)
                else:
                    waiter.set_result(None)
        finally:
            self._runner = None
            if self._next is not None and not self._next.done():  # cancelled with callers queued
                self._next.set_exception(ConnectionError("the WAL flush was interrupted"))
                self._next = None

    async def _flush_once(self) -> None:
        for attempt in (1, 2):
            connection = self._connection
            if connection is None or connection.is_closed():
                self._connection = None
                connection = self._connection = await self._connect()
            try:
                # prepared once (extended protocol), not parsed again for every flush
                await connection.fetchval(WAL_FLUSH)
                self.flushes += 1
                return
            except BaseException as error:
                # a connection in an unknown state is not used again; one that was lost (the
                # server restarted, an idle timeout) is opened again at once, for the flush
                # is only a transaction that waits for the disk and may run twice
                self._connection = None
                connection.terminate()
                if attempt == 2 or not isinstance(error, _LOST):
                    raise

    async def close(self) -> None:
        """Stop flushing and close the connection (callers waiting get an error)."""
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a flush's failure as seen (its callers may all have been cancelled)."""
    if not future.cancelled():
        future.exception()
