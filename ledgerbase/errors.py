"""The one exception hierarchy: every error a client can see, with its HTTP status.

Errors are rendered in exactly one place (``ledgerbase.rest.responses``) in
PostgREST's shape ``{"code", "message", "details", "hint"}``.
"""

from __future__ import annotations

from typing import Any


class LedgerbaseError(Exception):
    """An error with an HTTP status and a PostgREST (PGRSTxxx) or SQLSTATE code."""

    status: int = 400
    code: str = "PGRST100"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        """The PostgREST error body."""
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


class ParseError(LedgerbaseError):
    """The query string or a header could not be parsed (PGRST100)."""

    status = 400
    code = "PGRST100"


class SchemaError(LedgerbaseError):
    """A name is not in the schema cache (PGRST200-series, 42703, 42P01)."""

    status = 400
    code = "PGRST200"


class DataError(LedgerbaseError):
    """A value does not fit its column's type (22P02, 22007, ...)."""

    status = 400
    code = "22P02"


class ConstraintError(LedgerbaseError):
    """A constraint failed (23505, 23503, 23502, 23514, 42P10)."""

    status = 409
    code = "23505"


class AuthError(LedgerbaseError):
    """A missing, malformed or expired token (PGRST301-303), or a forbidden action (42501)."""

    status = 401
    code = "PGRST301"


class UnavailableError(LedgerbaseError):
    """A dependency (the database) is unreachable: 503 with Retry-After."""

    status = 503
    code = "PGRST001"

    def __init__(self, message: str, *, retry_after: int = 5, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))
