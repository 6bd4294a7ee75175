"""Ceiling baseline: a raw ASGI callable that answers every request with a fixed JSON body.

No routing, no parsing, no database: what uvicorn itself costs per request on this
machine, so no Python server here can beat it.

    uvicorn --app-dir bench baseline_fixed:app --no-access-log
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'[{"id":1,"title":"fixed","score":500}]'
START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode())],
}
RESPONSE: Message = {"type": "http.response.body", "body": BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    await send(START)
    await send(RESPONSE)
