"""One WebSocket connection speaking Supabase Realtime's Phoenix-channel protocol.

Frames are handled in arrival order; everything the server sends goes through one
bounded queue drained by one writer task, so pushes from other connections (broadcast,
presence, changes) never interleave with a reply half-written. A client that stops
reading until the queue is full is disconnected rather than buffered without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import jwt
import structlog

from ledgerbase.auth.keys import Claims
from ledgerbase.errors import LedgerbaseError
from ledgerbase.realtime.bindings import BindingError, echo_bindings, parse_bindings
from ledgerbase.realtime.channels import Channel
from ledgerbase.realtime.protocol import PHOENIX, Frame, FrameError, decode, encode, reply, system

if TYPE_CHECKING:
    from ledgerbase.realtime.service import RealtimeService

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = structlog.get_logger("ledgerbase.realtime")
PRIVATE_ROLES = frozenset({"authenticated", "service_role"})
_EMPTY: deque[str] = deque(maxlen=0)  # the outbox of every connection with nothing to send


def token_problem(verifier_error: LedgerbaseError, token: str) -> str:
    """Why a token was refused, worded as Supabase Realtime words it."""
    if verifier_error.code == "PGRST303" and "expired" in verifier_error.message:
        try:
            expires = jwt.decode(token, options={"verify_signature": False}).get("exp")
        except jwt.InvalidTokenError:
            expires = None
        if isinstance(expires, (int, float)):
            return f"Token has expired {max(0, int(time.time() - expires))} seconds ago"
        return "Token has expired"
    if "Signature" in verifier_error.message:
        return "Failed to validate JWT signature"
    return verifier_error.message


class Connection:
    """A connected client: its serializer, its joined channels and its outgoing frames.

    Frames wait in a plain deque; a writer task exists only while there is something to
    send (an idle subscriber holds no task and no queue: thousands of them stay cheap).
    """

    def __init__(self, service: RealtimeService, token: str, vsn: str) -> None:
        self.service = service
        self.token = token
        self.vsn = vsn
        self.channels: dict[str, Channel] = {}
        self._outbox: deque[str] = _EMPTY  # a deque of its own once there is something to send
        self._send: Send | None = None
        self._writer: asyncio.Task[None] | None = None
        self._overflowed = False
        self._closing = False

    # --- sending ---------------------------------------------------------------------------

    def push(self, frame: Frame) -> None:
        """Queue a frame for the client (never waits)."""
        if self._overflowed or self._closing:
            return
        if self._outbox is _EMPTY:
            self._outbox = deque()
        if len(self._outbox) >= self.service.queue_limit:
            self._overflowed = True
            log.warning("realtime_client_too_slow", queued=len(self._outbox))
        else:
            self._outbox.append(encode(frame, self.vsn))
        if self._writer is None and self._send is not None:
            self._writer = asyncio.create_task(self._write(self._send))

    async def _write(self, send: Send) -> None:
        try:
            while self._outbox:
                text = self._outbox.popleft()
                try:
                    await send({"type": "websocket.send", "text": text})
                except OSError:  # the client went away: the reader sees the disconnect
                    self._outbox.clear()
                    self._closing = True
                    return
            if self._overflowed:
                self._closing = True
                await send({"type": "websocket.close", "code": 1013, "reason": "too slow"})
        finally:
            self._writer = None
            if not self._outbox:
                self._outbox = _EMPTY

    # --- receiving -------------------------------------------------------------------------

    async def run(self, receive: Receive, send: Send) -> None:
        """Serve the connection until the client goes (the socket is accepted already)."""
        self._send = send
        if self._outbox and self._writer is None:
            self._writer = asyncio.create_task(self._write(send))
        try:
            while not self._closing:
                if await self._receive(receive):
                    break
        finally:
            for channel in tuple(self.channels.values()):
                self.service.hub.leave(channel)
            self.channels.clear()
            self._closing = True
            writer = self._writer
            if writer is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(writer), 5)
                except (TimeoutError, OSError):
                    writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await writer

    async def _receive(self, receive: Receive) -> bool:
        """Handle the client's next message; True when it disconnected. (A method of its
        own, so that nothing of a handled frame stays referenced while waiting for the next.)"""
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return True
        text = message.get("text")
        if text is None:
            text = message.get("bytes")
        if text is None:
            return False
        try:
            frame = decode(text, self.vsn)
        except FrameError as error:
            log.info("realtime_bad_frame", error=str(error))
            return False
        await self.handle(frame)
        return False

    async def handle(self, frame: Frame) -> None:
        """Answer one client frame."""
        if frame.topic == PHOENIX:
            if frame.event == "heartbeat":
                self.push(reply(frame))
            return
        if frame.event == "phx_join":
            await self.join(frame)
            return
        channel = self.channels.get(frame.topic)
        if frame.event == "phx_leave":
            if channel is not None:
                self._remove(channel)
            self.push(reply(frame))
            return
        if channel is None:
            if frame.ref is not None:
                self.push(reply(frame, "error", {"reason": "unmatched topic"}))
            return
        if frame.event == "broadcast":
            self.service.hub.broadcast(channel, frame.payload)
            if channel.broadcast_ack:
                self.push(reply(frame))
        elif frame.event == "presence":
            self.presence(channel, frame)
        elif frame.event == "access_token":
            self.refresh(channel, frame.payload.get("access_token"))

    # --- channels --------------------------------------------------------------------------

    def _verify(self, token: str) -> Claims:
        return self.service.verifier.verify(token)

    async def join(self, frame: Frame) -> None:
        """``phx_join``: check the token, register bindings, reply with their ids."""
        payload = frame.payload
        token = payload.get("access_token") or payload.get("user_token") or self.token
        if not isinstance(token, str) or token.startswith("sb_") or token == self.token:
            token = self.token  # (the socket's own string: clients join with the token they connected with)
        try:
            claims = self._verify(token)
        except LedgerbaseError as error:
            refused = token_problem(error, token)
            kind = "JwtSignatureError" if "signature" in refused else "InvalidJWTToken"
            self.push(reply(frame, "error", {"reason": f"{kind}: {refused}"}))
            return
        config = payload.get("config") or {}
        if not isinstance(config, dict):
            config = {}
        name = frame.topic.removeprefix("realtime:")
        private = bool(config.get("private"))
        if private and claims.role not in PRIVATE_ROLES:
            self.push(reply(frame, "error", {
                "reason": f"Unauthorized: You do not have permissions to read from this Channel topic: {name}"}))
            return
        broadcast = config.get("broadcast") or {}
        presence = config.get("presence") or {}
        problem: str | None = None
        try:
            bindings = parse_bindings(config.get("postgres_changes"), self.service.schema())
            echo = [binding.echo for binding in bindings]
        except BindingError as error:
            bindings, problem = [], str(error)
            echo = echo_bindings(config.get("postgres_changes"))
        # changes committed before this join are not sent, even if not delivered yet
        since = await self.service.committed_head() if bindings else -1
        previous = self.channels.get(frame.topic)
        if previous is not None:  # a second join of a topic replaces the first, as in Phoenix
            self._remove(previous)
            self.push(Frame(topic=frame.topic, event="phx_close", payload={},
                            ref=previous.join_ref, join_ref=previous.join_ref))
        channel = Channel(
            topic=frame.topic, join_ref=frame.join_ref or frame.ref, push=self.push, claims=claims,
            token=token, private=private,
            broadcast_self=bool(isinstance(broadcast, dict) and broadcast.get("self")),
            broadcast_ack=bool(isinstance(broadcast, dict) and broadcast.get("ack")),
            presence_enabled=bool(isinstance(presence, dict) and presence.get("enabled")),
            presence_key=str(presence.get("key") or "") if isinstance(presence, dict) else "",
            bindings=tuple(bindings), since=since)
        self.channels[frame.topic] = channel
        self.service.hub.join(channel)
        self.push(reply(frame, "ok", {"postgres_changes": echo}))
        self._schedule_expiry(channel)
        if channel.presence_enabled:
            self.push(Frame(topic=channel.topic, event="presence_state",
                            payload=self.service.hub.presence_state(channel)))
        if problem is not None:
            self.push(system(channel.topic, "postgres_changes", "error",
                             f"Unable to subscribe to changes with given parameters: {problem}"))
        elif bindings:
            self.push(system(channel.topic, "postgres_changes", "ok", "Subscribed to PostgreSQL"))

    def presence(self, channel: Channel, frame: Frame) -> None:
        """``presence`` track/untrack."""
        event = frame.payload.get("event")
        if event == "track":
            state = frame.payload.get("payload", {})
            if not isinstance(state, dict):
                self.push(reply(frame, "error", {"reason": "Presence track payload must be a map"}))
                return
            self.push(reply(frame))
            if not channel.presence_enabled:  # tracking turns presence on (and syncs it)
                channel.presence_enabled = True
                self.push(Frame(topic=channel.topic, event="presence_state",
                                payload=self.service.hub.presence_state(channel)))
            self.service.hub.track(channel, state)
        elif event == "untrack":
            self.push(reply(frame))
            self.service.hub.untrack(channel)
        else:
            self.push(reply(frame, "error", {"reason": "unknown presence event"}))

    def refresh(self, channel: Channel, token: Any) -> None:
        """``access_token``: re-check the channel with a new token; a bad one closes the channel."""
        if not isinstance(token, str) or token == channel.token or token.startswith("sb_"):
            return
        try:
            claims = self._verify(token)
        except LedgerbaseError as error:
            self.shutdown(channel, token_problem(error, token))
            return
        if channel.private and claims.role not in PRIVATE_ROLES:
            name = channel.topic.removeprefix("realtime:")
            self.shutdown(channel, f"You no longer have permission to read from this Channel topic: {name}")
            return
        channel.claims, channel.token = claims, token
        self.service.hub.version += 1  # who its changes are checked for has changed
        self._schedule_expiry(channel)

    def shutdown(self, channel: Channel, message: str) -> None:
        """Close a channel from the server side: a ``system`` error, then ``phx_close``."""
        if self.channels.get(channel.topic) is not channel:
            return
        self._remove(channel)
        self.push(system(channel.topic, "system", "error", message))
        self.push(Frame(topic=channel.topic, event="phx_close", payload={},
                        ref=channel.join_ref, join_ref=channel.join_ref))

    def _remove(self, channel: Channel) -> None:
        self.service.hub.leave(channel)
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]

    def _schedule_expiry(self, channel: Channel) -> None:
        channel.cancel_expiry()
        expires = channel.claims.expires_at
        if expires is None:
            return
        delay = max(0.0, expires - time.time())
        channel.expiry = asyncio.get_running_loop().call_later(
            delay, lambda: self.shutdown(channel, "Token has expired 0 seconds ago"))
