"""What the auth endpoints do to accounts: sign up, sign in, update, sign out, administer.

Each operation checks its input, hashes any password first (in a thread: a
SQLite write transaction must await only its statements), then makes its
changes and their audit log entries in one write transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ledgerbase.auth.errors import (
    AuthApiError,
    email_exists,
    invalid_credentials,
    user_already_exists,
    user_not_found,
    validation_failed,
    weak_password,
)
from ledgerbase.auth.keys import ROLES
from ledgerbase.auth.passwords import MAX_PASSWORD_LENGTH, PasswordHasher, PasswordPolicy
from ledgerbase.auth.store import AuthStore, UserRecord, utc_now
from ledgerbase.auth.tokens import Sessions
from ledgerbase.auth.users import EMAIL_APP_METADATA, merge_metadata, metadata, normalize_email, parse_uuid
from ledgerbase.db.engine import Transaction
from ledgerbase.errors import LedgerbaseError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_FOREVER = datetime(9999, 12, 31, tzinfo=utc_now().tzinfo)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A user with a new session (sign-up or sign-in)."""

    user: UserRecord
    session_id: str
    refresh_token: str
    signed_in_at: datetime


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling, for the session and the audit log."""

    ip: str
    user_agent: str | None = None


def _duplicate(error: LedgerbaseError) -> bool:
    return error.code == "23505"


T = TypeVar("T")


def _password(value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise validation_failed("Signup requires a valid password", status=422)
        return None
    if not isinstance(value, str):
        raise validation_failed("password must be a string")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise validation_failed(f"Password cannot be longer than {MAX_PASSWORD_LENGTH} characters", 422)
    return value


def ban_until(value: Any, now: datetime) -> tuple[bool, datetime | None]:
    """GoTrue's ``ban_duration`` ("none", or a Go duration such as "24h" or "1h30m"):
    (given, banned until)."""
    if value is None:
        return False, None
    if value == "none":
        return True, None
    text = str(value)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise validation_failed("invalid format for ban duration")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    try:
        return True, now + timedelta(seconds=seconds)
    except OverflowError:
        return True, _FOREVER


class Accounts:
    """Account operations over the auth store."""

    def __init__(self, store: AuthStore, hasher: PasswordHasher, policy: PasswordPolicy, sessions: Sessions,
                 *, disable_signup: bool = False) -> None:
        self.store = store
        self.hasher = hasher
        self.policy = policy
        self.sessions = sessions
        self.disable_signup = disable_signup

    async def _write_user(self, work: Callable[[Transaction], Awaitable[T]],
                          taken: Callable[[], AuthApiError]) -> T:
        """Run ``work`` in a write transaction; an email already in use raises ``taken()``."""
        try:
            return await self.store.database.write(work)
        except LedgerbaseError as error:
            if _duplicate(error):
                raise taken() from None
            raise

    def check_strength(self, password: str) -> None:
        """Raises weak_password (422, with reasons) when the policy refuses ``password``."""
        problem = self.policy.problems(password)
        if problem is not None:
            raise weak_password(*problem)

    async def sign_up(self, body: dict[str, Any], client: Client) -> SignedIn:
        """Create a confirmed user and sign them in (there is no email confirmation)."""
        if self.disable_signup:
            raise AuthApiError(422, "signup_disabled", "Signups not allowed for this instance")
        if body.get("phone") and not body.get("email"):
            raise AuthApiError(422, "phone_provider_disabled", "Phone signups are disabled")
        email = normalize_email(body.get("email"))
        password = _password(body.get("password"), required=True) or ""
        user_metadata = metadata(body.get("data"), "data")
        self.check_strength(password)
        if await self.store.user_by_email(email) is not None:
            raise user_already_exists()
        hashed = await self.hasher.hash(password)
        now = utc_now()
        user = UserRecord(id=str(uuid.uuid4()), aud="authenticated", role="authenticated", email=email,
                          encrypted_password=hashed, email_confirmed_at=now, last_sign_in_at=now,
                          app_metadata=dict(EMAIL_APP_METADATA), user_metadata=user_metadata, phone=None,
                          is_anonymous=False, banned_until=None, created_at=now, updated_at=now)

        async def work(tx: Transaction) -> tuple[str, str]:
            await self.store.insert_user(tx, user)
            session_id, token = await self.sessions.start(tx, user, now, client.ip, client.user_agent)
            await self.store.audit(tx, "user_signedup", actor_id=user.id, actor_username=email, ip=client.ip,
                                   now=now, log_type="team", traits={"provider": "email"})
            await self.store.audit(tx, "login", actor_id=user.id, actor_username=email, ip=client.ip, now=now,
                                   traits={"provider": "email", "session_id": session_id})
            return session_id, token

        session_id, token = await self._write_user(work, user_already_exists)
        return SignedIn(user=user, session_id=session_id, refresh_token=token, signed_in_at=now)

    async def sign_in(self, body: dict[str, Any], client: Client) -> SignedIn:
        """Check email and password; raises invalid_credentials alike for a wrong password and an
        unknown email (both cost one argon2 verification)."""
        if body.get("phone") and not body.get("email"):
            raise AuthApiError(400, "phone_provider_disabled", "Phone logins are disabled")
        email = normalize_email(body.get("email"))
        password = body.get("password")
        if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD_LENGTH:
            raise invalid_credentials()
        user = await self.store.user_by_email(email)
        verified = await self.hasher.verify(user.encrypted_password if user else None, password)
        now = utc_now()
        if user is None or not verified.ok:
            async def failed(tx: Transaction) -> None:
                await self.store.audit(tx, "login_failed", actor_id=user.id if user else None,
                                       actor_username=email, ip=client.ip, now=now,
                                       traits={"provider": "email"})
            await self.store.database.write(failed)
            raise invalid_credentials()
        if user.email_confirmed_at is None:
            raise AuthApiError(400, "email_not_confirmed", "Email not confirmed")
        if user.banned_until is not None and user.banned_until > now:
            raise AuthApiError(400, "user_banned", "User is banned")
        rehashed = await self.hasher.hash(password) if verified.rehash else None

        async def work(tx: Transaction) -> tuple[UserRecord | None, str, str]:
            changes: dict[str, Any] = {"last_sign_in_at": now}
            if rehashed is not None:
                changes["encrypted_password"] = rehashed
            updated = await self.store.update_user(tx, user.id, changes, now)
            if updated is None:
                return None, "", ""
            session_id, token = await self.sessions.start(tx, updated, now, client.ip, client.user_agent)
            await self.store.audit(tx, "login", actor_id=user.id, actor_username=email, ip=client.ip, now=now,
                                   traits={"provider": "email", "session_id": session_id})
            return updated, session_id, token

        updated, session_id, token = await self.store.database.write(work)
        if updated is None:  # deleted meanwhile
            raise invalid_credentials()
        return SignedIn(user=updated, session_id=session_id, refresh_token=token, signed_in_at=now)

    async def update_self(self, user: UserRecord, session_id: str | None, body: dict[str, Any],
                          client: Client) -> UserRecord:
        """PUT /user: email, password and ``data`` (merged into user_metadata)."""
        password = _password(body.get("password"), required=False)
        hashed: str | None = None
        if password is not None:
            self.check_strength(password)
            if user.encrypted_password and (await self.hasher.verify(user.encrypted_password, password)).ok:
                raise AuthApiError(422, "same_password", "New password should be different from the old password.")
            hashed = await self.hasher.hash(password)
        email = normalize_email(body["email"]) if body.get("email") else None
        data = metadata(body.get("data"), "data") if "data" in body else None
        if body.get("phone"):
            raise AuthApiError(422, "phone_provider_disabled", "Phone sign-ins are disabled")
        now = utc_now()

        async def work(tx: Transaction) -> UserRecord | None:
            current = await self.store.lock_user(tx, user.id)
            if current is None:
                return None
            changes: dict[str, Any] = {}
            if data is not None:
                changes["raw_user_meta_data"] = merge_metadata(current.user_metadata, data)
            if email is not None and email != current.email:
                changes["email"] = email
                changes["email_confirmed_at"] = now  # no confirmation mail: the change applies at once
            if hashed is not None:
                changes["encrypted_password"] = hashed
            updated = await self.store.update_user(tx, user.id, changes, now)
            if hashed is not None:
                # as GoTrue: a new password ends every other session of the user
                if session_id is not None:
                    await self.store.delete_sessions(tx, user.id, keep=session_id)
                else:
                    await self.store.delete_sessions(tx, user.id)
                await self.store.audit(tx, "user_updated_password", actor_id=user.id,
                                       actor_username=current.email, ip=client.ip, now=now, log_type="user")
            if changes.keys() - {"encrypted_password"}:
                await self.store.audit(tx, "user_modified", actor_id=user.id, actor_username=current.email,
                                       ip=client.ip, now=now, log_type="user",
                                       traits={"fields": sorted(changes.keys() - {"encrypted_password"})})
            return updated

        updated = await self._write_user(work, email_exists)
        if updated is None:
            raise user_not_found(403, "User from sub claim in JWT does not exist")
        return updated

    async def sign_out(self, user: UserRecord, session_id: str | None, scope: str, client: Client) -> None:
        """End sessions: ``global`` all of the user's, ``local`` this one, ``others`` all but this."""
        if scope not in ("global", "local", "others"):
            raise validation_failed("Unsupported logout scope")
        now = utc_now()

        async def work(tx: Transaction) -> None:
            if scope == "local" and session_id is not None:
                ended = await self.store.delete_sessions(tx, user.id, only=session_id)
            elif scope == "others" and session_id is not None:
                ended = await self.store.delete_sessions(tx, user.id, keep=session_id)
            elif scope == "others":
                ended = []
            else:
                ended = await self.store.delete_sessions(tx, user.id)
            await self.store.audit(tx, "logout", actor_id=user.id, actor_username=user.email, ip=client.ip,
                                   now=now, traits={"scope": scope, "sessions": len(ended)})

        await self.store.database.write(work)

    # --- administration ---------------------------------------------------------------------

    async def admin_create(self, body: dict[str, Any], client: Client) -> UserRecord:
        """POST /admin/users: a user with optional password, metadata, role, ban, id."""
        email = normalize_email(body.get("email"))
        password = _password(body.get("password"), required=False)
        given_hash = body.get("password_hash")
        if password is not None:
            self.check_strength(password)
            hashed: str | None = await self.hasher.hash(password)
        elif given_hash is not None:
            if not isinstance(given_hash, str) or not given_hash.startswith("$argon2"):
                raise validation_failed("password_hash must be an argon2 hash", 422)
            hashed = given_hash
        else:
            hashed = None
        user_id = str(uuid.uuid4())
        if body.get("id") is not None:
            parsed = parse_uuid(str(body["id"]))
            if parsed is None:
                raise validation_failed("id must be a uuid")
            user_id = parsed
        role = self._role(body.get("role"))
        now = utc_now()
        _, banned = ban_until(body.get("ban_duration"), now)
        app_metadata = merge_metadata(EMAIL_APP_METADATA, metadata(body.get("app_metadata"), "app_metadata"))
        user_metadata = metadata(body.get("user_metadata", body.get("data")), "user_metadata")
        user = UserRecord(id=user_id, aud="authenticated", role=role, email=email, encrypted_password=hashed,
                          email_confirmed_at=now if body.get("email_confirm") is True else None,
                          last_sign_in_at=None, app_metadata=app_metadata, user_metadata=user_metadata,
                          phone=None, is_anonymous=False, banned_until=banned, created_at=now, updated_at=now)

        async def work(tx: Transaction) -> None:
            await self.store.insert_user(tx, user)
            await self.store.audit(tx, "user_signedup", actor_id=None, actor_username="service_role",
                                   ip=client.ip, now=now, log_type="team",
                                   traits={"user_id": user.id, "user_email": email, "provider": "email",
                                           "by": "admin"})

        await self._write_user(work, email_exists)
        return user

    async def admin_update(self, user_id: str, body: dict[str, Any], client: Client) -> UserRecord:
        """PUT /admin/users/{id}: email, password, metadata (merged), role, ban, email_confirm."""
        password = _password(body.get("password"), required=False)
        hashed: str | None = None
        if password is not None:
            self.check_strength(password)
            hashed = await self.hasher.hash(password)
        email = normalize_email(body["email"]) if body.get("email") else None
        role = self._role(body["role"]) if body.get("role") is not None else None
        user_changes = metadata(body.get("user_metadata", body.get("data")), "user_metadata")
        app_changes = metadata(body.get("app_metadata"), "app_metadata")
        now = utc_now()
        ban_given, banned = ban_until(body.get("ban_duration"), now)

        async def work(tx: Transaction) -> UserRecord | None:
            current = await self.store.lock_user(tx, user_id)
            if current is None:
                return None
            changes: dict[str, Any] = {}
            if user_changes:
                changes["raw_user_meta_data"] = merge_metadata(current.user_metadata, user_changes)
            if app_changes:
                changes["raw_app_meta_data"] = merge_metadata(current.app_metadata, app_changes)
            if email is not None and email != current.email:
                changes["email"] = email
            if body.get("email_confirm") is True and current.email_confirmed_at is None:
                changes["email_confirmed_at"] = now
            if role is not None:
                changes["role"] = role
            if ban_given:
                changes["banned_until"] = banned
            if hashed is not None:
                changes["encrypted_password"] = hashed
            updated = await self.store.update_user(tx, user_id, changes, now)
            if hashed is not None or (banned is not None and banned > now):
                await self.store.delete_sessions(tx, user_id)
            await self.store.audit(tx, "user_modified", actor_id=None, actor_username="service_role",
                                   ip=client.ip, now=now, log_type="user",
                                   traits={"user_id": user_id, "fields": sorted(changes)})
            return updated

        updated = await self._write_user(work, email_exists)
        if updated is None:
            raise user_not_found()
        return updated

    async def admin_delete(self, user_id: str, client: Client) -> None:
        """DELETE /admin/users/{id}: the user, their sessions and refresh tokens."""
        now = utc_now()

        async def work(tx: Transaction) -> bool:
            deleted = await self.store.delete_user(tx, user_id)
            if deleted:
                await self.store.audit(tx, "user_deleted", actor_id=None, actor_username="service_role",
                                       ip=client.ip, now=now, log_type="team", traits={"user_id": user_id})
            return deleted

        try:
            deleted = await self.store.database.write(work)
        except LedgerbaseError as error:
            if error.code == "23503":
                raise AuthApiError(409, "conflict",
                                   "The user is still referenced by rows of other tables") from None
            raise
        if not deleted:
            raise user_not_found()

    async def admin_end_sessions(self, client: Client, *, session_id: str | None = None,
                                 user_id: str | None = None) -> int:
        """Delete one session, or all of a user's; how many were ended."""
        now = utc_now()

        async def work(tx: Transaction) -> int:
            if session_id is not None:
                owner = await self.store.delete_session(tx, session_id)
                ended, target = (1 if owner else 0), owner
            elif user_id is not None:
                ended, target = len(await self.store.delete_sessions(tx, user_id)), user_id
            else:
                raise ValueError("a session id or a user id is needed")
            if ended:
                await self.store.audit(tx, "session_revoked", actor_id=None, actor_username="service_role",
                                       ip=client.ip, now=now, log_type="token",
                                       traits={"user_id": target, "session_id": session_id, "sessions": ended})
            return ended

        return await self.store.database.write(work)

    @staticmethod
    def _role(value: Any) -> str:
        if value is None:
            return "authenticated"
        if not isinstance(value, str) or value not in ROLES:
            raise validation_failed(f"role must be one of {', '.join(sorted(ROLES))}")
        return value
