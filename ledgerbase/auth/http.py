"""The request and reply values of /auth/v1, read from and written to ASGI.

Handlers take an ``AuthRequest`` (method, path below /auth/v1, query, headers,
body, client address, API version) and return an ``AuthReply``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ledgerbase.auth.errors import API_VERSION_HEADER, AuthApiError, api_version, validation_failed
from ledgerbase.errors import LedgerbaseError
from ledgerbase.security import read_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = b"application/json; charset=utf-8"
# tokens and profiles must not be cached; CORS and the other security headers are
# ledgerbase.security's (it wraps every route)
_NO_STORE = (b"cache-control", b"no-store")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One request to /auth/v1."""

    method: str
    path: str  # below /auth/v1, e.g. "/token"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    ip: str
    version: str | None  # "2024-01-01" when the client speaks the versioned error shape
    base_url: str  # scheme://host of the request, for the token issuer

    def json(self) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); raises validation_failed (400)."""
        if not self.body.strip():
            return {}
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise validation_failed("Could not parse request body as JSON") from None
        if not isinstance(parsed, dict):
            raise validation_failed("Request body must be a JSON object")
        return parsed

    def bearer(self) -> str | None:
        """The token of ``Authorization: Bearer <token>``, if any."""
        scheme, _, credentials = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None


@dataclass(frozen=True, slots=True)
class AuthReply:
    """A JSON reply (``body`` None: no content)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


async def read_request(scope: Scope, receive: Receive, *, max_body: int, trust_proxy: bool) -> AuthRequest:
    """The AuthRequest of an ASGI HTTP scope; raises AuthApiError 413 on a too large body."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        headers[raw_name.decode("latin-1").lower()] = raw_value.decode("latin-1")
    try:
        body = await read_body(receive, max_body)
    except LedgerbaseError:
        raise AuthApiError(413, "request_too_large", f"The request body is larger than {max_body} bytes") from None
    client = scope.get("client")
    ip = str(client[0]) if client else ""
    scheme = str(scope.get("scheme") or "http")
    host = headers.get("host", "localhost")
    if trust_proxy:
        forwarded = headers.get("x-forwarded-for", "").split(",")[0].strip()
        ip = forwarded or ip
        scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
        host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    return AuthRequest(method=scope["method"], path=scope["path"][len("/auth/v1"):] or "/", query=query,
                       headers=headers, body=body, ip=ip,
                       version=api_version(headers.get(API_VERSION_HEADER)), base_url=f"{scheme}://{host}")


async def send_reply(send: Send, reply: AuthReply, *, version: str | None) -> None:
    """Write ``reply`` (JSON), with the API version header when the request sent one."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
    headers.append(_NO_STORE)
    if version is not None:
        headers.append((API_VERSION_HEADER.encode(), version.encode()))
    if reply.body is None:
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
    headers.append((b"content-type", _JSON))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

