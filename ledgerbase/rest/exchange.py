"""What passes between the HTTP layer and the data API: the incoming request, the reply."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledgerbase.auth.keys import Claims


@dataclass(slots=True)
class Reply:
    """What the pipeline answers: status, headers and body bytes."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Incoming:
    """The parts of an HTTP request the data API reads."""

    method: str
    path: str  # below /rest/v1
    query_string: str
    headers: dict[str, str]  # lower-case names; repeated Prefer headers joined by ","
    body: bytes
    claims: Claims
