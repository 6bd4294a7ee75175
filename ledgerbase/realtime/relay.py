"""Broadcasts between servers: a Redis pub/sub channel every server publishes to and follows.

``postgres_changes`` need no relay (every server follows the same changes table); a
broadcast is a message between clients, so one sent to a server reaches the members of
its topic on the other servers through Redis. Each server tags what it publishes with
its own id and ignores its own messages. Delivery is best effort, as broadcast is in
Supabase Realtime: a message published while Redis is away is dropped (and logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import structlog

log = structlog.get_logger("ledgerbase.realtime")
Deliver = Callable[[str, bool, dict[str, Any]], None]  # (topic, private, payload)


class RedisRelay:
    """Publishes this server's broadcasts and delivers the other servers' ones."""

    def __init__(self, url: str, channel: str, deliver: Deliver) -> None:
        self.url = url
        self.channel = channel
        self.node = secrets.token_hex(8)
        self._deliver = deliver
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Connect and follow the channel in the background (reconnecting while Redis is away)."""
        import redis.asyncio as redis

        self._client = redis.from_url(self.url)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop following and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in tuple(self._sending):
            with contextlib.suppress(Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def publish(self, topic: str, private: bool, payload: dict[str, Any]) -> None:
        """Send a broadcast to the other servers (without waiting)."""
        if self._client is None:
            return
        message = orjson.dumps({"node": self.node, "topic": topic, "private": private, "payload": payload})
        task = asyncio.ensure_future(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: bytes) -> None:
        try:
            await self._client.publish(self.channel, message)
        except Exception as error:  # Redis away: broadcast is best effort
            log.warning("realtime_relay_publish_failed", error=type(error).__name__)

    async def _follow(self) -> None:
        while True:
            try:
                pubsub = self._client.pubsub()
                await pubsub.subscribe(self.channel)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        data = orjson.loads(message["data"])
                        if data.get("node") != self.node:
                            self._deliver(str(data["topic"]), bool(data["private"]), dict(data["payload"]))
                finally:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("realtime_relay_unavailable", error=type(error).__name__)
                await asyncio.sleep(1.0)
