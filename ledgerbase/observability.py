"""Logs, metrics and request ids: JSON lines on stderr, Prometheus counters, ``X-Request-Id``.

``configure_logging`` makes structlog and the standard library (uvicorn's
loggers) write one JSON object per line with secrets redacted.
``ObservabilityMiddleware`` wraps the ASGI app: it gives every HTTP request an
id, logs one access line and records request counts and durations in a
``Metrics`` registry that ``metrics_response`` serves at ``/metrics``.
"""

from __future__ import annotations

import bisect
import contextvars
import functools
import itertools
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Metrics", "ObservabilityMiddleware", "configure_logging", "metrics_response",
           "redact_secrets", "route_template"]

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"authorization|api[-_]?key|password|passwd|token|secret|jwt|cookie", re.IGNORECASE)
# A JWT anywhere in a logged string (an exception message, a header echoed in an event).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# Credentials that are not JWTs inside free text: query parameters (a WebSocket URL's
# ``?apikey=``, a refresh token) and bearer credentials in an echoed header.
_SECRET_PARAM = re.compile(
    r"((?:api[-_]?key|(?:access|refresh|id)_token|token|password|secret|jwt)=)[^&\s\"']+",
    re.IGNORECASE)
_BEARER = re.compile(r"((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
# HTTP clients that log every URL (query strings included) at INFO.
_URL_LOGGERS = ("httpx", "httpcore")
_PREFIX_ROUTES = ("auth", "ledger", "realtime", "analytics", "ai")
_EXACT_ROUTES = frozenset({"/health/live", "/health/ready", "/metrics", "/rest/v1/"})
_generation = 0  # bumped by configure_logging, so cached loggers know to rebuild
# Request latencies are mostly sub-millisecond; Prometheus's default buckets start at 5 ms.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# --- logging ------------------------------------------------------------------------------


_SCALARS = (int, float, bool, type(None))
_secret_keys: dict[str, bool] = {}  # key name -> is secret; key names come from code, so few


def _is_secret(key: str) -> bool:
    known = _secret_keys.get(key)
    if known is None:
        known = _SECRET_KEY.search(key) is not None
        if len(_secret_keys) < 4096:
            _secret_keys[key] = known
    return known


def _redact_text(value: str) -> str:
    """``value`` with JWTs, secret query parameters and bearer credentials replaced."""
    if "eyJ" in value:
        value = _JWT.sub(REDACTED, value)
    if "=" in value:
        value = _SECRET_PARAM.sub(rf"\1{REDACTED}", value)
    if "earer" in value or "asic" in value:
        value = _BEARER.sub(rf"\1{REDACTED}", value)
    return value


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {key: REDACTED if isinstance(key, str) and _is_secret(key) else _redact_value(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: values of secret-named keys and JWT-shaped strings become ``[redacted]``.

    Keys match case-insensitively on authorization, apikey/api_key, password,
    passwd, token, secret, jwt and cookie, at any depth of nested dicts. In
    strings, JWTs, the values of query parameters named like secrets
    (``apikey=``, ``access_token=``, ``refresh_token=``, ``password=``, ...)
    and ``Bearer``/``Basic`` credentials are replaced.
    """
    for key, value in event_dict.items():
        if _is_secret(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _redact_text(value)
        elif not isinstance(value, _SCALARS):
            event_dict[key] = _redact_value(value)
    return event_dict


def _drop_formatter_fields(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]
                           ) -> MutableMapping[str, Any]:
    """Remove what other formatters leave on a stdlib record: the formatted message, uvicorn's colours."""
    event_dict.pop("message", None)
    event_dict.pop("color_message", None)
    return event_dict


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's line writer, remembering the name given to ``structlog.get_logger(name)``."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


def _add_logger_name(logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", None)
    if name:
        event_dict["logger"] = name
    return event_dict


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


_REQUEST_ID_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("ledgerbase_request_id",
                                                                              default=None)


def _add_request_id(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Put the current request's id on every line logged while it is handled."""
    request_id = _REQUEST_ID_VAR.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


def configure_logging(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Log one JSON object per line (timestamp, level, event, bound fields) to ``stream`` (stderr).

    Configures structlog and routes the standard library's root logger (and so
    uvicorn's) through the same formatting. uvicorn's own access log is
    disabled: it prints query strings; ``ObservabilityMiddleware`` logs each
    request instead. httpx and httpcore log at WARNING at least, for the same
    reason (their INFO lines carry full URLs). Start uvicorn with ``log_config=None`` so it keeps this
    configuration. Calling it again replaces the previous configuration.

    Raises ValueError for an unknown level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    global _generation
    output = stream if stream is not None else sys.stderr
    shared = _processors()
    structlog.configure(
        processors=[_add_logger_name, *shared, structlog.processors.JSONRenderer(serializer=_dumps)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: _NamedWriteLogger(output, args[0] if args else None),
        context_class=dict,
        cache_logger_on_first_use=False,  # reconfiguration (tests, CLI options) must reach every logger
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(),
                           _drop_formatter_fields, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(serializer=_dumps)],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    handler.set_name("ledgerbase")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "ledgerbase"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
    _generation += 1


# --- metrics ------------------------------------------------------------------------------


_BUCKET_LABELS = tuple(repr(float(bound)) for bound in DURATION_BUCKETS)  # "le" as Prometheus writes it


class _RequestMetrics(Collector):
    """Request counts and durations kept in plain dicts, turned into metric families on scrape.

    prometheus_client's Counter.inc and Histogram.observe take locks and walk the
    buckets on every request: about 4 us of a get-by-id that costs 60 us in all.
    Everything here runs on the event loop thread, so a dict and a bisect do.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], list[Any]] = {}  # [bucket counts..., sum]

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        entry = self.durations.get((method, route))
        if entry is None:
            entry = self.durations[(method, route)] = [0] * (len(DURATION_BUCKETS) + 1) + [0.0]
        entry[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        entry[-1] += seconds

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "ledgerbase_http_requests", "HTTP requests served, by method, route template and status.",
            labels=["method", "route", "status"])
        for (method, route, status), count in self.counts.items():
            requests.add_metric([method, route, str(status)], count)
        durations = HistogramMetricFamily(
            "ledgerbase_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by method and route template.",
            labels=["method", "route"])
        for (method, route), entry in self.durations.items():
            cumulative = list(itertools.accumulate(entry[:-1]))
            buckets = [(label, cumulative[i]) for i, label in enumerate(_BUCKET_LABELS)]
            buckets.append(("+Inf", cumulative[-1]))
            durations.add_metric([method, route], buckets, entry[-1])
        yield requests
        yield durations


class Metrics:
    """The Prometheus metrics of one application, in their own registry.

    ``registry`` is public: other parts of the server register their gauges and
    counters there (``metrics.gauge(...)`` is a shortcut).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._requests = _RequestMetrics()
        self.registry.register(self._requests)

    def gauge(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        """A new gauge registered in this registry. Raises ValueError if the name is taken."""
        return Gauge(name, documentation, labelnames, registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and record its duration. ``method`` outside the usual set counts as OTHER."""
        self._requests.observe(method if method in _METHODS else "OTHER", route, status, seconds)


def metrics_response(metrics: Metrics) -> Response:
    """The Prometheus text exposition of ``metrics``' registry (for ``GET /metrics``)."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@functools.lru_cache(maxsize=4096)
def route_template(path: str) -> str:
    """The low-cardinality route a path belongs to, for metric labels and logs.

    ``/rest/v1/orders`` -> ``/rest/v1/{table}``, ``/rest/v1/rpc/fn`` ->
    ``/rest/v1/rpc/{function}``, ``/auth/v1/token`` -> ``/auth/v1/{path}``
    (also ledger, realtime, analytics, ai), the health, metrics and admin
    endpoints as they are, anything else ``other``.
    """
    if path in _EXACT_ROUTES:
        return path
    if path.startswith("/rest/v1"):
        rest = path[8:]
        if rest == "":
            return "/rest/v1/"
        if rest.startswith("/rpc/") and "/" not in rest[5:]:
            return "/rest/v1/rpc/{function}"
        if "/" not in rest[1:] and rest[0] == "/":
            return "/rest/v1/{table}"
        return "other"
    if path == "/admin" or path.startswith("/admin/"):
        return "/admin/{path}"
    head, _, version = path[1:].partition("/")
    if head in _PREFIX_ROUTES and (version == "v1" or version.startswith("v1/")):
        return f"/{head}/v1/{{path}}"
    return "other"


# --- middleware ---------------------------------------------------------------------------


class ObservabilityMiddleware:
    """Pure ASGI middleware: request id, access log line, request metrics.

    The request id comes from the ``X-Request-Id`` header when it is 1-64
    characters of ``[A-Za-z0-9._-]``, else it is a new 32-hex-digit id; it is echoed
    in the response's ``X-Request-Id``, bound in structlog's context variables
    for the request, and set as ``scope["state"]["request_id"]``. The access
    line (``event="request"``) carries method, path without query string,
    route, status, duration_ms and request_id. Lifespan and WebSocket scopes
    pass through untouched. An exception from the app is counted and logged
    as a 500, then re-raised for the server to answer.

    Cost, measured by driving it directly with a no-op app (CPython 3.11, one
    core): about 15-18 us per request with the access line, 6-9 us without it
    (``access_log=False`` or a level above info); the JSON line (timestamp,
    redaction, orjson, one write) is most of it.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, *, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        # A concrete logger, rebuilt after configure_logging: a lazy proxy re-binds on every call (~5 us).
        self._log: Any = None
        self._log_generation = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        header = (b"x-request-id", request_id.encode("ascii"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        # one ContextVar rather than structlog's bind_contextvars: a third of this middleware's cost
        token = _REQUEST_ID_VAR.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method: str = scope["method"]
            path: str = scope["path"]
            route = route_template(path)
            self.metrics.observe_request(method, route, status, elapsed)
            if self.access_log:
                if self._log_generation != _generation:
                    self._log = structlog.get_logger("ledgerbase.access").bind()
                    self._log_generation = _generation
                self._log.info("request", method=method, path=path, route=route, status=status,
                               duration_ms=round(elapsed * 1000, 3))
            _REQUEST_ID_VAR.reset(token)


# uuid4() per request read os.urandom every time: profiled at a fifth of a get-by-id
# request's CPU. A random per-process prefix and a counter are as unique and cost nothing.
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count(1)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id" or (len(name) == 12 and name.lower() == b"x-request-id"):
            if _REQUEST_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
