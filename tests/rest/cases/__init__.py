"""HTTP cases ported from PostgREST 12's test suite (test/spec/Feature/Query/*Spec.hs).

Each module holds the cases of one upstream spec file as ``CASES``. A case is
one request and the answer PostgREST 12 gives for it on the fixture in
``tests/fixtures/rest`` (a cut-down copy of upstream's fixture). Expected
answers are copied from the upstream specs; where our fixture differs from
upstream's, the case says so in ``note``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final


class _Sentinel:
    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


ANY: Final = _Sentinel("ANY")
"""Expected body not checked."""

ABSENT: Final = _Sentinel("ABSENT")
"""Expected response header value: the header must not be present."""

NO_BODY: Final = _Sentinel("NO_BODY")
"""Request without a body."""

BOTH: Final = ("sqlite", "postgres")
POSTGRES: Final = ("postgres",)
SQLITE: Final = ("sqlite",)

CT_JSON: Final = "application/json; charset=utf-8"
CT_SINGULAR: Final = "application/vnd.pgrst.object+json; charset=utf-8"
CT_CSV: Final = "text/csv; charset=utf-8"
SINGULAR: Final = "application/vnd.pgrst.object+json"


@dataclass(frozen=True, slots=True)
class Case:
    """One request and the answer PostgREST 12 gives to it."""

    name: str
    method: str
    path: str
    status: int
    json: Any = ANY
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = NO_BODY
    role: str = "service_role"
    json_contains: Mapping[str, Any] | None = None
    response_headers: Mapping[str, str | _Sentinel] = field(default_factory=dict)
    text: str | None = None
    dialects: tuple[str, ...] = BOTH
    unordered: bool = False
    # PostgREST's suite rolls back every write; the runner adds Prefer: tx=rollback.
    rollback: bool = True
    # On a dialect outside ``dialects``, expect a 4xx answer instead (never a 5xx).
    elsewhere_4xx: bool = False
    note: str = ""


def case(method: str, name: str, path: str, status: int = 200, json: Any = ANY,
         **kwargs: Any) -> Case:
    """Build a case; keyword arguments are the remaining ``Case`` fields."""
    return Case(name=name, method=method, path=path, status=status, json=json, **kwargs)


def get(name: str, path: str, status: int = 200, json: Any = ANY, **kwargs: Any) -> Case:
    return case("GET", name, path, status, json, **kwargs)


def head(name: str, path: str, status: int = 200, **kwargs: Any) -> Case:
    return case("HEAD", name, path, status, ANY, **kwargs)


def post(name: str, path: str, body: Any, status: int = 201, json: Any = ANY,
         **kwargs: Any) -> Case:
    return case("POST", name, path, status, json, body=body, **kwargs)


def patch(name: str, path: str, body: Any, status: int = 200, json: Any = ANY,
          **kwargs: Any) -> Case:
    return case("PATCH", name, path, status, json, body=body, **kwargs)


def put(name: str, path: str, body: Any, status: int = 200, json: Any = ANY,
        **kwargs: Any) -> Case:
    return case("PUT", name, path, status, json, body=body, **kwargs)


def delete_(name: str, path: str, status: int = 204, json: Any = ANY, **kwargs: Any) -> Case:
    return case("DELETE", name, path, status, json, **kwargs)


def error(code: str, message: str, details: Any = None, hint: Any = None) -> dict[str, Any]:
    """A PostgREST error body."""
    return {"code": code, "details": details, "hint": hint, "message": message}


def db_error(method: str, name: str, path: str, status: int, expected: dict[str, Any],
             **kwargs: Any) -> list[Case]:
    """A database error: PostgreSQL's exact text on PostgreSQL, its SQLSTATE on SQLite.

    The message, details and hint of such errors are written by PostgreSQL itself;
    on SQLite the server can only promise the same status and code.
    """
    return [
        case(method, name, path, status, expected, dialects=POSTGRES, **kwargs),
        case(method, name + " (sqlite: same status and code)", path, status, ANY,
             json_contains={"code": expected["code"]}, dialects=SQLITE, **kwargs),
    ]


def all_cases() -> list[Case]:
    """Every case of every module, in a stable order."""
    import importlib

    names = ["query", "and_or", "range", "singular", "insert", "update", "delete", "upsert",
             "embed_disambiguation", "json_operator", "errors", "postgres_only"]
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return [replace(c, name=f"{module.__name__.rsplit('.', 1)[-1]}: {c.name}")
            for module in modules for c in module.CASES]
