"""HS256 JWTs as Supabase and PostgREST use them: secret, API keys, verification.

Verification results are cached by token string (bounded), since clients send
the same key on every request; expiry is still checked on every use.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from ledgerbase.db.context import RequestContext
from ledgerbase.errors import AuthError
from ledgerbase.security import load_or_create_secret_file

ROLES = frozenset({"anon", "authenticated", "service_role"})
API_KEY_LIFETIME = 10 * 365 * 24 * 3600  # Supabase's API keys are valid for ten years
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified claims of a request's token."""

    role: str
    subject: str | None
    expires_at: float | None
    raw: dict[str, Any]
    context: RequestContext


def load_or_create_secret(data_dir: Path, configured: str = "") -> str:
    """The JWT secret: ``configured`` if given, else kept in ``data_dir/jwt-secret`` (mode 0600).

    Created on first start (atomically: concurrent workers end up with the same
    secret). Raises ValueError when the file exists but is empty.
    """
    if configured:
        return configured
    path = data_dir / "jwt-secret"
    secret = load_or_create_secret_file(
        path, lambda: (secrets.token_urlsafe(48) + "\n").encode()).decode().strip()
    if not secret:
        raise ValueError(f"{path} is empty: delete it to have a new secret generated, "
                         "or set LEDGERBASE_JWT_SECRET")
    return secret


def make_api_key(secret: str, role: str, *, lifetime: int = API_KEY_LIFETIME) -> str:
    """A long-lived API key (JWT) for ``role``, like Supabase's anon and service_role keys."""
    now = int(time.time())
    return jwt.encode({"iss": "ledgerbase", "role": role, "iat": now, "exp": now + lifetime},
                      secret, algorithm="HS256")


def _unauthorized(message: str, code: str = "PGRST301") -> AuthError:
    return AuthError(message, code=code, status=401, headers={
        "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"',
    })


class TokenVerifier:
    """Verifies request tokens against one secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._cache: dict[str, Claims] = {}

    def verify(self, token: str | None) -> Claims:
        """The claims of ``token``; raises AuthError (401, PGRST301/302/303) when unusable."""
        if not token:
            raise AuthError("No API key found in request", code="PGRST302", status=401,
                            hint="Send the anon or service_role key in the apikey header "
                                 "or as Authorization: Bearer <key>.",
                            headers={"WWW-Authenticate": "Bearer"})
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = claims
        if claims.expires_at is not None and claims.expires_at <= time.time():
            self._cache.pop(token, None)
            raise _unauthorized("JWT expired", "PGRST303")
        return claims

    def _decode(self, token: str) -> Claims:
        if token.count(".") != 2:
            raise _unauthorized(f"Expected 3 parts in JWT; got {token.count('.') + 1}")
        try:
            payload = jwt.decode(token, self._secret, algorithms=["HS256"],
                                 options={"verify_aud": False, "verify_exp": False,
                                          "require": []})
        except jwt.InvalidSignatureError:
            raise _unauthorized("JWSError JWSInvalidSignature") from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("JWT not yet valid", "PGRST303") from None
        except jwt.InvalidTokenError:
            raise _unauthorized("JWSError JWSInvalidToken") from None
        expires = payload.get("exp")
        if expires is not None and (not isinstance(expires, (int, float)) or isinstance(expires, bool)
                                    or not math.isfinite(expires)):
            raise _unauthorized("JWT claims validation or parsing error", "PGRST303")
        role = payload.get("role", "anon")
        if not isinstance(role, str) or role not in ROLES:
            # the role is not echoed in the header: it is the client's text
            raise AuthError(f'role "{role}" does not exist', code="22023", status=401, headers={
                "WWW-Authenticate": 'Bearer error="invalid_token", error_description="role does not exist"'})
        subject = str(payload["sub"]) if payload.get("sub") is not None else None
        email = payload.get("email")
        context = RequestContext(role=role, claims_json=orjson.dumps(payload).decode(), uid=subject,
                                 email=email if isinstance(email, str) else None)
        return Claims(role=role, subject=subject,
                      expires_at=float(expires) if expires is not None else None, raw=payload,
                      context=context)

    @property
    def secret(self) -> str:
        """The HS256 secret (for signing tokens; never log it)."""
        return self._secret
