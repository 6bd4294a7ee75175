"""Supabase Auth (GoTrue) errors: one exception type and its two wire shapes.

A request carrying ``X-Supabase-Api-Version: 2024-01-01`` (or a later date) gets
that header back and ``{"code": "<error_code>", "message": ...}``; any other
request gets GoTrue's older ``{"code": <status>, "error_code": ..., "msg": ...}``.
supabase-py reads the error code from ``code`` only when the response carries the
version header, so both halves must agree.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ledgerbase.errors import LedgerbaseError

API_VERSION_HEADER = "x-supabase-api-version"
API_VERSION_2024_01_01 = "2024-01-01"
_API_VERSION = re.compile(r"2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")


class AuthApiError(LedgerbaseError):
    """An error of ``/auth/v1``: HTTP status, GoTrue error code, message."""

    def __init__(self, status: int, error_code: str, message: str, *,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=error_code, status=status, headers=headers)
        self.error_code = error_code
        self.extra = extra or {}


def api_version(requested: str | None) -> str | None:
    """The API version to answer with: ``2024-01-01`` for that date or later, else None."""
    if requested is None or _API_VERSION.fullmatch(requested.strip()) is None:
        return None
    return API_VERSION_2024_01_01 if requested.strip() >= API_VERSION_2024_01_01 else None


def error_body(error: AuthApiError, version: str | None) -> bytes:
    """The JSON body of ``error`` in the shape ``version`` (from ``api_version``) asks for."""
    if version is not None:
        body: dict[str, Any] = {"code": error.error_code, "message": error.message}
    else:
        body = {"code": error.status, "error_code": error.error_code, "msg": error.message}
    body.update(error.extra)
    return orjson.dumps(body)


# --- the errors GoTrue answers with (status, code and message as GoTrue words them) ---

def invalid_credentials() -> AuthApiError:
    """Wrong password and unknown email alike (no user enumeration)."""
    return AuthApiError(400, "invalid_credentials", "Invalid login credentials")


def validation_failed(message: str, status: int = 400) -> AuthApiError:
    """A missing or malformed field of the request."""
    return AuthApiError(status, "validation_failed", message)


def weak_password(message: str, reasons: list[str]) -> AuthApiError:
    """A password refused by the policy; ``reasons`` among length, characters, pwned."""
    return AuthApiError(422, "weak_password", message, extra={"weak_password": {"reasons": reasons}})


def user_already_exists() -> AuthApiError:
    """Sign-up with an email already registered."""
    return AuthApiError(422, "user_already_exists", "User already registered")


def email_exists() -> AuthApiError:
    """An email change (or admin creation) to an address another user has."""
    return AuthApiError(422, "email_exists", "A user with this email address has already been registered")


def no_authorization() -> AuthApiError:
    """An endpoint that needs a user was called without a bearer token."""
    return AuthApiError(401, "no_authorization", "This endpoint requires a Bearer token")


def bad_jwt(detail: str) -> AuthApiError:
    """A bearer token that does not verify (bad signature, expired, missing claims)."""
    return AuthApiError(403, "bad_jwt", f"invalid JWT: unable to parse or verify signature, {detail}")


def not_admin() -> AuthApiError:
    """An admin endpoint called without the service_role key."""
    return AuthApiError(403, "not_admin", "User not allowed")


def user_not_found(status: int = 404, message: str = "User not found") -> AuthApiError:
    """No such user (404 on admin endpoints, 403 for a token whose user is gone)."""
    return AuthApiError(status, "user_not_found", message)


def rate_limited(retry_after: int) -> AuthApiError:
    """Too many requests from one address or for one account."""
    return AuthApiError(429, "over_request_rate_limit", "Request rate limit reached",
                        headers={"Retry-After": str(retry_after)})


def not_found() -> AuthApiError:
    """An unknown path under /auth/v1."""
    return AuthApiError(404, "not_found", "Not found")
