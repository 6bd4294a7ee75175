"""SQL of Ledgerbase Auth, for PostgreSQL and SQLite, and the records it reads back.

Statements are written once, in PostgreSQL's words with ``$n`` parameters and
``{table}`` names; a ``_Flavor`` (the only place the two databases differ here)
supplies the table names, the placeholder style, how a timestamp is bound and
the row lock. Methods taking a ``tx`` run inside ``Database.write`` and await
nothing but ``tx.fetch_all`` (SQLite runs them to completion in its writer).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ledgerbase.auth.schema import SQLITE_PREFIX
from ledgerbase.db.engine import Database, Row, Transaction

_PARAM = re.compile(r"\$(\d+)")
_USER_COLUMNS = ("id, aud, role, email, encrypted_password, email_confirmed_at, last_sign_in_at, "
                 "raw_app_meta_data, raw_user_meta_data, phone, is_anonymous, banned_until, "
                 "created_at, updated_at")
_SESSION_COLUMNS = "id, user_id, aal, not_after, refreshed_at, user_agent, ip, created_at, updated_at"
_TOKEN_COLUMNS = "id, token_hash, user_id, session_id, parent, revoked, created_at, updated_at"
# columns update_user may set (names from code, never from a request)
USER_UPDATABLE = frozenset({"email", "encrypted_password", "email_confirmed_at", "last_sign_in_at",
                            "raw_app_meta_data", "raw_user_meta_data", "phone", "role", "banned_until"})
_TIME_COLUMNS = frozenset({"email_confirmed_at", "last_sign_in_at", "banned_until"})
_JSON_COLUMNS = frozenset({"raw_app_meta_data", "raw_user_meta_data"})


def utc_now() -> datetime:
    """The current time in UTC, as every auth timestamp is kept."""
    return datetime.now(UTC)


def _time(value: Any) -> datetime | None:
    """A timestamp column: datetime (PostgreSQL) or ISO-8601 text (SQLite)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _required_time(value: Any) -> datetime:
    """A NOT NULL timestamp column."""
    moment = _time(value)
    if moment is None:
        raise ValueError("a NOT NULL timestamp column read as NULL")
    return moment


def _json(value: Any) -> dict[str, Any]:
    """A JSON column: text on both drivers (asyncpg hands jsonb over as text)."""
    if isinstance(value, dict):
        return value
    parsed = orjson.loads(value) if value else {}
    return parsed if isinstance(parsed, dict) else {}


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A row of ``users``."""

    id: str
    aud: str
    role: str
    email: str | None
    encrypted_password: str | None
    email_confirmed_at: datetime | None
    last_sign_in_at: datetime | None
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    phone: str | None
    is_anonymous: bool
    banned_until: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> UserRecord:
        created = _required_time(row[12])
        updated = _required_time(row[13])
        return cls(id=str(row[0]), aud=row[1], role=row[2], email=row[3], encrypted_password=row[4],
                   email_confirmed_at=_time(row[5]), last_sign_in_at=_time(row[6]),
                   app_metadata=_json(row[7]), user_metadata=_json(row[8]), phone=row[9],
                   is_anonymous=bool(row[10]), banned_until=_time(row[11]),
                   created_at=created, updated_at=updated)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A row of ``sessions``: one sign-in, and the family of its refresh tokens."""

    id: str
    user_id: str
    aal: str
    not_after: datetime | None
    refreshed_at: datetime | None
    user_agent: str | None
    ip: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> SessionRecord:
        created = _required_time(row[7])
        updated = _required_time(row[8])
        return cls(id=str(row[0]), user_id=str(row[1]), aal=row[2], not_after=_time(row[3]),
                   refreshed_at=_time(row[4]), user_agent=row[5], ip=row[6],
                   created_at=created, updated_at=updated)

    def active(self, now: datetime) -> bool:
        """Not revoked and not past its end."""
        return self.not_after is None or self.not_after > now


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A row of ``refresh_tokens`` (the token itself is never stored, only its hash)."""

    id: int
    token_hash: str
    user_id: str
    session_id: str
    parent: str | None
    revoked: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> TokenRecord:
        created = _required_time(row[6])
        updated = _required_time(row[7])
        return cls(id=int(row[0]), token_hash=row[1], user_id=str(row[2]), session_id=str(row[3]),
                   parent=row[4], revoked=bool(row[5]), created_at=created, updated_at=updated)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A row of ``audit_log_entries``."""

    id: str
    payload: dict[str, Any]
    ip_address: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Flavor:
    """What differs between the databases for these statements."""

    table: Callable[[str], str]
    placeholder: Callable[[int], str]
    bind_time: Callable[[datetime], Any]
    for_update: str


_POSTGRES = _Flavor(table=lambda name: f"auth.{name}", placeholder=lambda n: f"${n}",
                    bind_time=lambda moment: moment, for_update=" FOR UPDATE")
_SQLITE = _Flavor(table=lambda name: f"{SQLITE_PREFIX}{name}", placeholder=lambda n: f"?{n}",
                  bind_time=lambda moment: moment.astimezone(UTC).isoformat(timespec="microseconds"),
                  for_update="")  # one writer: a write transaction already excludes the others


class AuthStore:
    """Reads and writes of the auth tables on one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._flavor = _POSTGRES if database.dialect.name == "postgres" else _SQLITE
        self._sql: dict[str, str] = {}

    def sql(self, template: str) -> str:
        """``template`` with table names and placeholders of this database (cached)."""
        rendered = self._sql.get(template)
        if rendered is None:
            flavor = self._flavor
            rendered = template.format(
                users=flavor.table("users"), sessions=flavor.table("sessions"),
                refresh_tokens=flavor.table("refresh_tokens"),
                audit_log_entries=flavor.table("audit_log_entries"), for_update=flavor.for_update)
            rendered = _PARAM.sub(lambda match: flavor.placeholder(int(match.group(1))), rendered)
            self._sql[template] = rendered
        return rendered

    def bind_time(self, moment: datetime | None) -> Any:
        """A timestamp as this database's driver takes it."""
        return None if moment is None else self._flavor.bind_time(moment)

    async def _one(self, template: str, params: Sequence[Any]) -> Row | None:
        return await self.database.fetch_one(self.sql(template), params)

    # --- users ---------------------------------------------------------------------------

    async def user_by_email(self, email: str) -> UserRecord | None:
        """The user with this (lower-cased) email."""
        row = await self._one(f"SELECT {_USER_COLUMNS} FROM {{users}} WHERE email = $1", (email,))
        return UserRecord.from_row(row) if row else None

    async def user_by_id(self, user_id: str) -> UserRecord | None:
        """The user with this id (a valid uuid)."""
        row = await self._one(f"SELECT {_USER_COLUMNS} FROM {{users}} WHERE id = $1", (user_id,))
        return UserRecord.from_row(row) if row else None

    async def list_users(self, limit: int, offset: int) -> list[UserRecord]:
        """A page of users, oldest first."""
        rows = await self.database.fetch_all(self.sql(
            f"SELECT {_USER_COLUMNS} FROM {{users}} ORDER BY created_at, id LIMIT $1 OFFSET $2"),
            (limit, offset))
        return [UserRecord.from_row(row) for row in rows]

    async def count_users(self) -> int:
        """How many users there are."""
        row = await self._one("SELECT count(*) FROM {users}", ())
        return int(row[0]) if row else 0

    async def lock_user(self, tx: Transaction, user_id: str) -> UserRecord | None:
        """The user, locked for the rest of the transaction (read-modify-write of metadata)."""
        rows = await tx.fetch_all(self.sql(
            f"SELECT {_USER_COLUMNS} FROM {{users}} WHERE id = $1{{for_update}}"), (user_id,))
        return UserRecord.from_row(rows[0]) if rows else None

    async def insert_user(self, tx: Transaction, user: UserRecord) -> None:
        """Create a user row (its email must be free: 23505 otherwise)."""
        await tx.fetch_all(self.sql(
            f"INSERT INTO {{users}} ({_USER_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"),
            (user.id, user.aud, user.role, user.email, user.encrypted_password,
             self.bind_time(user.email_confirmed_at), self.bind_time(user.last_sign_in_at),
             orjson.dumps(user.app_metadata).decode(), orjson.dumps(user.user_metadata).decode(),
             user.phone, user.is_anonymous, self.bind_time(user.banned_until),
             self.bind_time(user.created_at), self.bind_time(user.updated_at)))

    async def update_user(self, tx: Transaction, user_id: str, changes: dict[str, Any],
                          now: datetime) -> UserRecord | None:
        """Set ``changes`` (columns of USER_UPDATABLE) and updated_at; the updated user."""
        names = sorted(changes)
        if not set(names) <= USER_UPDATABLE:
            raise ValueError(f"not updatable: {set(names) - USER_UPDATABLE}")
        values: list[Any] = [user_id, self.bind_time(now)]
        assignments = ["updated_at = $2"]
        for name in names:
            value = changes[name]
            if name in _TIME_COLUMNS:
                value = self.bind_time(value)
            elif name in _JSON_COLUMNS:
                value = orjson.dumps(value).decode()
            values.append(value)
            assignments.append(f"{name} = ${len(values)}")
        rows = await tx.fetch_all(self.sql(
            f"UPDATE {{users}} SET {', '.join(assignments)} WHERE id = $1 RETURNING {_USER_COLUMNS}"),
            values)
        return UserRecord.from_row(rows[0]) if rows else None

    async def delete_user(self, tx: Transaction, user_id: str) -> bool:
        """Delete a user (sessions and refresh tokens go with it); False if there was none."""
        rows = await tx.fetch_all(self.sql("DELETE FROM {users} WHERE id = $1 RETURNING id"), (user_id,))
        return bool(rows)

    # --- sessions -----------------------------------------------------------------------

    async def session(self, session_id: str) -> SessionRecord | None:
        """The session with this id."""
        row = await self._one(f"SELECT {_SESSION_COLUMNS} FROM {{sessions}} WHERE id = $1", (session_id,))
        return SessionRecord.from_row(row) if row else None

    async def sessions_of(self, user_id: str) -> list[SessionRecord]:
        """The sessions of a user, oldest first."""
        rows = await self.database.fetch_all(self.sql(
            f"SELECT {_SESSION_COLUMNS} FROM {{sessions}} WHERE user_id = $1 ORDER BY created_at, id"),
            (user_id,))
        return [SessionRecord.from_row(row) for row in rows]

    async def session_in(self, tx: Transaction, session_id: str) -> SessionRecord | None:
        """The session, read inside a write transaction."""
        rows = await tx.fetch_all(self.sql(
            f"SELECT {_SESSION_COLUMNS} FROM {{sessions}} WHERE id = $1"), (session_id,))
        return SessionRecord.from_row(rows[0]) if rows else None

    async def insert_session(self, tx: Transaction, session_id: str, user_id: str, now: datetime,
                             ip: str, user_agent: str | None) -> None:
        """Start a session."""
        await tx.fetch_all(self.sql(
            "INSERT INTO {sessions} (id, user_id, aal, user_agent, ip, created_at, updated_at) "
            "VALUES ($1, $2, 'aal1', $3, $4, $5, $5)"),
            (session_id, user_id, user_agent, ip, self.bind_time(now)))

    async def touch_session(self, tx: Transaction, session_id: str, now: datetime) -> None:
        """Record a refresh of the session."""
        await tx.fetch_all(self.sql(
            "UPDATE {sessions} SET refreshed_at = $2, updated_at = $2 WHERE id = $1"),
            (session_id, self.bind_time(now)))

    async def revoke_session(self, tx: Transaction, session_id: str, now: datetime) -> None:
        """End a session without deleting it (refresh-token reuse): every token revoked."""
        await tx.fetch_all(self.sql(
            "UPDATE {sessions} SET not_after = $2, updated_at = $2 WHERE id = $1"),
            (session_id, self.bind_time(now)))
        await tx.fetch_all(self.sql(
            "UPDATE {refresh_tokens} SET revoked = $2 WHERE session_id = $1 AND revoked = $3"),
            (session_id, True, False))

    async def delete_sessions(self, tx: Transaction, user_id: str, *, only: str | None = None,
                              keep: str | None = None) -> list[str]:
        """Delete the user's sessions (all, ``only`` one, or all but ``keep``); their ids."""
        if only is not None:
            rows = await tx.fetch_all(self.sql(
                "DELETE FROM {sessions} WHERE user_id = $1 AND id = $2 RETURNING id"), (user_id, only))
        elif keep is not None:
            rows = await tx.fetch_all(self.sql(
                "DELETE FROM {sessions} WHERE user_id = $1 AND id <> $2 RETURNING id"), (user_id, keep))
        else:
            rows = await tx.fetch_all(self.sql(
                "DELETE FROM {sessions} WHERE user_id = $1 RETURNING id"), (user_id,))
        return [str(row[0]) for row in rows]

    async def delete_session(self, tx: Transaction, session_id: str) -> str | None:
        """Delete one session by id; its user's id, or None if there was none."""
        rows = await tx.fetch_all(self.sql(
            "DELETE FROM {sessions} WHERE id = $1 RETURNING user_id"), (session_id,))
        return str(rows[0][0]) if rows else None

    # --- refresh tokens ---------------------------------------------------------------

    async def refresh_token(self, token_hash: str) -> TokenRecord | None:
        """The refresh token with this hash."""
        row = await self._one(
            f"SELECT {_TOKEN_COLUMNS} FROM {{refresh_tokens}} WHERE token_hash = $1", (token_hash,))
        return TokenRecord.from_row(row) if row else None

    async def insert_refresh_token(self, tx: Transaction, token_hash: str, user_id: str, session_id: str,
                                   parent: str | None, now: datetime) -> None:
        """Store a new refresh token (by hash) in a session."""
        await tx.fetch_all(self.sql(
            "INSERT INTO {refresh_tokens} "
            "(token_hash, user_id, session_id, parent, revoked, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $6)"),
            (token_hash, user_id, session_id, parent, False, self.bind_time(now)))

    async def claim_refresh_token(self, tx: Transaction, token_hash: str, now: datetime) -> TokenRecord | None:
        """Revoke the token if it is still active, atomically: the token when this call won it."""
        rows = await tx.fetch_all(self.sql(
            "UPDATE {refresh_tokens} SET revoked = $3, updated_at = $2 "
            f"WHERE token_hash = $1 AND revoked = $4 RETURNING {_TOKEN_COLUMNS}"),
            (token_hash, self.bind_time(now), True, False))
        return TokenRecord.from_row(rows[0]) if rows else None

    async def token_in(self, tx: Transaction, token_hash: str) -> TokenRecord | None:
        """The refresh token, read inside a write transaction."""
        rows = await tx.fetch_all(self.sql(
            f"SELECT {_TOKEN_COLUMNS} FROM {{refresh_tokens}} WHERE token_hash = $1"), (token_hash,))
        return TokenRecord.from_row(rows[0]) if rows else None

    # --- audit log --------------------------------------------------------------------

    async def audit(self, tx: Transaction, action: str, *, actor_id: str | None, actor_username: str | None,
                    ip: str, now: datetime, traits: dict[str, Any] | None = None,
                    log_type: str = "account") -> None:
        """Record an auth event (never a password or a token)."""
        payload = {"action": action, "actor_id": actor_id or "", "actor_username": actor_username or "",
                   "log_type": log_type, "traits": traits or {}}
        await tx.fetch_all(self.sql(
            "INSERT INTO {audit_log_entries} (id, payload, ip_address, created_at) VALUES ($1, $2, $3, $4)"),
            (str(uuid.uuid4()), orjson.dumps(payload).decode(), ip[:64], self.bind_time(now)))

    async def audit_entries(self, limit: int, offset: int) -> list[AuditEntry]:
        """A page of the audit log, newest first."""
        rows = await self.database.fetch_all(self.sql(
            "SELECT id, payload, ip_address, created_at FROM {audit_log_entries} "
            "ORDER BY created_at DESC, id LIMIT $1 OFFSET $2"), (limit, offset))
        entries = []
        for row in rows:
            entries.append(AuditEntry(id=str(row[0]), payload=_json(row[1]), ip_address=row[2],
                                      created_at=_required_time(row[3])))
        return entries

    async def count_audit_entries(self) -> int:
        """How many audit log entries there are."""
        row = await self._one("SELECT count(*) FROM {audit_log_entries}", ())
        return int(row[0]) if row else 0
