"""Brokers the outbox publishes to: NATS JetStream and Redis Streams.

A sink publishes a batch of changes in order and returns only once the broker has
acknowledged all of them; any failure raises, and the publisher reconnects and sends the
batch again later (NATS drops the repeats by ``Nats-Msg-Id``; Redis skips what its
``<key>:seq`` marker says it already holds).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from ledgerbase.events.message import event_json, event_subject
from ledgerbase.realtime.changes import Change

CONNECT_TIMEOUT = 2.0
ACK_TIMEOUT = 5.0

log = structlog.get_logger("ledgerbase.events")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff: ``initial`` seconds after the first failure, doubling up to ``maximum``."""

    initial: float
    maximum: float


class Sink(ABC):
    """One broker or webhook; ``name`` keys its cursor (it names the stream or key too)."""

    name: str
    backoff: Backoff | None = None  # None: the publisher's own
    starts_at_head: bool = False  # a new cursor starts at the changes committed from then on

    @abstractmethod
    async def publish(self, changes: Sequence[Change]) -> None:
        """Publish ``changes`` in order; returns after the broker acknowledged them all.

        Raises whatever the client raises when the broker is unreachable or refuses.
        """

    @abstractmethod
    async def close(self) -> None:
        """Drop the connection (the next publish reconnects)."""


async def _ignore(*_: Any) -> None:
    """A NATS callback: connection problems surface as exceptions from publish instead."""


class NatsSink(Sink):
    """NATS JetStream: stream ``stream`` (created with subjects ``<prefix>.>`` if missing)."""

    def __init__(self, url: str, *, stream: str = "LEDGERBASE", prefix: str = "ledgerbase") -> None:
        self.url = url
        self.stream = stream
        self.prefix = prefix
        self.name = f"nats:{stream}"
        self._client: Any = None
        self._inbox = ""  # the acknowledgements come to <inbox>.<n>
        self._acks: dict[str, asyncio.Future[Any]] = {}
        self._sent = 0
        self._acknowledged_seq = -1  # the stream holds every change up to this one (sent by this sink)

    async def _connect(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        # the publisher reconnects itself (with backoff): the client's own reconnecting would
        # hide an outage behind publish timeouts
        client = await nats.connect(servers=[self.url], allow_reconnect=False, connect_timeout=CONNECT_TIMEOUT,
                                    max_reconnect_attempts=0, error_cb=_ignore, disconnected_cb=_ignore,
                                    closed_cb=_ignore)
        try:
            jetstream = client.jetstream(timeout=ACK_TIMEOUT)
            try:
                await jetstream.stream_info(self.stream)
            except NotFoundError:
                await jetstream.add_stream(name=self.stream, subjects=[f"{self.prefix}.>"])
            inbox = client.new_inbox()
            await client.subscribe(f"{inbox}.*", cb=self._on_ack)
        except BaseException:
            await client.close()
            raise
        self._client, self._inbox = client, inbox

    async def _on_ack(self, message: Any) -> None:
        future = self._acks.pop(message.subject, None)
        if future is not None and not future.done():
            future.set_result(message)

    async def publish(self, changes: Sequence[Change]) -> None:
        # Pipelined: the batch is sent, then the acknowledgements awaited. Awaiting each one in
        # turn took an event-loop round per change, which at the API's full write rate held NATS
        # seconds behind (bench/RESULTS.md, Events). JetStream stores in arrival order, and each
        # change after the first of a round expects its predecessor to be the stream's last
        # message, so one the stream refuses cannot be overtaken by the next; the next round
        # starts after the last change acknowledged.
        if self._client is None:
            await self._connect()
        loop = asyncio.get_running_loop()
        sent: list[tuple[int, asyncio.Future[Any]]] = []
        previous = ""
        try:
            for change in changes:
                if change.seq <= self._acknowledged_seq:
                    continue
                headers = {"Nats-Msg-Id": str(change.seq), "Nats-Expected-Stream": self.stream}
                if previous:
                    headers["Nats-Expected-Last-Msg-Id"] = previous
                reply = f"{self._inbox}.{self._sent}"
                self._sent += 1
                sent.append((change.seq, self._acks.setdefault(reply, loop.create_future())))
                await self._client.publish(event_subject(self.prefix, change), event_json(change), reply=reply,
                                           headers=headers)
                previous = headers["Nats-Msg-Id"]
            async with asyncio.timeout(ACK_TIMEOUT):
                for seq, ack in sent:
                    _check_ack(await ack)
                    self._acknowledged_seq = seq
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        for ack in self._acks.values():
            ack.cancel()
        self._acks.clear()
        if client is not None and not client.is_closed:
            await client.close()


def _check_ack(message: Any) -> None:
    """Raise what the NATS client raises when JetStream refused the message (a duplicate is not refused)."""
    import nats.errors
    import nats.js.errors

    if message.headers and message.headers.get("Status") == "503":
        raise nats.errors.NoRespondersError
    body = orjson.loads(message.data)
    if "error" in body:
        raise nats.js.errors.APIError.from_error(body["error"])


class RedisSink(Sink):
    """A Redis stream ``key`` capped at about ``maxlen`` entries; each entry's field ``data`` is the JSON."""

    def __init__(self, url: str, *, key: str = "ledgerbase:changes", maxlen: int = 1_000_000) -> None:
        self.url = url
        self.key = key
        self.maxlen = maxlen
        self.name = f"redis:{key}"
        self._client: Any = None
        self._published = -1  # the highest sequence number the stream holds (its <key>:seq marker)

    async def _connect(self) -> Any:
        import redis.asyncio as redis

        client = redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=ACK_TIMEOUT)
        try:
            marker = await client.get(f"{self.key}:seq")
        except BaseException:
            await client.aclose()
            raise
        published = int(marker) if marker is not None else -1
        if published < self._published:
            # a Redis that restarted without its data (no persistence), or a key deleted: the
            # history is gone from the broker; publishing goes on from the cursor
            log.warning("redis_stream_lost", key=self.key, held=self._published, now_holds=published,
                        hint="enable Redis persistence (appendonly yes) to keep the stream across restarts")
        self._published = published
        return client

    async def publish(self, changes: Sequence[Change]) -> None:
        if self._client is None:
            self._client = await self._connect()
        fresh = [change for change in changes if change.seq > self._published]
        if not fresh:
            return
        try:
            # MULTI/EXEC: the entries and the marker are stored together or not at all, so a
            # batch sent again after a lost acknowledgement is not stored twice
            async with self._client.pipeline(transaction=True) as pipe:
                for change in fresh:
                    pipe.xadd(self.key, {"data": event_json(change)}, maxlen=self.maxlen, approximate=True)
                pipe.set(f"{self.key}:seq", fresh[-1].seq)
                await pipe.execute()
        except BaseException:
            await self.close()
            raise
        self._published = fresh[-1].seq

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
