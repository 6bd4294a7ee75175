"""The outbox publisher: committed changes after each sink's cursor, to that sink, in order.

The outbox is the ledger's changes table (written in the same transaction as every
change), so nothing rolled back is ever published. Each sink has a cursor row (the last
sequence number its broker acknowledged) and a lease on it: one server per database
publishes to a sink, and another takes over when the lease runs out (a server that dies
stops renewing it). The cursor moves only after the broker acknowledged, and only while
the lease is still ours, so delivery is at-least-once and in commit order.

A sink whose broker is down is retried with capped exponential backoff in its own task:
API writes never wait for a broker, and the other sink keeps publishing. Webhooks are
sinks too (``ledgerbase.events.delivery``), one per configured webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ledgerbase.config import Settings
from ledgerbase.db.engine import Database, PostgresDatabase, Transaction
from ledgerbase.errors import LedgerbaseError
from ledgerbase.events.deadletters import DeadLetterStore
from ledgerbase.events.delivery import WebhookSink
from ledgerbase.events.sinks import Backoff, NatsSink, RedisSink, Sink
from ledgerbase.events.webhook import parse_webhooks
from ledgerbase.realtime.changes import ChangeReader

log = structlog.get_logger("ledgerbase.events")

_LOCK_KEY = 0x4C42_4556  # "LBEV": serializes creating the cursors table across servers


@dataclass(frozen=True, slots=True)
class CursorQueries:
    """The cursor table's statements in one dialect."""

    setup: tuple[str, ...]
    insert: str  # (sink, seq)
    acquire: str  # (holder, lease seconds, sink) -> seq when the lease is ours
    advance: str  # (seq, holder, lease seconds, sink) -> seq when the lease is still ours
    release: str  # (holder, sink)
    read: str  # (sink) -> seq


def cursor_queries(database: Database) -> CursorQueries:
    """The statements for ``database``'s dialect."""
    p = database.dialect.placeholder
    if isinstance(database, PostgresDatabase):
        table = "ledgerbase.events_cursors"
        now = "clock_timestamp()"
        until = f"{now} + make_interval(secs => {{}})"
        setup: tuple[str, ...] = (
            f"SELECT pg_advisory_xact_lock({_LOCK_KEY})",
            "CREATE SCHEMA IF NOT EXISTS ledgerbase",
            f"""CREATE TABLE IF NOT EXISTS {table} (
  sink text PRIMARY KEY,
  seq bigint NOT NULL,
  holder text,
  lease_until timestamptz NOT NULL DEFAULT '-infinity'
)""",
        )
        expired = "'-infinity'"
    else:
        table = "_ledgerbase_events_cursors"
        now = "((julianday('now') - 2440587.5) * 86400.0)"
        until = f"{now} + {{}}"
        setup = (f"""CREATE TABLE IF NOT EXISTS {table} (
  sink TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  holder TEXT,
  lease_until REAL NOT NULL DEFAULT 0
)""",)
        expired = "0"
    return CursorQueries(
        setup=setup,
        insert=f"INSERT INTO {table} (sink, seq) VALUES ({p(1)}, {p(2)}) ON CONFLICT (sink) DO NOTHING",
        acquire=(f"UPDATE {table} SET holder = {p(1)}, lease_until = {until.format(p(2))} "
                 f"WHERE sink = {p(3)} AND (holder = {p(1)} OR holder IS NULL OR lease_until < {now}) "
                 f"RETURNING seq"),
        advance=(f"UPDATE {table} SET seq = {p(1)}, lease_until = {until.format(p(3))} "
                 f"WHERE sink = {p(4)} AND holder = {p(2)} RETURNING seq"),
        release=(f"UPDATE {table} SET holder = NULL, lease_until = {expired} "
                 f"WHERE holder = {p(1)} AND sink = {p(2)}"),
        read=f"SELECT seq FROM {table} WHERE sink = {p(1)}",
    )


@dataclass(frozen=True, slots=True)
class PublisherOptions:
    """How the publisher paces itself (``LEDGERBASE_EVENTS_*`` settings)."""

    batch_size: int = 500
    poll_interval: float = 0.05
    retry_initial: float = 0.1
    retry_max: float = 30.0
    lease_seconds: float = 10.0
    from_start: bool = True  # a new cursor starts before the first change (else at the current head)


class SinkState:
    """What the publisher knows about one sink, for its loop and for /metrics."""

    def __init__(self, sink: Sink, head: list[int]) -> None:
        self.sink = sink
        self.cursor = -1  # last acknowledged sequence number
        self._head = head  # [last committed sequence number seen], shared by the sinks
        self.leader = False
        self.failures = 0
        self.backoff = sink.backoff

    @property
    def lag(self) -> int:
        return max(0, self._head[0] - self.cursor)


class EventPublisher:
    """Publishes the outbox to its sinks, one task per sink."""

    def __init__(self, database: Database, sinks: Sequence[Sink], options: PublisherOptions | None = None,
                 *, holder: str | None = None) -> None:
        self.database = database
        self.options = options or PublisherOptions()
        self.head = [-1]
        self.states = [SinkState(sink, self.head) for sink in sinks]
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.queries = cursor_queries(database)
        self.reader = ChangeReader(database)
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> EventPublisher | None:
        """The publisher for the configured broker URLs and webhooks, or None when there are none.

        Raises WebhookConfigError when ``LEDGERBASE_WEBHOOKS`` is invalid.
        """
        sinks: list[Sink] = []
        if settings.events_enabled and settings.nats_url:
            sinks.append(NatsSink(settings.nats_url, stream=settings.events_nats_stream,
                                  prefix=settings.events_nats_subject_prefix))
        if settings.events_enabled and settings.redis_url:
            sinks.append(RedisSink(settings.redis_url, key=settings.events_redis_key,
                                   maxlen=settings.events_redis_maxlen))
        webhooks = parse_webhooks(settings.webhooks)
        if webhooks:
            dead_letters = DeadLetterStore(database)
            backoff = Backoff(settings.webhooks_retry_initial_seconds, settings.webhooks_retry_max_seconds)
            sinks.extend(WebhookSink(webhook, dead_letters, backoff=backoff,
                                     max_attempts=settings.webhooks_max_attempts,
                                     timeout=settings.webhooks_timeout_seconds) for webhook in webhooks)
        if not sinks:
            return None
        return cls(database, sinks, PublisherOptions(
            batch_size=settings.events_batch_size, poll_interval=settings.events_poll_interval,
            retry_max=settings.events_retry_max_seconds, lease_seconds=settings.events_lease_seconds,
            from_start=settings.events_from_start))

    def register_metrics(self, gauge: Any) -> None:
        """Gauges of the publisher in /metrics (``gauge`` as ``Metrics.gauge``)."""
        lag = gauge("ledgerbase_events_lag", "Committed changes the broker has not acknowledged yet",
                    ("sink",))
        cursor = gauge("ledgerbase_events_cursor", "Sequence number of the last change the broker acknowledged",
                       ("sink",))
        leader = gauge("ledgerbase_events_publishing", "1 when this server holds the sink's lease and publishes",
                       ("sink",))
        for state in self.states:
            lag.labels(sink=state.sink.name).set_function(lambda state=state: state.lag)
            cursor.labels(sink=state.sink.name).set_function(lambda state=state: state.cursor)
            leader.labels(sink=state.sink.name).set_function(lambda state=state: 1 if state.leader else 0)

    def start(self) -> None:
        """Start one publishing task per sink."""
        self._tasks = [asyncio.create_task(self._run(state)) for state in self.states]

    async def stop(self) -> None:
        """Stop publishing, give up the leases (another server may take over at once), close clients."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for state in self.states:
            if state.leader:
                with contextlib.suppress(LedgerbaseError):
                    await self._release(state)
            await state.sink.close()

    # --- the loop ------------------------------------------------------------------------

    async def _run(self, state: SinkState) -> None:
        backoff = state.backoff or Backoff(self.options.retry_initial, self.options.retry_max)
        delay = backoff.initial
        renewed = 0.0
        while True:
            try:
                if not self._ready:
                    await self._setup()
                self.head[0] = max(self.head[0], await self.reader.head())
                if not state.leader or time.monotonic() - renewed > self.options.lease_seconds / 3:
                    await self._acquire(state)
                    renewed = time.monotonic()
                if not state.leader:
                    await asyncio.sleep(self.options.lease_seconds / 3)
                    continue
                changes = await self.reader.after(state.cursor, self.options.batch_size)
                if not changes:
                    await asyncio.sleep(self.options.poll_interval)
                    continue
            except LedgerbaseError as error:  # database down, or the changes table not created yet
                log.debug("events_outbox_unavailable", sink=state.sink.name, error=error.message)
                await asyncio.sleep(1.0)
                continue
            try:
                await state.sink.publish(changes)
            except Exception as error:  # whatever the client raises: the broker is retried
                state.failures += 1
                if state.failures == 1 or state.failures % 50 == 0:
                    log.warning("events_broker_unavailable", sink=state.sink.name, error=str(error) or
                                type(error).__name__, retry_in=delay, failures=state.failures)
                await asyncio.sleep(delay)
                delay = min(delay * 2, backoff.maximum)
                continue
            if state.failures:
                log.info("events_broker_back", sink=state.sink.name, failures=state.failures)
            state.failures = 0
            delay = backoff.initial
            try:
                await self._advance(state, changes[-1].seq)
                renewed = time.monotonic()
            except LedgerbaseError as error:
                # acknowledged but not recorded: published again later (at-least-once)
                log.warning("events_cursor_not_saved", sink=state.sink.name, error=error.message)
                await asyncio.sleep(0.5)

    async def _setup(self) -> None:
        queries = self.queries
        head = await self.reader.head()

        async def work(tx: Transaction) -> None:
            for statement in queries.setup:
                await tx.fetch_all(statement, ())
            for state in self.states:
                start = -1 if self.options.from_start and not state.sink.starts_at_head else head
                await tx.fetch_all(queries.insert, (state.sink.name, start))

        await self.database.write(work)
        self._ready = True

    async def _acquire(self, state: SinkState) -> None:
        queries, name, lease = self.queries, state.sink.name, float(self.options.lease_seconds)

        async def work(tx: Transaction) -> list[Any]:
            return await tx.fetch_all(queries.acquire, (self.holder, lease, name))

        rows = await self.database.write(work)
        was = state.leader
        state.leader = bool(rows)
        if rows:
            state.cursor = int(rows[0][0])
        else:
            row = await self.database.fetch_one(queries.read, (name,))
            state.cursor = int(row[0]) if row is not None else state.cursor
        if state.leader != was:
            log.info("events_lease", sink=name, publishing=state.leader, cursor=state.cursor)

    async def _advance(self, state: SinkState, seq: int) -> None:
        queries, name, lease = self.queries, state.sink.name, float(self.options.lease_seconds)

        async def work(tx: Transaction) -> list[Any]:
            return await tx.fetch_all(queries.advance, (seq, self.holder, lease, name))

        rows = await self.database.write(work)
        if rows:
            state.cursor = seq
        else:
            state.leader = False
            log.warning("events_lease_lost", sink=name)

    async def _release(self, state: SinkState) -> None:
        queries, name = self.queries, state.sink.name

        async def work(tx: Transaction) -> None:
            await tx.fetch_all(queries.release, (self.holder, name))

        await self.database.write(work)
        state.leader = False
