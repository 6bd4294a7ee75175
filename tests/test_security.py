"""Request security through real uvicorn servers: CORS, headers, limits, JSON errors, tokens, secrets."""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import orjson
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ledgerbase.app import create_app
from ledgerbase.auth.keys import load_or_create_secret, make_api_key
from ledgerbase.config import Settings
from ledgerbase.observability import configure_logging
from ledgerbase.security import SecurityMiddleware, parse_origins
from tests.conftest import RunningServer
from tests.test_observability import ServerThread, eventually

FIXTURE = Path(__file__).parent / "fixtures" / "core"
ORIGIN = "https://app.example.com"
SUPABASE_HEADERS = ("apikey, authorization, x-client-info, content-type, prefer, accept-profile, "
                    "content-profile, range, x-supabase-api-version")
LEAKS = ("Traceback", 'File "', "SELECT ", "INSERT ", "sqlite3", "asyncpg", "psycopg")


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(FIXTURE, max_body_bytes=4096)


@pytest.fixture(scope="module")
def strict(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """Explicit origins, a proxy in front, a short time limit."""
    return server_factory(FIXTURE, max_body_bytes=4096, cors_origins=f"{ORIGIN}, http://localhost:3000/",
                          proxy_headers=True, request_timeout_seconds=1)


def assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    if code is not None:
        assert body["code"] == code, body
    for leak in LEAKS:
        assert leak not in response.text
    return body


def raw_exchange(url: str, request: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes and read one response (for what httpx will not send)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(status_line.split()[1]), headers, body


# --- security headers -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "keyed", "status"), [
    ("GET", "/rest/v1/books?select=id&limit=1", True, 200),
    ("GET", "/rest/v1/books", False, 401),
    ("GET", "/rest/v1/no_such_table", True, 404),
    ("HEAD", "/rest/v1/books", True, 200),
    ("GET", "/health/live", False, 200),
    ("GET", "/health/ready", False, 200),
    ("GET", "/metrics", False, 200),
    ("GET", "/no/such/path", False, 404),
    ("POST", "/health/live", False, 405),
])
def test_security_headers_on_every_response(server: RunningServer, method: str, path: str, keyed: bool,
                                            status: int) -> None:
    response = httpx.request(method, server.url + path, headers=server.headers() if keyed else {}, timeout=30)
    assert response.status_code == status
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "strict-transport-security" not in headers  # plain HTTP
    assert headers["x-request-id"]
    assert len(headers.get_list("x-content-type-options")) == 1


def test_metrics_and_health_still_answer(server: RunningServer) -> None:
    metrics = httpx.get(server.url + "/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert "ledgerbase_http_requests_total" in metrics.text
    assert httpx.get(server.url + "/health/live").json()["status"] == "ok"


def test_hsts_only_over_tls(server: RunningServer, strict: RunningServer) -> None:
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "strict-transport-security" not in httpx.get(strict.url + "/health/live").headers
    behind_proxy = httpx.get(strict.url + "/health/live", headers=forwarded)
    assert behind_proxy.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in httpx.get(server.url + "/health/live").headers


# --- CORS ------------------------------------------------------------------------------------


def test_cors_any_origin(server: RunningServer) -> None:
    response = httpx.get(server.rest_url + "/books?select=id", headers={**server.headers(), "Origin": ORIGIN,
                                                                       "Prefer": "count=exact"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = {name.strip().lower() for name in response.headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "content-location", "location", "preference-applied", "range-unit",
            "x-request-id"} <= exposed
    assert "access-control-allow-credentials" not in response.headers
    assert "access-control-allow-origin" not in httpx.get(server.rest_url + "/books", headers=server.headers()).headers


@pytest.mark.parametrize("path", ["/rest/v1/books", "/rest/v1/rpc/book_count", "/auth/v1/token",
                                  "/ledger/v1/checkpoint", "/health/live"])
def test_preflight_on_every_path(server: RunningServer, path: str) -> None:
    response = httpx.options(server.url + path, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": SUPABASE_HEADERS})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-headers"] == SUPABASE_HEADERS
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"} <= methods
    assert response.headers["access-control-max-age"] == "86400"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_cors_explicit_origins(strict: RunningServer) -> None:
    for origin in (ORIGIN, "http://localhost:3000"):
        allowed = httpx.get(strict.rest_url + "/books?select=id", headers={**strict.headers(), "Origin": origin})
        assert allowed.headers["access-control-allow-origin"] == origin
        assert allowed.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in allowed.headers["vary"]
        assert "content-range" in allowed.headers["access-control-expose-headers"].lower()
    other = httpx.get(strict.rest_url + "/books?select=id", headers={**strict.headers(), "Origin": "https://evil.example"})
    assert other.status_code == 200
    assert not any(name.startswith("access-control-") for name in other.headers)
    assert "Origin" in other.headers["vary"]
    preflight = httpx.options(strict.rest_url + "/books", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"})
    assert not any(name.startswith("access-control-") for name in preflight.headers)
    good = httpx.options(strict.rest_url + "/books", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    assert good.status_code == 200 and good.headers["access-control-allow-origin"] == ORIGIN
    assert "x-supabase-api-version" in good.headers["access-control-allow-headers"]


def test_error_responses_carry_cors(server: RunningServer) -> None:
    """A browser can only read an error whose response allows its origin."""
    response = httpx.get(server.rest_url + "/books", headers={"Origin": ORIGIN})
    assert_json_error(response, 401)
    assert response.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(("setting", "expected"), [
    ("*", None), ("", frozenset()), (" https://A.example/ ,http://b:3000", frozenset({"https://a.example", "http://b:3000"})),
    ("https://a.example,*", None),
])
def test_parse_origins(setting: str, expected: frozenset[str] | None) -> None:
    assert parse_origins(setting) == expected


# --- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rest/v1/tags", "/auth/v1/signup", "/health/live", "/nowhere"])
def test_declared_body_over_the_limit_is_refused_before_reading(server: RunningServer, path: str) -> None:
    # Only the headers are sent: the answer must not wait for the 10 MB the header announces.
    status, headers, body = raw_exchange(server.url, (
        f"POST {path} HTTP/1.1\r\nHost: x\r\napikey: {server.service_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n").encode(), timeout=5)
    assert status == 413
    error = orjson.loads(body)
    assert error["code"] == "PGRST413" and "4096" in error["message"]
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"


def test_streamed_body_over_the_limit(server: RunningServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'[{"id": 4242, "name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]'

    response = httpx.post(server.rest_url + "/tags", content=chunks(),
                          headers={**server.headers(), "Content-Type": "application/json"}, timeout=30)
    assert_json_error(response, 413, "PGRST413")
    assert httpx.get(server.rest_url + "/tags?id=eq.4242", headers=server.headers()).json() == []


def test_body_within_the_limit(server: RunningServer) -> None:
    response = httpx.post(server.rest_url + "/tags", json={"id": 77, "name": "within"},
                          headers={**server.headers(), "Prefer": "return=representation"}, timeout=30)
    assert response.status_code == 201 and response.json() == [{"id": 77, "name": "within"}]


def test_slow_body_is_cut_off(strict: RunningServer) -> None:
    started = time.monotonic()
    status, headers, body = raw_exchange(strict.url, (
        f"POST /rest/v1/tags HTTP/1.1\r\nHost: x\r\napikey: {strict.service_key}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"id": ').encode(), timeout=10)
    assert status == 408 and orjson.loads(body)["code"] == "PGRST408"
    assert headers["connection"] == "close"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("dialect", ["postgres"], indirect=True)
def test_slow_request_is_cancelled(dialect: str, server_factory: Callable[..., RunningServer],
                                   tmp_path: Path) -> None:
    (tmp_path / "001_slow.sql").write_text(
        "CREATE TABLE t (id integer PRIMARY KEY);\n"
        "CREATE FUNCTION slow_answer() RETURNS integer LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(5) $$;\n")
    server = server_factory(tmp_path, request_timeout_seconds=1)
    started = time.monotonic()
    response = httpx.post(server.rest_url + "/rpc/slow_answer", json={}, headers=server.headers(), timeout=30)
    assert_json_error(response, 504, "PGRST003")
    assert time.monotonic() - started < 4
    # the cancelled request left the pool usable
    assert httpx.get(server.rest_url + "/t", headers=server.headers(), timeout=30).json() == []


# --- every error is JSON ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/nowhere", 404, "PGRST125"),
    ("GET", "/", 404, "PGRST125"),
    ("POST", "/metrics", 405, "PGRST117"),
    ("DELETE", "/health/ready", 405, "PGRST117"),
    ("PROPFIND", "/health/live", 405, "PGRST117"),
    ("PROPFIND", "/rest/v1/books", 405, "PGRST117"),
    ("PURGE", "/rest/v1/rpc/book_count", 405, None),
    ("GET", "/rest/v1/books?id=eq.notanumber", 400, None),
    ("GET", "/rest/v1/books?select=nope(", 400, None),
    ("GET", "/rest/v1/books?order=title.sideways", 400, None),
    ("POST", "/rest/v1/books", 400, None),
    ("GET", "/rest/v1/books/1/2", 404, None),
])
def test_errors_are_json(server: RunningServer, method: str, path: str, status: int, code: str | None) -> None:
    content = b"{not json" if method == "POST" else None
    response = httpx.request(method, server.url + path, headers=server.headers(), content=content, timeout=30)
    assert_json_error(response, status, code)


@pytest.mark.parametrize("request_line", [
    "GET /rest/v1/%ff%00books HTTP/1.1",
    "GET /rest/v1/books%27%3B--?select=* HTTP/1.1",
    "GET //rest/v1/books HTTP/1.1",
    "GET /rest/v1/../../etc/passwd HTTP/1.1",
    "OPTIONS * HTTP/1.1",
    "GET /rest/v1/books?select=%ff%fe HTTP/1.1",
])
def test_odd_request_lines_get_json(server: RunningServer, request_line: str) -> None:
    status, headers, body = raw_exchange(server.url, (
        f"{request_line}\r\nHost: x\r\napikey: {server.service_key}\r\nConnection: close\r\n\r\n").encode())
    if status >= 400:
        error = orjson.loads(body)
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        assert headers["content-type"].startswith("application/json")
    text = body.decode("utf-8", "replace")
    assert not any(leak in text for leak in LEAKS)


# --- tokens --------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes, secret: str | None,
              digest: str = "sha256") -> str:
    """A JWT assembled by hand, for what PyJWT refuses to produce (alg none, NaN claims, short keys)."""
    head = _b64(header if isinstance(header, bytes) else orjson.dumps(header))
    body = _b64(payload if isinstance(payload, bytes) else orjson.dumps(payload))
    signing_input = f"{head}.{body}".encode()
    signature = "" if secret is None else _b64(hmac.new(secret.encode(), signing_input, digest).digest())
    return f"{head}.{body}.{signature}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed(server: RunningServer, claims: dict[str, Any], algorithm: str = "HS256") -> str:
    return jwt.encode(claims, server.jwt_secret, algorithm=algorithm)


NOW = int(time.time())
FORGED: list[tuple[str, Callable[[RunningServer], dict[str, str]], str]] = [
    ("alg none", lambda s: bearer(hand_made({"alg": "none", "typ": "JWT"}, {"role": "service_role"}, None)),
     "PGRST301"),
    ("alg None", lambda s: bearer(hand_made({"alg": "None"}, {"role": "service_role"}, None)), "PGRST301"),
    ("wrong secret", lambda s: bearer(jwt.encode({"role": "service_role"}, "x" * 48, algorithm="HS256")),
     "PGRST301"),
    ("RS256 header, HMAC signature", lambda s: bearer(hand_made({"alg": "RS256"}, {"role": "service_role"},
                                                                s.jwt_secret)), "PGRST301"),
    ("HS512", lambda s: bearer(hand_made({"alg": "HS512", "typ": "JWT"}, {"role": "service_role"},
                                         s.jwt_secret, "sha512")), "PGRST301"),
    ("tampered payload", lambda s: bearer(".".join(
        [signed(s, {"role": "anon"}).split(".")[0], _b64(b'{"role":"service_role"}'),
         signed(s, {"role": "anon"}).split(".")[2]])), "PGRST301"),
    ("expired", lambda s: bearer(signed(s, {"role": "service_role", "exp": NOW - 10})), "PGRST303"),
    ("exp not a number", lambda s: bearer(signed(s, {"role": "service_role", "exp": "tomorrow"})), "PGRST303"),
    ("exp NaN", lambda s: bearer(hand_made({"alg": "HS256"}, b'{"role":"service_role","exp":NaN}',
                                           s.jwt_secret)), "PGRST303"),
    ("exp Infinity", lambda s: bearer(hand_made({"alg": "HS256"}, b'{"role":"service_role","exp":Infinity}',
                                                s.jwt_secret)), "PGRST303"),
    ("exp true", lambda s: bearer(signed(s, {"role": "service_role", "exp": True})), "PGRST303"),
    ("nbf in the future", lambda s: bearer(signed(s, {"role": "service_role", "nbf": NOW + 3600})), "PGRST303"),
    ("role postgres", lambda s: bearer(signed(s, {"role": "postgres"})), "22023"),
    ("role supabase_admin", lambda s: bearer(signed(s, {"role": "supabase_admin"})), "22023"),
    ("role empty", lambda s: bearer(signed(s, {"role": ""})), "22023"),
    ("role number", lambda s: bearer(signed(s, {"role": 1})), "22023"),
    ("role list", lambda s: bearer(signed(s, {"role": ["service_role"]})), "22023"),
    ("role null", lambda s: bearer(signed(s, {"role": None})), "22023"),
    ("role with a quote", lambda s: bearer(signed(s, {"role": 'x"\r\nSet-Cookie: a=b'})), "22023"),
    ("Bearer alone", lambda s: {"Authorization": "Bearer"}, "PGRST301"),
    ("Basic credentials", lambda s: {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}, "PGRST301"),
    ("Basic with a valid key", lambda s: {"Authorization": f"Basic {s.service_key}"}, "PGRST301"),
    ("four parts", lambda s: bearer("a.b.c.d"), "PGRST301"),
    ("not base64", lambda s: bearer("!!!.???.***"), "PGRST301"),
    ("garbage JSON", lambda s: bearer(f"{_b64(b'{')}.{_b64(b'[')}.sig"), "PGRST301"),
    ("two tokens", lambda s: bearer(f"{s.service_key} {s.service_key}"), "PGRST301"),
    ("empty apikey", lambda s: {"apikey": ""}, "PGRST302"),
    ("forged apikey", lambda s: {"apikey": jwt.encode({"role": "service_role"}, "y" * 48, algorithm="HS256")},
     "PGRST301"),
    ("valid apikey, forged bearer", lambda s: {"apikey": s.service_key,
                                               **bearer(jwt.encode({"role": "service_role"}, "z" * 48,
                                                                   algorithm="HS256"))}, "PGRST301"),
    ("valid apikey, expired bearer", lambda s: {"apikey": s.service_key,
                                                **bearer(signed(s, {"role": "anon", "exp": NOW - 1}))},
     "PGRST303"),
]


@pytest.mark.parametrize(("case", "make_headers", "code"), FORGED, ids=[case for case, _, _ in FORGED])
def test_forged_or_broken_tokens_get_401(server: RunningServer, case: str,
                                         make_headers: Callable[[RunningServer], dict[str, str]], code: str) -> None:
    for method, path in (("GET", "/rest/v1/books?select=title"), ("GET", "/rest/v1/"),
                         ("POST", "/rest/v1/tags"), ("DELETE", "/rest/v1/tags?id=gt.0")):
        response = httpx.request(method, server.url + path, headers=make_headers(server),
                                 json={"id": 900, "name": "forged"} if method == "POST" else None, timeout=30)
        assert_json_error(response, 401, code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "\n" not in response.headers["www-authenticate"]
        assert "Dispossessed" not in response.text and "Left Hand" not in response.text
        assert "paths" not in response.text
    assert httpx.get(server.rest_url + "/tags?id=eq.900", headers=server.headers()).json() == []


def test_bearer_with_only_spaces(server: RunningServer) -> None:
    status, headers, body = raw_exchange(server.url, (
        b"GET /rest/v1/books HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer    \r\nConnection: close\r\n\r\n"))
    assert status == 401 and orjson.loads(body)["code"] in ("PGRST301", "PGRST302")
    assert headers["www-authenticate"].startswith("Bearer")


def test_valid_tokens_still_work(server: RunningServer) -> None:
    for headers in (server.headers(), {"apikey": server.service_key},
                    bearer(signed(server, {"role": "service_role", "exp": NOW + 600, "nbf": NOW - 5}))):
        response = httpx.get(server.rest_url + "/books?select=id&limit=1", headers=headers)
        assert response.status_code == 200 and len(response.json()) == 1


# --- the middleware around other code (a Starlette sub-app) ----------------------------------------


def _sub_app() -> Starlette:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(5)
        return JSONResponse({"late": True})

    async def boom(request: Request) -> Response:
        raise RuntimeError("SELECT secret FROM vault -- must stay in the log")

    async def echo(request: Request) -> Response:
        return JSONResponse({"size": len(await request.body())})

    async def html(request: Request) -> Response:
        return HTMLResponse("<p>hello</p>")

    async def own_policy(request: Request) -> Response:
        return HTMLResponse("<p>admin</p>", headers={"Content-Security-Policy": "default-src 'self'"})

    async def stream(request: Request) -> Response:
        async def parts() -> Any:
            for _ in range(3):
                await asyncio.sleep(0.5)
                yield b"tick\n"
        return StreamingResponse(parts(), media_type="text/plain")

    async def silent(request: Request) -> Response:
        return PlainTextResponse("teapot", status_code=418)

    return Starlette(routes=[
        Route("/slow", slow), Route("/boom", boom), Route("/echo", echo, methods=["POST"]),
        Route("/html", html), Route("/own-policy", own_policy), Route("/stream", stream),
        Route("/teapot", silent),
    ])


async def _no_response(scope: Any, receive: Any, send: Any) -> None:
    return None


@pytest.fixture(scope="module")
def wrapped() -> Iterator[ServerThread]:
    sub = _sub_app()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/no-response":
            await _no_response(scope, receive, send)
        else:
            await sub(scope, receive, send)

    with ServerThread(SecurityMiddleware(app, max_body_bytes=1000, request_timeout=1)) as running:
        yield running


def test_sub_app_timeout(wrapped: ServerThread) -> None:
    started = time.monotonic()
    response = httpx.get(wrapped.url + "/slow", timeout=10)
    assert_json_error(response, 504, "PGRST003")
    assert time.monotonic() - started < 3


def test_streaming_response_is_not_cut_by_the_time_limit(wrapped: ServerThread) -> None:
    response = httpx.get(wrapped.url + "/stream", timeout=10)
    assert response.status_code == 200 and response.text == "tick\n" * 3


def test_sub_app_exception_is_json_and_logged(wrapped: ServerThread, captured_logs: io.StringIO) -> None:
    response = httpx.get(wrapped.url + "/boom", timeout=10)
    body = assert_json_error(response, 500, "PGRST000")
    assert body["message"] == "Internal server error" and "vault" not in response.text
    # Starlette answers before re-raising: the line may follow the response by a moment
    eventually(lambda: "must stay in the log" in captured_logs.getvalue())
    assert '"event":"unhandled_error"' in captured_logs.getvalue()


@pytest.mark.parametrize(("path", "method", "status", "code"), [
    ("/missing", "GET", 404, "PGRST125"),
    ("/echo", "GET", 405, "PGRST117"),
    ("/teapot", "GET", 418, "PGRST418"),
    ("/no-response", "GET", 500, "PGRST000"),
])
def test_sub_app_plain_errors_become_json(wrapped: ServerThread, path: str, method: str, status: int,
                                          code: str) -> None:
    response = httpx.request(method, wrapped.url + path, timeout=10)
    assert_json_error(response, status, code)
    assert response.headers["x-frame-options"] == "DENY"
    if status == 405:
        assert "POST" in response.headers["allow"]


def test_sub_app_bodies(wrapped: ServerThread) -> None:
    assert httpx.post(wrapped.url + "/echo", content=b"x" * 1000).json() == {"size": 1000}
    assert_json_error(httpx.post(wrapped.url + "/echo", content=b"x" * 1001), 413, "PGRST413")
    chunked = httpx.post(wrapped.url + "/echo", content=iter([b"x" * 600, b"x" * 600]))
    assert_json_error(chunked, 413, "PGRST413")


def test_csp_on_html(wrapped: ServerThread) -> None:
    page = httpx.get(wrapped.url + "/html")
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    own = httpx.get(wrapped.url + "/own-policy")
    assert own.headers.get_list("content-security-policy") == ["default-src 'self'"]


# --- secrets ----------------------------------------------------------------------------------------


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.asgi", "uvicorn.access", "httpx", "httpcore"]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate, logger.disabled)
             for logger in (logging.getLogger(name) for name in names)]
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    yield stream
    structlog.reset_defaults()
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def test_secret_is_created_private_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    secret = load_or_create_secret(data_dir)
    path = data_dir / "jwt-secret"
    assert len(secret) >= 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert load_or_create_secret(data_dir) == secret
    assert load_or_create_secret(data_dir, "configured-secret") == "configured-secret"
    assert [p.name for p in data_dir.iterdir()] == ["jwt-secret"]  # no temporary file left


def test_concurrent_first_start_agrees_on_one_secret(tmp_path: Path) -> None:
    def start(barrier: threading.Barrier, data_dir: Path, results: list[str]) -> None:
        barrier.wait()
        results.append(load_or_create_secret(data_dir))

    for attempt in range(10):
        data_dir = tmp_path / f"race{attempt}"
        barrier = threading.Barrier(12)
        results: list[str] = []
        threads = [threading.Thread(target=start, args=(barrier, data_dir, results)) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 12 and len(set(results)) == 1 and results[0]
        assert (data_dir / "jwt-secret").read_text().strip() == results[0]
        assert [p.name for p in data_dir.iterdir()] == ["jwt-secret"]


def test_empty_secret_file_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "jwt-secret").write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_or_create_secret(tmp_path)


def test_readable_secret_file_is_reported_without_the_secret(tmp_path: Path, captured_logs: io.StringIO) -> None:
    path = tmp_path / "jwt-secret"
    path.write_text("a-secret-that-others-can-read\n")
    os.chmod(path, 0o644)
    assert load_or_create_secret(tmp_path) == "a-secret-that-others-can-read"
    text = captured_logs.getvalue()
    assert "secret_file_permissions" in text and "0o644" in text
    assert "a-secret-that-others-can-read" not in text


def test_secrets_never_reach_the_logs(tmp_path: Path, captured_logs: io.StringIO) -> None:
    app = create_app(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                              access_log=True))
    secret = (tmp_path / "jwt-secret").read_text().strip()
    key = make_api_key(secret, "service_role")
    with ServerThread(app) as running:
        rest = running.url + "/rest/v1"
        httpx.get(rest + "/nothing", headers={"apikey": key, "Authorization": f"Bearer {key}"})
        httpx.get(rest + f"/nothing?apikey={key}&access_token=opaque-access-token-value")
        httpx.get(rest + "/nothing", headers={"Authorization": "Bearer opaque-credential-123456"})
        httpx.get(rest + "/nothing", headers={"apikey": secret})
    text = captured_logs.getvalue()
    assert '"event":"request"' in text  # the access lines were written
    for value in (secret, key, key.split(".")[2], "opaque-access-token-value", "opaque-credential-123456"):
        assert value not in text


@pytest.mark.parametrize(("text", "hidden"), [
    ("WebSocket /realtime/v1/websocket?apikey=abc.def.ghi&vsn=1.0.0", "abc.def.ghi"),
    ("/auth/v1/token?grant_type=refresh_token&refresh_token=r3fr3sh", "r3fr3sh"),
    ("/auth/v1/verify?token=t0k3n&type=signup", "t0k3n"),
    ("header was Authorization: Bearer 0123456789abcdef", "0123456789abcdef"),
    ("password=hunter2 in a message", "hunter2"),
])
def test_credentials_in_text_are_redacted(captured_logs: io.StringIO, text: str, hidden: str) -> None:
    logging.getLogger("uvicorn.error").info("%s", text)
    structlog.get_logger("test").warning("echo", detail=text)
    logged = captured_logs.getvalue()
    assert logged.count("[redacted]") >= 2
    assert hidden not in logged
