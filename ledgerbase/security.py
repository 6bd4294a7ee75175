"""Request security for every route: CORS, security headers, body and time limits, JSON errors.

``SecurityMiddleware`` wraps the whole application (inside
``ObservabilityMiddleware``, so its own answers carry the request id and are
counted), which keeps these rules in one place for the data API, auth, the
ledger and whatever sub-app is mounted later:

- CORS as PostgREST does it: any origin (``*``) by default; a configured list
  echoes a matching ``Origin`` with credentials allowed and ``Vary: Origin``;
  other origins get no CORS headers. Preflights are answered here.
- ``X-Content-Type-Options``, ``Referrer-Policy``, ``X-Frame-Options`` and a
  strict ``Content-Security-Policy`` (unless the app sent its own) on every
  response; ``Strict-Transport-Security`` when the request came over TLS.
- Bodies: a ``Content-Length`` over the limit is answered 413 before any of
  the body is read; chunked bodies are counted as they arrive.
- Time: a request not answered within the limit is cancelled and answered
  504 (408 while its body is still arriving).
- Errors are JSON ``{code, message, details, hint}``: an exception escaping
  the app is logged with its traceback and answered 500 without details, and
  a non-JSON error response (a framework's plain-text 404 or 405) is replaced
  by a JSON one with the same status and headers.

Cost, measured by driving it directly with a no-op app (CPython 3.11, uvloop, a
loaded two-core machine): about 3 us per request, like ``ObservabilityMiddleware``
without its access line; the header lists are built once at start, and the time
limit uses one sweeper task per process rather than a timer per request
(``asyncio.timeout`` alone measured 6-7 us per request there).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import structlog

from ledgerbase.errors import LedgerbaseError

__all__ = ["SecurityMiddleware", "load_or_create_secret_file", "parse_origins"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

log = structlog.get_logger("ledgerbase.security")

ALLOWED_METHODS = b"GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD"
# What supabase-js / supabase-py send; echoed as requested when the preflight names them.
DEFAULT_ALLOWED_HEADERS = (b"authorization, apikey, x-client-info, content-type, prefer, accept, "
                           b"accept-profile, content-profile, range, range-unit, x-supabase-api-version, "
                           b"x-request-id")
# PostgREST's exposed headers, plus ours and GoTrue's (supabase-js reads X-Supabase-Api-Version).
EXPOSED_HEADERS = (b"Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, "
                   b"Server, Transfer-Encoding, Range-Unit, Preference-Applied, Retry-After, "
                   b"WWW-Authenticate, X-Request-Id, X-Supabase-Api-Version")
CONTENT_SECURITY_POLICY = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
STRICT_TRANSPORT_SECURITY = b"max-age=31536000"
_BASE_HEADERS: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"x-frame-options", b"DENY"),
]
_CSP: Headers = [(b"content-security-policy", CONTENT_SECURITY_POLICY)]
_JSON = b"application/json; charset=utf-8"
_CLOSE = (b"connection", b"close")
_VARY_ORIGIN = (b"vary", b"Origin")

# Request headers the middleware reads, by slot.
_ORIGIN, _LENGTH, _CHUNKED, _PREFLIGHT_METHOD, _PREFLIGHT_HEADERS, _FORWARDED_PROTO = range(6)
_WATCHED = {b"origin": _ORIGIN, b"content-length": _LENGTH, b"transfer-encoding": _CHUNKED,
            b"access-control-request-method": _PREFLIGHT_METHOD,
            b"access-control-request-headers": _PREFLIGHT_HEADERS,
            b"x-forwarded-proto": _FORWARDED_PROTO}
# Codes for error responses that reach the client without a JSON body of their own.
_STATUS_CODES = {400: "PGRST100", 401: "PGRST301", 403: "42501", 404: "PGRST125", 405: "PGRST117",
                 406: "PGRST107", 500: "PGRST000", 503: "PGRST001", 504: "PGRST003"}


def parse_origins(value: str) -> frozenset[str] | None:
    """The allowed CORS origins of a setting: None for any (``*``), else the set (maybe empty).

    Origins compare as browsers send them: ``scheme://host[:port]``, lower case,
    no trailing slash.
    """
    origins = {part.strip().rstrip("/").lower() for part in value.split(",") if part.strip()}
    if "*" in origins:
        return None
    return frozenset(origins)


def error_response(error: LedgerbaseError) -> bytes:
    """The JSON body of ``error`` (PostgREST's shape)."""
    return orjson.dumps(error.to_json())


class SecurityMiddleware:
    """Pure ASGI middleware applying CORS, security headers, limits and JSON errors to every route.

    ``cors_origins``: ``*`` or a comma-separated list (see ``parse_origins``).
    ``max_body_bytes``: the largest request body accepted (413 above it).
    ``request_timeout``: seconds until a request that has not started its
    response is cancelled (504; 408 if its body is still arriving); 0 turns it off.
    ``trust_forwarded_proto``: treat ``X-Forwarded-Proto: https`` as TLS (behind
    a proxy you run) for ``Strict-Transport-Security``. Non-HTTP scopes pass through.
    """

    def __init__(self, app: ASGIApp, *, cors_origins: str = "*", max_body_bytes: int = 1024 * 1024,
                 request_timeout: float = 30.0, trust_forwarded_proto: bool = False) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.timeout = request_timeout
        self.trust_forwarded_proto = trust_forwarded_proto
        allowed = parse_origins(cors_origins)
        self._any_origin = allowed is None
        expose = (b"access-control-expose-headers", EXPOSED_HEADERS)
        # Every header list a response can get is built here, once: (plain, TLS) x (without, with CSP).
        if allowed is None:
            self._absent = _variants([])
            self._other = _variants([(b"access-control-allow-origin", b"*"), expose])
            self._origins: dict[bytes, _Variants] = {}
        else:
            # Vary on every answer, so caches keep one copy per origin.
            self._absent = self._other = _variants([_VARY_ORIGIN])
            self._origins = {origin.encode("latin-1"): _variants([
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"), expose, _VARY_ORIGIN])
                for origin in allowed}
        # Deadlines of requests that have not started their response, checked by one sweeper task.
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._tick = min(1.0, request_timeout / 4) if request_timeout > 0 else 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found: list[bytes | None] = [None] * 6
        for name, value in scope["headers"]:
            slot = _WATCHED.get(name)
            if slot is not None:
                found[slot] = value
        origin = found[_ORIGIN]
        allowed = origin is not None
        if origin is None:
            variants = self._absent
        elif self._any_origin:
            variants = self._other
        else:
            variants = self._origins.get(origin.lower()) or self._other
            allowed = variants is not self._other
        forwarded = found[_FORWARDED_PROTO]
        if scope.get("scheme") == "https" or (self.trust_forwarded_proto and forwarded is not None
                                              and forwarded.split(b",", 1)[0].strip().lower() == b"https"):
            extra, extra_csp = variants[1]
        else:
            extra, extra_csp = variants[0]
        method: str = scope["method"]
        if method == "OPTIONS" and allowed and found[_PREFLIGHT_METHOD] is not None:
            await _preflight(send, extra_csp, found[_PREFLIGHT_HEADERS])
            return

        has_body = False
        length = found[_LENGTH]
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _answer(send, extra_csp, LedgerbaseError("Invalid Content-Length header",
                                                           code="PGRST100", status=400), close=True)
                return
            if declared > self.max_body:
                await _answer(send, extra_csp, _too_large(self.max_body), close=True)
                return
            has_body = declared > 0
        elif found[_CHUNKED] is not None:
            has_body = True

        started = False
        replaced = False  # the middleware answered; what the app sends is dropped
        overflowed = False  # ... because the body went over the limit: the app saw a disconnect
        body_done = not has_body
        task = asyncio.current_task()
        deadlines = self._deadlines

        async def secured_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if task is not None:
                    deadlines.pop(task, None)
                headers = message.get("headers") or ()
                if message["status"] >= 400 and not _is_json(headers):
                    replaced = True
                    await _answer(send, extra_csp, _generic_error(message["status"]),
                                  kept=_kept_headers(headers))
                    return
                own_policy = False
                for name, _ in headers:
                    if name == b"content-security-policy":
                        own_policy = True
                        break
                # in place, as Starlette's middlewares do; the app's header list itself is left alone
                message["headers"] = [*headers, *(extra if own_policy else extra_csp)]
            await send(message)

        app_receive = receive
        if has_body:
            limit = self.max_body
            received = 0

            async def limited_receive() -> Message:
                nonlocal received, body_done, replaced, overflowed
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        overflowed = True
                        if not started:
                            replaced = True
                            await _answer(send, extra_csp, _too_large(limit), close=True)
                        return {"type": "http.disconnect"}
                    if not message.get("more_body", False):
                        body_done = True
                return message

            app_receive = limited_receive

        if task is not None and self.timeout > 0:
            deadlines[task] = time.monotonic() + self.timeout
            if self._sweeper is None:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        error: LedgerbaseError | None = None
        try:
            await self.app(scope, app_receive, secured_send)
        except asyncio.CancelledError:
            if task is None or task not in self._expired:
                raise
        except LedgerbaseError as raised:  # raised by a sub-app that does not render its own errors
            error = raised
        except Exception:  # a bug must not leak a traceback or SQL to the client
            if not overflowed:  # else the app failed on the disconnect it was handed
                log.exception("unhandled_error", method=method, path=scope["path"])
                error = _internal_error()
        finally:
            if task is not None:
                deadlines.pop(task, None)
        if task is not None and task in self._expired:
            self._expired.discard(task)
            if task.uncancel() > 0:  # cancelled from elsewhere as well (shutdown): let that win
                raise asyncio.CancelledError
            if not started:
                error = self._timeout_error(body_done, method, scope["path"])
        if replaced:
            return
        if error is None and not started:
            log.error("no_response", method=method, path=scope["path"])
            error = _internal_error()
        if error is not None:
            if started:  # too late for another status: the server closes the connection
                log.error("error_after_response_start", method=method, path=scope["path"], code=error.code)
                return
            await _answer(send, extra_csp, error, close=not body_done)

    def _timeout_error(self, body_done: bool, method: str, path: str) -> LedgerbaseError:
        log.warning("request_timeout", method=method, path=path, seconds=self.timeout, body_done=body_done)
        if body_done:
            return LedgerbaseError(f"The request took longer than the limit of {self.timeout:g} seconds",
                                   code="PGRST003", status=504)
        return LedgerbaseError(f"The request body did not arrive within {self.timeout:g} seconds",
                               code="PGRST408", status=408)

    async def _sweep(self) -> None:
        """Cancel requests past their deadline; ends when none is in flight (restarted on demand)."""
        try:
            while self._deadlines:
                await asyncio.sleep(self._tick)
                now = time.monotonic()
                # Deadlines are inserted in arrival order with one timeout: stop at the first live one.
                for task, deadline in list(self._deadlines.items()):
                    if deadline > now:
                        break
                    del self._deadlines[task]
                    self._expired.add(task)
                    task.cancel()
        finally:
            self._sweeper = None


async def _preflight(send: Send, extra: Headers, requested: bytes | None) -> None:
    headers = [
        (b"content-length", b"0"),
        (b"access-control-allow-methods", ALLOWED_METHODS),
        (b"access-control-allow-headers", requested if requested else DEFAULT_ALLOWED_HEADERS),
        (b"access-control-max-age", b"86400"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


_Variants = tuple[tuple[Headers, Headers], tuple[Headers, Headers]]


def _variants(cors: Headers) -> _Variants:
    """The headers added to a response with these CORS headers: ((plain, +CSP), (TLS, TLS+CSP))."""
    plain = [*_BASE_HEADERS, *cors]
    tls = [*_BASE_HEADERS, (b"strict-transport-security", STRICT_TRANSPORT_SECURITY), *cors]
    return (plain, [*plain, *_CSP]), (tls, [*tls, *_CSP])


def _too_large(limit: int) -> LedgerbaseError:
    return LedgerbaseError(f"The request body is larger than the limit of {limit} bytes",
                           code="PGRST413", status=413)


def _internal_error() -> LedgerbaseError:
    return LedgerbaseError("Internal server error", code="PGRST000", status=500)


def _generic_error(status: int) -> LedgerbaseError:
    if status == 500:
        return _internal_error()
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return LedgerbaseError(phrase, code=_STATUS_CODES.get(status, f"PGRST{status}"), status=status)


def _is_json(headers: Any) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    return False


_DROPPED = frozenset({b"content-type", b"content-length", b"transfer-encoding", b"content-encoding"})


def _kept_headers(headers: Any) -> Headers:
    """The headers of a replaced error response worth keeping (Allow, WWW-Authenticate, Retry-After...)."""
    return [(name, value) for name, value in headers if name.lower() not in _DROPPED]


async def _answer(send: Send, extra: Headers, error: LedgerbaseError, *, close: bool = False,
                  kept: Headers | None = None) -> None:
    """Send ``error`` as a whole JSON response with the security and CORS headers."""
    body = error_response(error)
    headers: Headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()),
                        *(kept or ())]
    if kept is None:
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in error.headers.items()]
    if close:
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": error.status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


# --- secrets ------------------------------------------------------------------------------


async def read_body(receive: Receive, limit: int) -> bytes:
    """The request body, read to its end or to a disconnect.

    Raises LedgerbaseError 413 (PGRST413) above ``limit`` bytes: the middleware answers
    a declared or streamed body that is too large itself; a handler stops reading too.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def load_or_create_secret_file(path: Path, generate: Callable[[], bytes]) -> bytes:
    """The content of the secret file ``path``, created with ``generate()`` (mode 0600) if missing.

    The file appears complete or not at all: the secret is written to a private
    temporary file first, then hard-linked into place, which fails if another
    process (a second worker on first start) got there first; that process's
    secret is then read and used, so all workers agree. The directory is
    created with mode 0700 when missing. A secret file readable by others is
    reported in the log (its path, never its content). Raises OSError when the
    directory cannot be written.
    """
    with contextlib.suppress(FileNotFoundError):
        return _read_secret(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(generate())
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    with open(path, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        content = handle.read()
    if mode & 0o077:
        log.warning("secret_file_permissions", path=str(path), mode=oct(mode & 0o777),
                    hint="chmod 600 it: other users of this machine can read it")
    return content
