"""The WebSocket protocol uvicorn serves with: uvicorn's own, minus what an open socket
no longer needs.

A Realtime server holds thousands of idle sockets, so every object a socket keeps counts
(bench/realtime.py: server memory per idle subscriber). Each cut below, measured as the
bench measures (resident memory over 5,000 idle subscribers):

- the handshake: uvicorn keeps the parsed request and response (with their headers,
  about 4 KiB) for as long as the socket is open, and so does the websockets parser,
  whose handshake step stays suspended around the request. They are let go once the
  socket is accepted: the parser continues with websockets' own frame parser (the one
  the handshake step hands over to), started before the client, which is still waiting
  for the handshake's answer, can have sent a frame;
- the receive queue: an ``asyncio.Queue`` is four deques (its items, getters, putters
  and its ``join()`` event's waiters) for a socket that receives a heartbeat every 25 s;
  ``Inbox`` keeps a deque only while messages wait and a future while the application
  does (3.4 KiB less per socket);
- the flow-control event (``writable``): an ``asyncio.Event`` and its waiters' deque for
  a socket whose writes almost never wait; ``WriteGate`` keeps waiters only while the
  transport's buffer is full (0.8 KiB less);
- the HTTP protocol that read the upgrade request: httptools' parser and it point at
  each other, so it and the request it read waited for the cycle collector; the cycle
  is cut at the upgrade and they go at once (0.1 KiB less on average, the ones that
  were waiting);
- permessage-deflate: browsers offer it, and a socket that takes it keeps a zlib
  compressor and decompressor for its lifetime: 41 KiB more per socket, three times all
  the rest. Supabase Realtime does not compress its WebSockets either (Phoenix's
  default), and Realtime frames are small JSON: ``SERVER_OPTIONS`` turns it off.

Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

try:  # uvicorn >= 0.35 with websockets >= 14
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import OPEN, Protocol
    from websockets.server import ServerProtocol
except ImportError:  # pragma: no cover - older releases: their default protocol
    PROTOCOL: Any = "auto"
else:

    class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's sans-I/O websockets protocol, holding only what an open socket uses."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            lean: Any = self
            lean.queue = Inbox()
            lean.writable = WriteGate()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            upgraded: Any = transport.get_protocol()  # the HTTP protocol, until uvicorn swaps it out
            super().connection_made(transport)
            if upgraded is not self and hasattr(upgraded, "parser"):
                # httptools' parser points back at its protocol: without this cycle, the
                # HTTP protocol and the request it read are freed as soon as it returns
                upgraded.parser = None

        async def send(self, message: Any) -> None:
            await super().send(message)
            if message.get("type") != "websocket.accept" or not self.handshake_complete:
                return
            forget: Any = self
            forget.request = forget.response = None
            connection = self.conn
            if isinstance(connection, ServerProtocol) and connection.state is OPEN:
                connection.parser = Protocol.parse(connection)
                next(connection.parser)  # start the coroutine, as websockets does

    PROTOCOL = LeanWebSocketProtocol


Message = dict[str, Any]


class Inbox:
    """The part of ``asyncio.Queue`` uvicorn's protocol uses for the messages it passes
    to the application: ``put_nowait``, ``get`` and ``empty``, for one reader.

    An idle socket's inbox is two empty slots; a deque exists while messages wait, a
    future while the reader does (``get`` returns it: no coroutine of its own).
    """

    __slots__ = ("_messages", "_reader")

    def __init__(self) -> None:
        self._messages: deque[Message] | None = None
        self._reader: asyncio.Future[Message] | None = None

    def put_nowait(self, message: Message) -> None:
        """Hand ``message`` to the waiting reader, or keep it (never waits)."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():  # (a cancelled reader took nothing)
            reader.set_result(message)
            return
        if self._messages is None:
            self._messages = deque()
        self._messages.append(message)

    def get(self) -> asyncio.Future[Message]:
        """The next message, once there is one (in the order they were put)."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        if self._messages:
            future.set_result(self._messages.popleft())
            if not self._messages:
                self._messages = None
        else:
            self._reader = future
        return future

    def empty(self) -> bool:
        """Whether no message waits."""
        return not self._messages


class WriteGate:
    """The part of ``asyncio.Event`` uvicorn's protocol uses for write flow control
    (``set`` on ``resume_writing``, ``clear`` on ``pause_writing``, ``wait`` before each
    send), keeping waiters only while writing is paused."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        """Whether sends may go ahead."""
        return self._open

    def set(self) -> None:
        """Let every waiting send go ahead."""
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        """Make sends wait until ``set``."""
        self._open = False

    async def wait(self) -> bool:
        """Return once sends may go ahead."""
        if self._open:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


# How ``ledgerbase serve`` (and the tests' server) runs uvicorn for Realtime.
SERVER_OPTIONS: dict[str, Any] = {"ws": PROTOCOL, "ws_per_message_deflate": False}
