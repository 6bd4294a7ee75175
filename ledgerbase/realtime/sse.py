"""Server-Sent Events: ``GET /realtime/v1/sse?table=T[&event=E][&filter=F][&select=a,b]``.

For clients without WebSockets: the same changes, filters and row-level checks as a
``postgres_changes`` binding, as ``text/event-stream``. Each event is
``id: <ledger seq>``, ``event: INSERT|UPDATE|DELETE``, ``data: <the data of a
postgres_changes message>``. A client reconnecting with ``Last-Event-ID`` (EventSource
does it by itself) first gets every change it missed, from the ledger, then live ones:
no gap, no duplicate. The token is the ``Authorization: Bearer`` header, else the
``apikey`` header or query parameter (EventSource cannot set headers). The stream ends
when the token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from ledgerbase.auth.keys import Claims
from ledgerbase.errors import LedgerbaseError
from ledgerbase.realtime.bindings import BindingError, parse_bindings
from ledgerbase.realtime.channels import Channel
from ledgerbase.realtime.protocol import Frame

if TYPE_CHECKING:
    from ledgerbase.realtime.service import RealtimeService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KEEPALIVE_SECONDS = 15.0
_JSON = b"application/json; charset=utf-8"


def _error(status: int, message: str, code: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"code": code, "message": message, "details": None, "hint": None})


def event_text(frame: Frame) -> bytes:
    """One SSE event for a ``postgres_changes`` frame."""
    data = frame.payload["data"]
    return (f"id: {frame.seq}\nevent: {data['type']}\ndata: ".encode()
            + orjson.dumps(data) + b"\n\n")


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _token(scope: Scope, query: dict[str, list[str]]) -> str | None:
    headers: dict[str, str] = {name.decode("latin-1"): value.decode("latin-1")
                               for name, value in scope["headers"]}
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("apikey") or _first(query, "apikey")


def _last_event_id(scope: Scope, query: dict[str, list[str]]) -> int | None:
    text = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"last-event-id"),
                None) or _first(query, "last_event_id")
    if text is None or not text.strip().lstrip("-").isdigit():
        return None
    return int(text.strip())


async def serve_sse(service: RealtimeService, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one SSE request (errors as JSON with the data API's error shape)."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    claims: Claims | None = None
    problem: tuple[int, bytes] | None = None
    try:
        claims = service.verifier.verify(_token(scope, query))
    except LedgerbaseError as error:
        problem = _error(error.status, error.message, error.code or "PGRST301")
    binding: dict[str, Any] = {"event": (query.get("event") or ["*"])[0], "schema": "public",
                               "table": (query.get("table") or [""])[0]}
    if query.get("filter"):
        binding["filter"] = query["filter"][0]
    if query.get("select"):
        binding["select"] = [c for c in query["select"][0].split(",") if c]
    bindings = []
    if problem is None:
        if scope["method"] != "GET":
            problem = _error(405, f"Unsupported HTTP method: {scope['method']}", "PGRST117")
        elif not binding["table"]:
            problem = _error(400, "table is required", "PGRST100")
        else:
            try:
                bindings = parse_bindings([binding], service.schema())
            except BindingError as error:
                problem = _error(400, str(error), "PGRST100")
    if problem is not None or claims is None:
        status, body = problem or _error(401, "No API key found in request", "PGRST302")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await _stream(service, scope, receive, send, claims, bindings, _last_event_id(scope, query))


async def _stream(service: RealtimeService, scope: Scope, receive: Receive, send: Send, claims: Claims,
                  bindings: list[Any], resume_after: int | None) -> None:
    frames: asyncio.Queue[Frame] = asyncio.Queue()
    overflowed = False

    def push(frame: Frame) -> None:
        nonlocal overflowed
        if frame.event == "postgres_changes":
            if frames.qsize() >= service.queue_limit:
                overflowed = True
            else:
                frames.put_nowait(frame)

    channel = Channel(topic=f"sse:{uuid.uuid4()}", join_ref=None, push=push, claims=claims, token="",
                      bindings=tuple(bindings))
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    if resume_after is None:  # from now on: changes committed before are not sent
        channel.since = await service.committed_head()
    watcher = asyncio.create_task(watch())
    service.hub.join(channel)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no")]})
        await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})
        last = -1
        if resume_after is not None:
            for _ in range(50):  # the feed sets its cursor on its first read
                if service.cursor is not None:
                    break
                await asyncio.sleep(0.02)
            until = await service.head()
            backlog: asyncio.Queue[Frame] = asyncio.Queue()
            replay = Channel(topic=channel.topic, join_ref=None, push=backlog.put_nowait, claims=claims,
                             token="", bindings=channel.bindings)
            await service.deliver(await service.changes_after(resume_after, until), [replay])
            last = until
            while not backlog.empty():
                await send({"type": "http.response.body", "body": event_text(backlog.get_nowait()),
                            "more_body": True})
        while not gone.is_set() and not overflowed:
            expires = claims.expires_at
            wait = KEEPALIVE_SECONDS if expires is None else min(KEEPALIVE_SECONDS, expires - time.time())
            if wait <= 0:
                await send({"type": "http.response.body", "more_body": True,
                            "body": b"event: error\ndata: " + orjson.dumps({"message": "Token has expired"})
                            + b"\n\n"})
                break
            getter = asyncio.create_task(frames.get())
            done, _ = await asyncio.wait({getter, watcher}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if not gone.is_set():
                    await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                continue
            frame = getter.result()
            if frame.seq is not None and frame.seq <= last:
                continue  # already sent from the backlog
            await send({"type": "http.response.body", "body": event_text(frame), "more_body": True})
        if not gone.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass  # the client went away mid-write
    finally:
        service.hub.leave(channel)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
