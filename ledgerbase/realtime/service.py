"""Realtime: the WebSocket endpoint and the task feeding committed changes to subscribers.

One task per server reads the ledger's changes table every ``poll_interval`` seconds
(an indexed range scan after the last number seen) and fans each batch out to the
channels whose bindings want it and whose callers may see the rows: one policy check
per table and role for all of them (``ledgerbase.realtime.audience``), or where that is
not exact one read per caller (``ledgerbase.realtime.visibility``). Broadcasts and
presence reach the other servers through Redis when ``redis_url`` is set
(``ledgerbase.realtime.relay``): each server keeps the others' presences, so every
member of a topic sees every other member.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import structlog

from ledgerbase.auth.keys import Claims, TokenVerifier
from ledgerbase.db.engine import Database
from ledgerbase.db.schema import SchemaCache, Table
from ledgerbase.errors import LedgerbaseError
from ledgerbase.realtime.audience import Audience
from ledgerbase.realtime.bindings import Binding, change_data
from ledgerbase.realtime.changes import Change, ChangeReader
from ledgerbase.realtime.channels import Channel, Hub
from ledgerbase.realtime.protocol import VERSIONS, Frame
from ledgerbase.realtime.relay import RedisRelay
from ledgerbase.realtime.socket import Connection
from ledgerbase.realtime.sse import serve_sse
from ledgerbase.realtime.visibility import Seen, Visibility, key_of
from ledgerbase.rest.handlers import DataApi

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = structlog.get_logger("ledgerbase.realtime")
BATCH = 1000  # changes read per poll
READS_AT_ONCE = 8  # visibility reads running concurrently


def _claims_key(claims: Claims) -> str:
    """Who a channel's caller is: its claims (which name its role)."""
    return claims.context.claims_json


class RealtimeService:
    """Serves ``/realtime/v1/websocket`` and delivers ``postgres_changes``."""

    def __init__(self, database: Database, verifier: TokenVerifier, api: DataApi,
                 schema: Callable[[], SchemaCache], *, changes: bool = True,
                 poll_interval: float = 0.05, queue_limit: int = 10_000, relay_url: str = "",
                 relay_channel: str = "ledgerbase:realtime", presence_timeout: float = 15.0) -> None:
        self.verifier = verifier
        self.schema = schema
        self.hub = Hub()
        self._relay = RedisRelay(relay_url, relay_channel, self.hub, presence_timeout) if relay_url else None
        self.hub.relay = self._relay
        self.queue_limit = queue_limit
        self.poll_interval = poll_interval
        self._reader = ChangeReader(database) if changes else None
        self._visibility = Visibility(api)
        self._audience = Audience(database)
        self._task: asyncio.Task[None] | None = None
        self._reads = asyncio.Semaphore(READS_AT_ONCE)
        self.cursor: int | None = None  # the last change number handled
        self._subscribers: dict[str, _Subscribers] = {}  # by table, for the hub's version
        self._subscribers_version = -1
        self._everyone: list[Channel] = []

    def start(self) -> None:
        """Start following the changes table (without the ledger's capture there is none)."""
        if self._reader is not None and self._task is None:
            self._task = asyncio.create_task(self._follow())
        if self._relay is not None:
            self._relay.start()

    async def stop(self) -> None:
        """Stop following changes (and other servers' broadcasts and presence, saying goodbye)."""
        if self._relay is not None:
            await self._relay.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._audience.close()

    # --- the WebSocket endpoint ------------------------------------------------------------

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An ASGI ``websocket`` scope: needs a valid ``apikey`` query parameter (else 403)."""
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("apikey") or [""])[0]
        if not token:
            token = next((value.decode("latin-1") for name, value in scope.get("headers", [])
                          if name == b"apikey"), "")
        vsn = (query.get("vsn") or ["1.0.0"])[0]
        try:
            self.verifier.verify(token)
        except LedgerbaseError as error:
            log.info("realtime_refused", reason=error.message)
            await send({"type": "websocket.close", "code": 1008})
            return
        if vsn not in VERSIONS:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        # nothing of the handshake stays referenced while the client is connected: the
        # scope (about 1.4 KiB with its query string, addresses and dicts) is read by
        # nobody once the socket is accepted, though the server and the callers' frames
        # keep it for the socket's lifetime
        del message, query
        scope.clear()
        await Connection(self, token, vsn).run(receive, send)

    async def sse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An ASGI ``http`` scope for ``/realtime/v1/sse`` (see ``ledgerbase.realtime.sse``)."""
        await serve_sse(self, scope, receive, send)

    # --- postgres_changes ------------------------------------------------------------------

    async def changes_after(self, seq: int, until: int) -> list[Change]:
        """The committed changes numbered ``seq + 1`` to ``until``; raises LedgerbaseError."""
        if self._reader is None:
            return []
        found: list[Change] = []
        while seq < until:
            batch = [change for change in await self._reader.after(seq, BATCH) if change.seq <= until]
            if not batch:
                break
            found.extend(batch)
            seq = batch[-1].seq
        return found

    async def committed_head(self) -> int:
        """The number of the last committed change (the feed's cursor if the database fails)."""
        if self._reader is None:
            return -1
        try:
            return await self._reader.head()
        except LedgerbaseError:
            return self.cursor if self.cursor is not None else -1

    async def head(self) -> int:
        """The number up to which changes are (being) delivered live."""
        if self.cursor is not None:
            return self.cursor
        return await self._reader.head() if self._reader is not None else -1

    async def _follow(self) -> None:
        assert self._reader is not None
        failing = False
        while True:
            try:
                if self.cursor is None:
                    self.cursor = await self._reader.head()
                if self.hub.listened:
                    changes = await self._reader.after(self.cursor, BATCH)
                    if changes:
                        self.cursor = changes[-1].seq
                        await self.deliver(changes)
                    if len(changes) == BATCH:
                        failing = False
                        continue
                else:
                    # nobody to deliver to: move past the rows without reading them (reading
                    # and decoding every change cost the server a few per cent of its writes)
                    head = await self._reader.head()
                    if not self.hub.listened:  # and nobody joined meanwhile
                        self.cursor = max(self.cursor, head)
                failing = False
            except LedgerbaseError as error:  # database down, changes table not created yet
                if not failing:
                    log.warning("realtime_changes_unavailable", error=error.message)
                failing = True
            except Exception:  # a bug must not stop delivery for good
                log.exception("realtime_delivery_failed")
            await asyncio.sleep(self.poll_interval)

    async def deliver(self, changes: Sequence[Change], channels: Sequence[Channel] | None = None) -> None:
        """Push a batch of committed changes to the channels that may see them, in order.

        ``channels``: only these (a resuming SSE stream); default every subscribed channel.
        """
        if channels is None:
            if self._subscribers_version != self.hub.version:
                self._subscribers_version = self.hub.version
                self._subscribers.clear()
                self._everyone = list(self.hub.subscribed())
            known, subscribed = self._subscribers, self._everyone
        else:
            known, subscribed = {}, list(channels)
        if not subscribed:
            return
        schema = self.schema()
        interested: dict[str, _Subscribers] = {}
        batches: dict[str, list[Change]] = {}
        for change in changes:
            table = schema.tables.get(change.table)
            if table is None or table.is_view:
                continue
            if change.table not in interested:
                found = known.get(change.table)
                if found is None:
                    found = known[change.table] = _Subscribers(change.table, subscribed)
                interested[change.table] = found
            if interested[change.table].channels:
                batches.setdefault(change.table, []).append(change)
        visible = await self._visible(schema, interested, batches)
        recipients = {name: _Recipients(interested[name], visible.get(name, {})) for name in batches}
        for change in changes:
            to = recipients.get(change.table)
            if to is None:
                continue
            seen = visible.get(change.table, {})
            for channel in to.of(change):
                self._send_change(channel, schema.tables[change.table], change, seen)

    async def _visible(self, schema: SchemaCache, interested: dict[str, _Subscribers],
                       batches: dict[str, list[Change]]) -> dict[str, dict[str, Seen]]:
        """What each distinct caller may see of each table's batch (no entry: nothing): per
        table and role, one policy check for all its callers (``ledgerbase.realtime.audience``);
        where that cannot be exact, one data API read per caller (``ledgerbase.realtime.visibility``)."""
        seen: dict[str, dict[str, Seen]] = {}
        jobs: dict[tuple[str, str], Awaitable[Seen]] = {}
        for name, batch in batches.items():
            if all(change.op == "DELETE" for change in batch):
                continue
            table = schema.tables[name]
            found = seen[name] = {}
            # rows the ledger no longer keeps are read back, for service_role too
            forgotten = any(change.record is None and change.op != "DELETE" for change in batch)
            for role, callers in interested[name].by_role.items():
                if role == "service_role" and not forgotten:
                    continue
                answered = None if forgotten else await self._check(schema, table, batch, callers)
                if answered is not None:
                    found.update(answered)
                    continue
                for claims in callers:
                    jobs[(name, _claims_key(claims))] = self._read(table, batch, claims)
        results = await asyncio.gather(*jobs.values())
        for (name, key), result in zip(jobs, results, strict=True):
            seen[name][key] = result
        return seen

    async def _check(self, schema: SchemaCache, table: Table, batch: list[Change],
                     callers: list[Claims]) -> dict[str, Seen] | None:
        """One policy check of ``batch`` for callers of one role; None: not exact here."""
        changed = [change.pk for change in batch if change.op != "DELETE"]
        try:
            allowed = await self._audience.visible(schema, table, changed, callers)
        except LedgerbaseError as error:  # the database failed: nothing is sent, as for a read
            log.warning("realtime_visibility_failed", table=table.name, error=error.message)
            return {}
        if allowed is None:
            return None
        if allowed is True:
            everything = Seen(everything=True)
            return {_claims_key(claims): everything for claims in callers}
        assert isinstance(allowed, dict)
        keys = [key_of(pk) for pk in changed]
        return {_claims_key(callers[position]): Seen(keys={keys[index] for index in indexes})
                for position, indexes in allowed.items()}

    async def _read(self, table: Table, batch: list[Change], claims: Claims) -> Seen:
        async with self._reads:
            return await self._visibility.visible(table, batch, claims)

    def _send_change(self, channel: Channel, table: Table, change: Change, visible: dict[str, Seen]) -> None:
        if change.seq <= channel.since:
            return
        wanted = [b for b in channel.bindings if b.wants(change, table.rls)]
        if not wanted:
            return
        record = change.record  # (the channel may see it: it is among the change's recipients)
        if change.op != "DELETE" and record is None:  # no longer kept by the ledger: the row now
            seen = visible.get(_claims_key(channel.claims))
            record = seen.rows.get(key_of(change.pk)) if seen is not None else None
            if record is None:
                return
        by_select: dict[tuple[str, ...] | None, list[Binding]] = {}
        for binding in wanted:
            by_select.setdefault(binding.select, []).append(binding)
        for select, bindings in by_select.items():
            data = change_data(change, table.columns, table.schema or "public", record, select, table.rls)
            channel.push(Frame(topic=channel.topic, event="postgres_changes",
                               payload={"ids": sorted({b.id for b in bindings}), "data": data},
                               seq=change.seq))


class _Subscribers:
    """The channels subscribed to one table's changes, by caller and by role (kept while
    the subscriptions stay the same: a batch does not walk every subscriber again)."""

    def __init__(self, table: str, subscribed: Sequence[Channel]) -> None:
        self.callers: dict[str, list[Channel]] = {}
        for channel in subscribed:
            if any(b.table is None or b.table == table for b in channel.bindings):
                self.callers.setdefault(_claims_key(channel.claims), []).append(channel)
        self.channels = [channel for members in self.callers.values() for channel in members]
        self.by_role: dict[str, list[Claims]] = {}
        for members in self.callers.values():
            self.by_role.setdefault(members[0].claims.role, []).append(members[0].claims)
        self.service = [channel for channel in self.channels if channel.claims.role == "service_role"]


class _Recipients:
    """The channels a batch's changes of one table may go to, by row: those that see every
    row (service_role, tables without row-level security) and, per row, those whose caller
    may see it. Each change costs the channels that get it, not every subscriber."""

    def __init__(self, subscribers: _Subscribers, seen: dict[str, Seen]) -> None:
        self.channels = subscribers.channels
        self.everyone: list[Channel] = list(subscribers.service)
        self.by_key: dict[bytes, list[Channel]] = {}
        for key, found in seen.items():
            members = subscribers.callers.get(key, [])
            if not members or members[0].claims.role == "service_role":
                continue
            if found.everything:
                self.everyone.extend(members)
            else:
                for row in found.keys.union(found.rows):
                    self.by_key.setdefault(row, []).extend(members)

    def of(self, change: Change) -> list[Channel]:
        """The channels that may get ``change`` (deletes: all of them, as in Supabase Realtime)."""
        if change.op == "DELETE":
            return self.channels
        return self.everyone + self.by_key.get(key_of(change.pk), [])
