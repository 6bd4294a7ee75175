"""The ASGI application: routing, authentication, error rendering, lifespan.

The hot path (``/rest/v1``) is plain ASGI: a framework's routing and request
objects cost more per request than the whole SQL round trip of a get-by-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import structlog

from ledgerbase import __version__
from ledgerbase.auth.keys import TokenVerifier, load_or_create_secret
from ledgerbase.auth.service import AuthService
from ledgerbase.config import Settings
from ledgerbase.db.engine import Database, PostgresDatabase, SqliteDatabase, open_database
from ledgerbase.db.introspect import introspect
from ledgerbase.db.migrate import MigrationError, migrate
from ledgerbase.db.schema import SchemaCache
from ledgerbase.errors import LedgerbaseError, UnavailableError
from ledgerbase.events.deadletters import DeadLetterStore
from ledgerbase.events.outbox import EventPublisher
from ledgerbase.ledger.capture import LedgerMark, capture_sqlite_writes
from ledgerbase.ledger.log import Ledger, default_origin, load_or_create_signer
from ledgerbase.ledger.routes import LedgerRoutes
from ledgerbase.observability import Metrics, ObservabilityMiddleware, configure_logging, metrics_response
from ledgerbase.realtime.service import RealtimeService
from ledgerbase.rest.exchange import Incoming, Reply
from ledgerbase.rest.handlers import DataApi
from ledgerbase.rest.openapi import build_openapi
from ledgerbase.rest.responses import error_body
from ledgerbase.security import SecurityMiddleware, read_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = structlog.get_logger("ledgerbase")
DEMO_MIGRATIONS = Path(__file__).parent / "demo"
_JSON = b"application/json; charset=utf-8"
_READ_ONLY = frozenset({"GET", "HEAD"})
_READ_ONLY_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


class Runtime:
    """What a running server holds: settings, database, schema cache, token verifier."""

    def __init__(self, settings: Settings, *, demo: bool = False) -> None:
        self.settings = settings
        self.demo = demo
        self.database: Database = open_database(
            settings.resolved_database_url(), readers=settings.sqlite_readers,
            pool_size=settings.pg_pool_size, statement_timeout_ms=settings.statement_timeout_ms,
            capture=settings.ledger_enabled)
        self.verifier = TokenVerifier(load_or_create_secret(settings.data_dir, settings.jwt_secret))
        self.auth = AuthService(settings, self.database, self.verifier)
        self.schema: SchemaCache = SchemaCache(schema=settings.db_schema, tables={},
                                               relationships={}, loaded=False)
        self.api = DataApi(self.database, lambda: self.schema,
                           anon_writes_without_rls=settings.anon_writes_without_rls)
        if settings.ledger_enabled:
            self.api.ledger_mark = LedgerMark(self.database)
        self.ledger: Ledger | None = None
        self.ledger_routes: LedgerRoutes | None = None
        if settings.ledger_enabled:
            origin = settings.ledger_origin or default_origin()
            signer = load_or_create_signer(settings.data_dir, origin, settings.ledger_key)
            self.ledger = Ledger(self.database, signer, origin, interval=settings.ledger_interval_seconds)
            self.ledger_routes = LedgerRoutes(self.ledger, self.api, signer.verifier().key(),
                                              settings.ledger_witnesses)
        self.realtime: RealtimeService | None = None
        if settings.realtime_enabled:
            self.realtime = RealtimeService(
                self.database, self.verifier, self.api, lambda: self.schema,
                changes=settings.ledger_enabled, poll_interval=settings.realtime_poll_interval,
                queue_limit=settings.realtime_queue_limit, relay_url=settings.redis_url,
                relay_channel=settings.realtime_relay_channel,
                presence_timeout=settings.realtime_presence_timeout_seconds)
        self.events: EventPublisher | None = (
            EventPublisher.from_settings(self.database, settings) if settings.ledger_enabled else None)
        self._watchers: list[asyncio.Task[None]] = []
        self._listener: Any = None
        self._schema_version: int | None = None
        self.prepared = False

    async def start(self) -> None:
        """Open the database, apply the demo schema if asked, load the schema cache."""
        await self.database.start()
        await self.prepare_database()
        with contextlib.suppress(UnavailableError):
            await self.reload_schema()
        self._watchers.append(asyncio.create_task(self._watch_schema()))
        if self.ledger is not None:
            self.ledger.start()
        if self.realtime is not None:
            self.realtime.start()
        if self.events is not None:
            self.events.start()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGUSR1, lambda: asyncio.ensure_future(self.reload_schema()))

    async def prepare_database(self) -> None:
        """Set up roles, ``auth`` and the demo schema (``--demo``); retried while the database is down."""
        try:
            await migrate(self.database.url, DEMO_MIGRATIONS if self.demo else None)
        except MigrationError as error:
            if self.demo or not isinstance(self.database, PostgresDatabase):
                raise
            log.warning("database_setup_deferred", error=error.message)
            return
        self.prepared = True

    async def stop(self) -> None:
        """Stop background work and close connections."""
        if self.events is not None:
            await self.events.stop()
        if self.realtime is not None:
            await self.realtime.stop()
        if self.ledger is not None:
            await self.ledger.stop()
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        await self.database.close()

    async def reload_schema(self) -> None:
        """Re-read the schema (after a migration) and drop compiled statements."""
        schema = await introspect(self.database, self.settings.db_schema)
        if self.settings.ledger_enabled and isinstance(self.database, SqliteDatabase):
            await capture_sqlite_writes(self.database)
        self.schema = schema
        self.api.statements.clear()
        log.info("schema_loaded", tables=len(schema.tables), functions=len(schema.functions))

    async def _watch_schema(self) -> None:
        """Reload on ``NOTIFY pgrst, 'reload schema'`` (PostgreSQL) or a schema change (SQLite)."""
        while True:
            try:
                if not self.prepared:
                    await self.prepare_database()
                if isinstance(self.database, SqliteDatabase):
                    version = await self.database.schema_version()
                    if self._schema_version is not None and version != self._schema_version:
                        await self.reload_schema()
                    self._schema_version = version
                elif isinstance(self.database, PostgresDatabase) and self._listener is None:
                    def on_notify(payload: str) -> None:
                        if payload in ("", "reload schema"):
                            asyncio.ensure_future(self.reload_schema())
                    self._listener = await self.database.listen("pgrst", on_notify)
                    if not self.schema.loaded:
                        await self.reload_schema()
                elif self._listener is not None and self._listener.is_closed():
                    self._listener = None
            except LedgerbaseError:
                self._listener = None
            await asyncio.sleep(1.0)


def create_app(settings: Settings | None = None, *, demo: bool = False) -> Callable[..., Awaitable[None]]:
    """The Ledgerbase ASGI application."""
    runtime = Runtime(settings or Settings(), demo=demo)
    max_body = runtime.settings.max_body_bytes
    metrics = Metrics()
    if runtime.ledger is not None:
        runtime.ledger.register_metrics(metrics.gauge)
    if runtime.events is not None:
        runtime.events.register_metrics(metrics.gauge)
    dead_letters = DeadLetterStore(runtime.database)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(runtime, receive, send)
            return
        if kind == "websocket":
            if scope["path"] == "/realtime/v1/websocket" and runtime.realtime is not None:
                await runtime.realtime.websocket(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        if kind != "http":
            return
        path: str = scope["path"]
        if path.startswith("/rest/v1"):
            await _rest(runtime, scope, receive, send, max_body)
        elif path.startswith("/auth/v1"):
            await runtime.auth(scope, receive, send)
        elif path == "/realtime/v1/sse" and runtime.realtime is not None:
            await runtime.realtime.sse(scope, receive, send)
        elif path.startswith("/ledger/v1/") and runtime.ledger_routes is not None:
            await _ledger(runtime, runtime.ledger_routes, scope, receive, send, max_body)
        elif path == "/admin/v1/webhooks/deadletters":
            await _dead_letters(runtime, dead_letters, scope, send)
        elif path in _READ_ONLY_PATHS and scope["method"] not in _READ_ONLY:
            error = LedgerbaseError(f"Unsupported HTTP method: {scope['method']}", code="PGRST117", status=405)
            await _send(send, 405, error_body(error), [(b"allow", b"GET, HEAD")])
        elif path == "/health/live":
            await _send(send, 200, orjson.dumps({"status": "ok", "version": __version__}))
        elif path == "/metrics":
            await metrics_response(metrics)(scope, receive, send)
        elif path == "/health/ready":
            if await runtime.database.ping():
                await _send(send, 200, orjson.dumps({"status": "ok"}))
            else:
                await _send(send, 503, orjson.dumps({"status": "unavailable"}),
                            [(b"retry-after", b"5")])
        else:
            error = LedgerbaseError("Not found", code="PGRST125", status=404)
            await _send(send, 404, error_body(error))

    settings = runtime.settings
    secured = SecurityMiddleware(app, cors_origins=settings.cors_origins, max_body_bytes=max_body,
                                 request_timeout=settings.request_timeout_seconds,
                                 trust_forwarded_proto=settings.proxy_headers)
    observed = ObservabilityMiddleware(secured, metrics, access_log=settings.access_log)
    realtime = runtime.realtime

    async def entry(scope: Scope, receive: Receive, send: Send) -> None:
        # Realtime's sockets skip the middleware (which passes websockets through untouched):
        # a connection then holds three coroutine frames fewer, for as long as it is open.
        if scope["type"] == "websocket" and realtime is not None and scope["path"] == "/realtime/v1/websocket":
            await realtime.websocket(scope, receive, send)
        else:
            await observed(scope, receive, send)

    entry.runtime = runtime  # type: ignore[attr-defined]
    return entry


async def _lifespan(runtime: Runtime, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await runtime.start()
            except Exception as error:  # startup failures are reported, not raised into uvicorn
                log.error("startup_failed", error=str(error))
                await send({"type": "lifespan.startup.failed", "message": str(error)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await runtime.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = _JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})




def _token(headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return authorization  # malformed: verified (and rejected) as a token
    return headers.get("apikey")


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1")  # ASGI servers give header names in lower case
        value = raw_value.decode("latin-1")
        if name == "prefer" and name in headers:
            value = f"{headers[name]}, {value}"
        headers[name] = value
    return headers


async def _ledger(runtime: Runtime, routes: LedgerRoutes, scope: Scope, receive: Receive, send: Send,
                  max_body: int) -> None:
    headers = _headers(scope)
    method: str = scope["method"]
    try:
        if not runtime.settings.ledger_public:
            runtime.verifier.verify(_token(headers))
        body = await read_body(receive, max_body) if method == "POST" else b""
        reply = await routes.handle(method, scope["path"][len("/ledger/v1"):],
                                    scope["query_string"].decode("latin-1"), headers,
                                    lambda: runtime.verifier.verify(_token(headers)), body)
    except LedgerbaseError as error:
        reply = Reply(error.status, b"" if method == "HEAD" else error_body(error),
                      {"Content-Type": _JSON.decode(), **error.headers})
    if method == "HEAD":
        reply = Reply(reply.status, b"", reply.headers)
    await _send_reply(send, reply)


async def _dead_letters(runtime: Runtime, store: DeadLetterStore, scope: Scope, send: Send) -> None:
    """``GET /admin/v1/webhooks/deadletters``: the newest dead letters, for the service_role key only."""
    try:
        if scope["method"] != "GET":
            raise LedgerbaseError(f"Unsupported HTTP method: {scope['method']}", code="PGRST117", status=405)
        claims = runtime.verifier.verify(_token(_headers(scope)))
        if claims.role != "service_role":
            raise LedgerbaseError("Only the service_role key may read dead letters", code="42501", status=403)
        body = orjson.dumps([letter.to_json() for letter in await store.latest()])
    except LedgerbaseError as error:
        await _send(send, error.status, error_body(error),
                    [(_header_name(name), value.encode("latin-1")) for name, value in error.headers.items()])
        return
    await _send(send, 200, body)


async def _rest(runtime: Runtime, scope: Scope, receive: Receive, send: Send, max_body: int) -> None:
    headers = _headers(scope)
    method: str = scope["method"]
    path: str = scope["path"][len("/rest/v1"):]
    try:
        claims = runtime.verifier.verify(_token(headers))
        if path in ("", "/") and method in ("GET", "HEAD"):
            await _send(send, 200, _openapi(runtime, scope, headers) if method == "GET" else b"",
                        content_type=b"application/openapi+json; charset=utf-8")
            return
        body = await read_body(receive, max_body) if method in ("POST", "PATCH", "PUT") else b""
        reply = await runtime.api.handle(Incoming(
            method=method, path=path, query_string=scope["query_string"].decode("latin-1"),
            headers=headers, body=body, claims=claims))
    except LedgerbaseError as error:
        reply = Reply(error.status, b"" if method == "HEAD" else error_body(error),
                      {"Content-Type": _JSON.decode(), **error.headers})
    except Exception:  # a bug must not leak a traceback or SQL to the client
        log.exception("unhandled_error", path=path)
        internal = LedgerbaseError("Internal server error", code="PGRST000", status=500)
        reply = Reply(500, error_body(internal), {"Content-Type": _JSON.decode()})
    await _send_reply(send, reply)


async def _send_reply(send: Send, reply: Reply) -> None:
    out = [(_header_name(name), value.encode("latin-1"))
           for name, value in reply.headers.items() if name != "Content-Type"]
    if "Content-Type" not in reply.headers:
        # PostgREST sends no Content-Type with an empty answer (204, 201 return=minimal)
        if reply.status != 204:
            out.append((b"content-length", b"0"))
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": b""})
        return
    await _send(send, reply.status, reply.body, out, reply.headers["Content-Type"].encode())


@functools.lru_cache(maxsize=64)
def _header_name(name: str) -> bytes:
    """A reply header's name as ASGI wants it (lower-case bytes); names come from code."""
    return name.lower().encode("latin-1")


def _openapi(runtime: Runtime, scope: Scope, headers: dict[str, str]) -> bytes:
    host = headers.get("host", f"{runtime.settings.host}:{runtime.settings.port}")
    scheme = scope.get("scheme", "http")
    return orjson.dumps(build_openapi(runtime.schema, server_url=f"{scheme}://{host}/rest/v1",
                                      version=__version__))


def app_from_env() -> Callable[..., Awaitable[None]]:
    """Factory for uvicorn (``--workers``): settings from ``LEDGERBASE_*`` variables."""
    settings = Settings()
    configure_logging(settings.log_level)
    application = create_app(settings, demo=os.environ.get("LEDGERBASE_DEMO") == "1")
    tune_garbage_collector()
    return application


FULL_WALK_SECONDS = 600.0  # how often a full collection walks the frozen objects too


def tune_garbage_collector() -> None:
    """Collector settings for a long-running server process.

    Thousands of open Realtime sockets are hundreds of thousands of long-lived objects,
    and a full collection walks them all: with 10,000 sockets, CPython's defaults paused
    the process for 0.3 to 1.6 s every few seconds under 500 to 1,000 writes/s, which was
    the whole p99 of delivery (bench/realtime.py). So what survives a full collection is
    frozen (left out of later collections): the next full collection walks only what
    was promoted since, and comes when that has grown by a quarter of the unfrozen old
    objects, as CPython's rule has it, so full collections stay short (about 0.1 s at
    most with 10,000 sockets). Every ``FULL_WALK_SECONDS`` one full collection walks
    everything again, so cycles among objects frozen while alive are still collected:
    one long pause per period, not one every few seconds.
    """
    walked = time.monotonic()

    def after(phase: str, info: dict[str, int]) -> None:
        nonlocal walked
        if phase != "stop" or info["generation"] != 2:
            return
        if time.monotonic() - walked > FULL_WALK_SECONDS:
            walked = time.monotonic()
            gc.unfreeze()  # the next full collection walks everything
        else:
            gc.freeze()

    gc.freeze()  # what the imports and the start-up built
    gc.callbacks.append(after)
