"""Broadcast and presence between servers: a Redis pub/sub channel every server publishes to and follows.

``postgres_changes`` need no relay (every server follows the same changes table); a
broadcast is a message between clients, so one sent to a server reaches the members of
its topic on the other servers through Redis. Delivery is best effort, as broadcast is in
Supabase Realtime: a message published while Redis is away is dropped (and logged).

Presence is kept in step rather than best effort. Every server (each worker process is
one, with a random id) publishes, in order through one sender:

- ``presence``: each change of its own channels' presence, numbered (its version);
- ``heartbeat``: its version, every third of ``timeout``;
- ``state``: all its presences, when asked with ``sync`` (a server asks every other one
  when it (re)subscribes, and asks one server again when it sees a number skipped);
- ``bye``: when it stops.

The others keep a replica of each server's presences (``ledgerbase.realtime.presence``)
and show every change to their members as ``presence_diff``. A server not heard from for
``timeout`` seconds (killed, or cut off from Redis) is dropped: its members leave.
Each server tags what it publishes with its id and ignores its own messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

import orjson
import structlog

from ledgerbase.realtime.channels import Hub
from ledgerbase.realtime.presence import Metas, Presence, Room

log = structlog.get_logger("ledgerbase.realtime")
OUTBOX_LIMIT = 10_000  # messages waiting for Redis; more are dropped (presence asks again)
PUBLISH_TIMEOUT = 5.0  # seconds one publish may take before it counts as failed
SEND_BATCH = 500  # messages published in one round trip at most
GOODBYE_TIMEOUT = 2.0  # seconds a stopping server waits for its last messages to leave


class RelayMessageError(ValueError):
    """A relayed message that is not one of ours."""


def _metas(value: Any) -> Metas:
    if not isinstance(value, dict):
        raise RelayMessageError("metas must be an object")
    for key, metas in value.items():
        if not isinstance(metas, list) or not all(
                isinstance(meta, dict) and isinstance(meta.get("phx_ref"), str) for meta in metas):
            raise RelayMessageError(f"metas of {key!r} must be objects with a phx_ref")
    return value


def _presences(value: Any) -> list[Presence]:
    if not isinstance(value, list):
        raise RelayMessageError("presences must be a list")
    found = []
    for item in value:
        topic, private, key, meta = item
        _metas({key: [meta]})
        found.append(Presence(str(topic), bool(private), str(key), meta))
    return found


class RedisRelay:
    """Publishes this server's broadcasts and presence; delivers the other servers' ones."""

    def __init__(self, url: str, channel: str, hub: Hub, timeout: float = 15.0) -> None:
        self.url = url
        self.channel = channel
        self.node = secrets.token_hex(8)
        self.timeout = timeout  # a server silent this long is gone
        self.interval = timeout / 3  # between heartbeats
        self._hub = hub
        self._version = 0  # presence changes of this server published so far
        self._asked: dict[str, float] = {}  # when a server was last asked for its state
        self._client: Any = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self._unsent = 0
        self._overflowing = False  # dropping messages (logged once until one is queued again)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Connect, follow the channel and beat in the background (reconnecting while Redis is away)."""
        import redis.asyncio as redis

        self._client = redis.from_url(self.url)
        self._tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._follow()),
                       asyncio.create_task(self._beat())]

    async def stop(self) -> None:
        """Say goodbye (for up to two seconds), stop following and close the connection."""
        if self._client is None:
            return
        sender, *others = self._tasks
        for task in others:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._put({"kind": "bye"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), GOODBYE_TIMEOUT)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        self._tasks = []
        await self._client.aclose()
        self._client = None

    @property
    def backlog(self) -> int:
        """How many messages wait to be published (or are being published)."""
        return self._unsent

    # --- what this server tells the others ---------------------------------------------------

    def broadcast(self, topic: str, private: bool, payload: dict[str, Any]) -> None:
        """Send a broadcast to the other servers (without waiting)."""
        self._put({"kind": "broadcast", "topic": topic, "private": private, "payload": payload})

    def presence(self, room: Room, joins: Metas, leaves: Metas) -> None:
        """Send a presence change of this server's channels to the other servers (without waiting)."""
        if self._client is None:
            return
        self._version += 1
        topic, private = room
        self._put({"kind": "presence", "version": self._version, "topic": topic, "private": private,
                   "joins": joins, "leaves": leaves})

    def _put(self, message: dict[str, Any]) -> None:
        if self._client is None:
            return
        try:
            self._outbox.put_nowait(orjson.dumps({"node": self.node, **message}))
            self._unsent += 1
            self._overflowing = False
        except asyncio.QueueFull:  # Redis away or too slow: dropped (presence is asked for again)
            if not self._overflowing:
                log.warning("realtime_relay_overflow", waiting=self._unsent)
            self._overflowing = True

    def _ask(self, node: str | None) -> None:
        """Ask ``node`` (None: every server) for its state, unless it was asked less than a beat ago."""
        now = time.monotonic()
        if node is not None and now - self._asked.get(node, -self.interval) < self.interval:
            return  # the answer is on its way (or it is asked again at a later beat)
        if node is not None:
            self._asked[node] = now
        self._put({"kind": "sync", "to": node})

    async def _send(self) -> None:
        # one sender, so the others get this server's messages in the order they were made;
        # what piled up meanwhile goes in one pipeline (one round trip)
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < SEND_BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                pipeline = self._client.pipeline(transaction=False)
                for message in batch:
                    pipeline.publish(self.channel, message)
                await asyncio.wait_for(pipeline.execute(), PUBLISH_TIMEOUT)
            except Exception as error:  # Redis away: dropped (presence asks again)
                log.warning("realtime_relay_publish_failed", error=type(error).__name__, dropped=len(batch))
            finally:
                self._unsent -= len(batch)
                for _ in batch:
                    self._outbox.task_done()

    async def _beat(self) -> None:
        while True:
            self._put({"kind": "heartbeat", "version": self._version})
            for node in self._hub.peers.silent(time.monotonic(), self.timeout):
                log.info("realtime_server_gone", node=node, silent_seconds=self.timeout)
                self._drop(node)
            await asyncio.sleep(self.interval)

    def _drop(self, node: str) -> None:
        self._asked.pop(node, None)
        self._hub.show(self._hub.peers.drop(node))

    # --- what the others tell this server ----------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                pubsub = self._client.pubsub()
                await pubsub.subscribe(self.channel)
                self._asked.clear()
                self._ask(None)  # (again) in step with every server's presence
                try:
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._receive(message["data"])
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("realtime_relay_unavailable", error=type(error).__name__)
                await asyncio.sleep(1.0)

    def _receive(self, raw: bytes) -> None:
        try:
            data = orjson.loads(raw)
            node = str(data["node"])
            if node != self.node:
                self._handle(node, data.get("kind", "broadcast"), data)
        except (orjson.JSONDecodeError, RelayMessageError, KeyError, TypeError, ValueError) as error:
            log.warning("realtime_relay_bad_message", error=str(error))

    def _handle(self, node: str, kind: str, data: dict[str, Any]) -> None:
        hub = self._hub
        if kind == "broadcast":
            hub.deliver(str(data["topic"]), bool(data["private"]), dict(data["payload"]))
            return
        if kind == "bye":
            self._drop(node)
            return
        hub.peers.heard(node, time.monotonic())
        if kind == "presence":
            room = (str(data["topic"]), bool(data["private"]))
            diff = hub.peers.change(node, int(data["version"]), room, _metas(data["joins"]),
                                    _metas(data["leaves"]))
            if diff is None:
                self._ask(node)
            else:
                hub.show([diff])
        elif kind == "heartbeat":
            if not hub.peers.in_step(node, int(data["version"])):
                self._ask(node)
        elif kind == "state":
            hub.show(hub.peers.replace(node, int(data["version"]), _presences(data["presences"])))
        elif kind == "sync" and data.get("to") in (None, self.node):
            self._put({"kind": "state", "version": self._version,
                       "presences": [[p.topic, p.private, p.key, p.meta] for p in hub.presences()]})
