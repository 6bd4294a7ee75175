"""Request ids, access logs and metrics, seen through a real uvicorn server and httpx."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ledgerbase.observability import (
    Metrics,
    ObservabilityMiddleware,
    configure_logging,
    metrics_response,
    redact_secrets,
    route_template,
)

SECRET = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNlY3JldA"
HEX32 = re.compile(r"[0-9a-f]{32}")


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``check``: the access line and metrics are written after the response is sent."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """JSON logging into a buffer for one test; the previous logging set-up is restored afterwards."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.asgi", "uvicorn.access", "httpx", "httpcore"]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate, logger.disabled)
             for logger in (logging.getLogger(name) for name in names)]
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    structlog.reset_defaults()
    for logger, handlers, level, propagate, disabled in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def access_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [line for line in lines(stream) if line.get("event") == "request"]


def make_app(metrics: Metrics) -> ObservabilityMiddleware:
    async def table(request: Request) -> Response:
        structlog.get_logger("test").info("inside", table=request.path_params["table"])
        return JSONResponse([{"id": 1}])

    async def boom(request: Request) -> Response:
        raise RuntimeError("the handler failed")

    async def metrics_endpoint(request: Request) -> Response:
        return metrics_response(metrics)

    app = Starlette(routes=[
        Route("/rest/v1/{table}", table, methods=["GET", "POST"]),
        Route("/boom", boom),
        Route("/metrics", metrics_endpoint),
    ])
    return ObservabilityMiddleware(app, metrics)


class ServerThread:
    """uvicorn on a free port in a background thread."""

    def __init__(self, app: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        eventually(lambda: self.server.started or not self.thread.is_alive(), timeout=30)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture(scope="module")
def server(metrics: Metrics) -> Iterator[ServerThread]:
    with ServerThread(make_app(metrics)) as running:
        yield running


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


# --- request id ---------------------------------------------------------------------------


def test_request_id_is_generated(client: httpx.Client, log_stream: io.StringIO) -> None:
    first = client.get("/rest/v1/orders")
    second = client.get("/rest/v1/orders")
    assert first.status_code == 200
    assert HEX32.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("given", ["abc-123", "A.b_c-9", "x" * 64])
def test_sane_request_id_is_echoed(client: httpx.Client, log_stream: io.StringIO, given: str) -> None:
    response = client.get("/rest/v1/orders", headers={"X-Request-Id": given})
    assert response.headers["x-request-id"] == given
    eventually(lambda: any(line["request_id"] == given for line in access_lines(log_stream)))


@pytest.mark.parametrize("given", ["", "has space", "x" * 65, "semi;colon", "ünïcode", "a/b"])
def test_unsafe_request_id_is_replaced(client: httpx.Client, log_stream: io.StringIO, given: str) -> None:
    response = client.get("/rest/v1/orders", headers=[(b"X-Request-Id", given.encode())])
    assert HEX32.fullmatch(response.headers["x-request-id"])


# --- logs ---------------------------------------------------------------------------------


def test_access_line_and_bound_request_id(client: httpx.Client, log_stream: io.StringIO) -> None:
    response = client.get("/rest/v1/orders?email=eq.alice@example.com&select=id",
                          headers={"Authorization": f"Bearer {SECRET}", "apikey": SECRET})
    request_id = response.headers["x-request-id"]
    eventually(lambda: len(access_lines(log_stream)) == 1)
    text = log_stream.getvalue()
    assert SECRET not in text
    assert "alice" not in text and "email" not in text and "select=" not in text
    (access,) = access_lines(log_stream)
    assert access["level"] == "info" and access["logger"] == "ledgerbase.access"
    assert access["method"] == "GET"
    assert access["path"] == "/rest/v1/orders"
    assert access["route"] == "/rest/v1/{table}"
    assert access["status"] == 200
    assert access["request_id"] == request_id
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", access["timestamp"])
    # A line logged by the handler carries the same request id.
    (inside,) = [line for line in lines(log_stream) if line["event"] == "inside"]
    assert inside["request_id"] == request_id and inside["table"] == "orders"


def test_failing_handler_is_logged_as_json_500(client: httpx.Client, log_stream: io.StringIO,
                                              metrics: Metrics) -> None:
    labels = {"method": "GET", "route": "other", "status": "500"}
    before = metrics.registry.get_sample_value("ledgerbase_http_requests_total", labels) or 0.0
    response = client.get("/boom")
    assert response.status_code == 500
    eventually(lambda: any(line.get("logger") == "uvicorn.error" for line in lines(log_stream)))
    (error,) = [line for line in lines(log_stream) if line.get("logger") == "uvicorn.error"]
    assert error["level"] == "error" and "RuntimeError: the handler failed" in error["exception"]
    (access,) = access_lines(log_stream)
    assert access["status"] == 500 and access["request_id"] == response.headers["x-request-id"]
    assert metrics.registry.get_sample_value("ledgerbase_http_requests_total", labels) == before + 1


def test_secrets_are_redacted(log_stream: io.StringIO) -> None:
    log = structlog.get_logger("test")
    log.info("login", password="hunter2", headers={"Authorization": "Bearer abc", "accept": "*/*"},
             api_key="k1", note=f"token was {SECRET}", user_count=3)
    logging.getLogger("some.library").warning("refreshing with %s", SECRET, extra={"client_secret": "s3"})
    text = log_stream.getvalue()
    for secret in ("hunter2", "Bearer abc", "k1", SECRET, "s3"):
        assert secret not in text
    login, library = lines(log_stream)
    assert login["password"] == "[redacted]" and login["api_key"] == "[redacted]"
    assert login["headers"] == {"Authorization": "[redacted]", "accept": "*/*"}
    assert login["note"] == "token was [redacted]" and login["user_count"] == 3
    assert library["logger"] == "some.library" and library["level"] == "warning"
    assert library["client_secret"] == "[redacted]"
    assert library["event"] == "refreshing with [redacted]"


def test_redact_processor_leaves_other_values() -> None:
    event = {"event": "x", "count": 2, "ratio": 0.5, "ok": True, "none": None, "items": ("a", "b"),
             "Cookie": "c", "JWT": "j", "refresh_token": "r", "secret_key": "s"}
    assert redact_secrets(None, "info", event) == {
        "event": "x", "count": 2, "ratio": 0.5, "ok": True, "none": None, "items": ["a", "b"],
        "Cookie": "[redacted]", "JWT": "[redacted]", "refresh_token": "[redacted]", "secret_key": "[redacted]"}


def test_log_level_filters(log_stream: io.StringIO) -> None:
    configure_logging("warning", stream=log_stream)
    structlog.get_logger("test").info("hidden")
    structlog.get_logger("test").warning("shown")
    logging.getLogger("uvicorn.error").info("hidden too")
    assert [line["event"] for line in lines(log_stream)] == ["shown"]
    with pytest.raises(ValueError):
        configure_logging("chatty")


# --- metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template(client: httpx.Client, metrics: Metrics,
                                                  log_stream: io.StringIO) -> None:
    def sample(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    ok = {"method": "GET", "route": "/rest/v1/{table}", "status": "200"}
    created = {"method": "POST", "route": "/rest/v1/{table}", "status": "200"}
    missing = {"method": "GET", "route": "other", "status": "404"}
    before = (sample("ledgerbase_http_requests_total", **ok), sample("ledgerbase_http_requests_total", **created),
              sample("ledgerbase_http_requests_total", **missing),
              sample("ledgerbase_http_request_duration_seconds_count", method="GET", route="/rest/v1/{table}"))
    for table in ("orders", "customers", "items"):
        client.get(f"/rest/v1/{table}")
    client.post("/rest/v1/orders", json={})
    client.get("/nowhere/at/all")
    eventually(lambda: len(access_lines(log_stream)) == 5)
    assert sample("ledgerbase_http_requests_total", **ok) == before[0] + 3
    assert sample("ledgerbase_http_requests_total", **created) == before[1] + 1
    assert sample("ledgerbase_http_requests_total", **missing) == before[2] + 1
    assert sample("ledgerbase_http_request_duration_seconds_count",
                  method="GET", route="/rest/v1/{table}") == before[3] + 3
    assert sample("ledgerbase_http_request_duration_seconds_sum", method="GET", route="/rest/v1/{table}") > 0

    exposition = client.get("/metrics")
    assert exposition.status_code == 200
    assert exposition.headers["content-type"].startswith("text/plain")
    body = exposition.text
    assert 'ledgerbase_http_requests_total{method="GET",route="/rest/v1/{table}",status="200"}' in body
    assert 'ledgerbase_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/rest/v1/{table}"}' in body
    assert "/rest/v1/orders" not in body and "customers" not in body


def test_metrics_instances_are_independent() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("GET", "/metrics", 200, 0.01)
    first.observe_request("BREW", "other", 418, 0.01)  # unusual methods share one label value
    gauge = second.gauge("ledgerbase_ledger_size", "Leaves in the ledger.")
    gauge.set(7)
    assert first.registry.get_sample_value(
        "ledgerbase_http_requests_total", {"method": "GET", "route": "/metrics", "status": "200"}) == 1
    assert first.registry.get_sample_value(
        "ledgerbase_http_requests_total", {"method": "OTHER", "route": "other", "status": "418"}) == 1
    assert second.registry.get_sample_value(
        "ledgerbase_http_requests_total", {"method": "GET", "route": "/metrics", "status": "200"}) is None
    assert second.registry.get_sample_value("ledgerbase_ledger_size") == 7
    assert b"ledgerbase_ledger_size 7.0" in metrics_response(second).body


@pytest.mark.parametrize(("path", "route"), [
    ("/rest/v1/orders", "/rest/v1/{table}"),
    ("/rest/v1/order%20items", "/rest/v1/{table}"),
    ("/rest/v1/rpc/fn", "/rest/v1/rpc/{function}"),
    ("/rest/v1/", "/rest/v1/"),
    ("/rest/v1", "/rest/v1/"),
    ("/rest/v1/orders/extra", "other"),
    ("/rest/v1orders", "other"),
    ("/health/live", "/health/live"),
    ("/health/ready", "/health/ready"),
    ("/health/other", "other"),
    ("/metrics", "/metrics"),
    ("/metrics/x", "other"),
    ("/auth/v1/token", "/auth/v1/{path}"),
    ("/auth/v1/admin/users/42", "/auth/v1/{path}"),
    ("/auth/v1", "/auth/v1/{path}"),
    ("/auth/v2/token", "other"),
    ("/ledger/v1/tile/0/x001/234", "/ledger/v1/{path}"),
    ("/realtime/v1/websocket", "/realtime/v1/{path}"),
    ("/admin/", "/admin/{path}"),
    ("/", "other"),
    ("/favicon.ico", "other"),
    ("", "other"),
])
def test_route_template(path: str, route: str) -> None:
    assert route_template(path) == route


def test_operations_guide_matches_the_code(metrics: Metrics) -> None:
    """docs/operations.md lists the route templates and metric names the code uses."""
    guide = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `(/[^`]*)` \| `([^`]+)` \|$", guide, flags=re.MULTILINE)
    assert len(rows) >= 10
    for path, route in rows:
        assert route_template(path) == route, path
    documented = set(re.findall(r"^\| `(ledgerbase_\w+)` \|", guide, flags=re.MULTILINE))
    exposed = {family.name + ("_total" if family.type == "counter" else "")
               for family in metrics.registry.collect()}
    assert documented == exposed


# --- other scopes -------------------------------------------------------------------------


def test_non_http_scopes_pass_through() -> None:
    asyncio.run(_pass_through())


async def _pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])
        await send({"type": "websocket.close", "code": 1000})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    metrics = Metrics()
    middleware = ObservabilityMiddleware(app, metrics)
    await middleware({"type": "websocket", "path": "/realtime/v1/websocket", "headers": []}, receive, send)
    await middleware({"type": "lifespan"}, receive, send)
    assert seen == ["websocket", "lifespan"]
    assert sent == [{"type": "websocket.close", "code": 1000}] * 2
    assert b"ledgerbase_http_requests_total{" not in metrics_response(metrics).body
