"""The WebSocket protocol uvicorn serves with: uvicorn's own, minus what an open socket
no longer needs.

uvicorn keeps a connection's handshake (the parsed request and response, with their
headers: about 4 KiB) for as long as the socket is open, though nothing reads them after
the handshake; so does the websockets parser, whose handshake step stays suspended
around the request. A Realtime server holds thousands of idle sockets, so this protocol
lets go of them once the socket is accepted: the parser continues with websockets' own
frame parser (the one the handshake step hands over to), started before the client,
which is still waiting for the handshake's answer, can have sent a frame. Everything
else is uvicorn's.
"""

from __future__ import annotations

from typing import Any

try:  # uvicorn >= 0.35 with websockets >= 14
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from websockets.protocol import OPEN, Protocol
    from websockets.server import ServerProtocol
except ImportError:  # pragma: no cover - older releases: their default protocol
    PROTOCOL: Any = "auto"
else:

    class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
        """uvicorn's sans-I/O websockets protocol, forgetting the handshake once accepted."""

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
