"""Access tokens (HS256 JWTs) and sessions with rotating refresh tokens.

A sign-in starts a session holding one refresh token. Each refresh revokes the
token it was given and issues a child (``parent`` = the old token's hash), as
GoTrue does. A revoked token used again within ``reuse_interval`` seconds of its
rotation (two tabs refreshing at once) gets a fresh child too; later, the reuse
means the token leaked, so the whole session is revoked and the caller gets
``refresh_token_already_used``. Refresh tokens are random strings stored only as
their SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from ledgerbase.auth.errors import AuthApiError, bad_jwt
from ledgerbase.auth.store import AuthStore, UserRecord, utc_now
from ledgerbase.auth.users import user_json
from ledgerbase.db.engine import Transaction


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token and the hash kept of it."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    """SHA-256 (hex) of a refresh token: what the database holds instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def refresh_token_not_found() -> AuthApiError:
    return AuthApiError(400, "refresh_token_not_found", "Invalid Refresh Token: Refresh Token Not Found")


def refresh_token_already_used() -> AuthApiError:
    return AuthApiError(400, "refresh_token_already_used", "Invalid Refresh Token: Already Used")


class AccessTokens:
    """Mints and checks the access tokens of signed-in users."""

    def __init__(self, secret: str, lifetime: int) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def mint(self, user: UserRecord, session_id: str, signed_in_at: datetime, issuer: str,
             now: datetime) -> tuple[str, int]:
        """The access token and its expiry (epoch seconds)."""
        issued = int(now.timestamp())
        expires = issued + self.lifetime
        claims: dict[str, Any] = {
            "iss": issuer, "sub": user.id, "aud": user.aud, "exp": expires, "iat": issued,
            "email": user.email or "", "phone": user.phone or "",
            "app_metadata": user.app_metadata, "user_metadata": user.user_metadata,
            "role": user.role, "aal": "aal1",
            "amr": [{"method": "password", "timestamp": int(signed_in_at.timestamp())}],
            "session_id": session_id, "is_anonymous": user.is_anonymous,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a bearer token signed with the secret; raises bad_jwt (403)."""
        try:
            claims: dict[str, Any] = jwt.decode(token, self._secret, algorithms=["HS256"],
                                                options={"verify_aud": False, "require": ["exp"]})
        except jwt.ExpiredSignatureError:
            raise bad_jwt("token has invalid claims: token is expired") from None
        except jwt.InvalidTokenError:
            raise bad_jwt("token is malformed or its signature is invalid") from None
        return claims


@dataclass(frozen=True, slots=True)
class Rotation:
    """The outcome of a refresh: a new token for the session, or a detected reuse."""

    user_id: str
    session_id: str
    signed_in_at: datetime  # when the session started (the access token's amr)
    token: str | None  # None: reuse after the grace period, the session is now revoked


class Sessions:
    """Starting sessions and rotating their refresh tokens."""

    def __init__(self, store: AuthStore, access: AccessTokens, reuse_interval: float) -> None:
        self._store = store
        self._access = access
        self._reuse = timedelta(seconds=reuse_interval)

    async def start(self, tx: Transaction, user: UserRecord, now: datetime, ip: str,
                    user_agent: str | None) -> tuple[str, str]:
        """Create a session and its first refresh token (inside ``tx``): (session id, token)."""
        session_id = str(uuid.uuid4())
        token, hashed = new_refresh_token()
        await self._store.insert_session(tx, session_id, user.id, now, ip, user_agent)
        await self._store.insert_refresh_token(tx, hashed, user.id, session_id, None, now)
        return session_id, token

    def session_json(self, user: UserRecord, session_id: str, refresh_token: str, signed_in_at: datetime,
                     issuer: str) -> dict[str, Any]:
        """The Session body GoTrue answers sign-up, sign-in and refresh with."""
        now = utc_now()
        access, expires = self._access.mint(user, session_id, signed_in_at, issuer, now)
        return {"access_token": access, "token_type": "bearer", "expires_in": self._access.lifetime,
                "expires_at": expires, "refresh_token": refresh_token, "user": user_json(user)}

    async def rotate(self, tx: Transaction, hashed: str, ip: str) -> Rotation:
        """Exchange the refresh token with hash ``hashed`` (inside ``tx``).

        Raises refresh_token_not_found; a reuse after the grace period returns a
        Rotation without token (the caller commits the revocation, then refuses).
        """
        now = utc_now()
        claimed = await self._store.claim_refresh_token(tx, hashed, now)
        current = claimed or await self._store.token_in(tx, hashed)
        if current is None or not hmac.compare_digest(current.token_hash, hashed):
            raise refresh_token_not_found()
        session = await self._store.session_in(tx, current.session_id)
        if session is None:
            raise refresh_token_not_found()
        alive = session.active(now)
        if claimed is None:  # rotated out before
            if not alive or now - current.updated_at >= self._reuse:
                if alive:
                    await self._store.revoke_session(tx, session.id, now)
                    await self._store.audit(tx, "token_revoked", actor_id=current.user_id, actor_username=None,
                                            ip=ip, now=now, log_type="token",
                                            traits={"reason": "refresh_token_reused", "session_id": session.id})
                return Rotation(user_id=current.user_id, session_id=session.id,
                                signed_in_at=session.created_at, token=None)
        elif not alive:
            raise refresh_token_not_found()
        token, child_hash = new_refresh_token()
        await self._store.insert_refresh_token(tx, child_hash, current.user_id, session.id, hashed, now)
        await self._store.touch_session(tx, session.id, now)
        await self._store.audit(tx, "token_refreshed", actor_id=current.user_id, actor_username=None, ip=ip,
                                now=now, log_type="token",
                                traits={"session_id": session.id, "within_reuse_interval": claimed is None})
        return Rotation(user_id=current.user_id, session_id=session.id, signed_in_at=session.created_at,
                        token=token)
