"""Dead letters: webhook deliveries given up after the last attempt, kept for an operator.

Table ``ledgerbase.webhook_deadletters`` on PostgreSQL, ``_ledgerbase_webhook_deadletters``
on SQLite; created on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledgerbase.db.engine import Database, PostgresDatabase, Transaction

_LOCK_KEY = 0x4C42_5748  # "LBWH": serializes creating the table across servers


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One delivery given up: which webhook, which change, how it last failed."""

    webhook: str
    seq: int
    status: int | None  # the receiver's last HTTP status; None when it could not be reached
    error: str
    attempts: int
    payload: str  # the JSON body that was POSTed
    failed_at: str = ""  # RFC 3339 UTC; set by the database

    def to_json(self) -> dict[str, Any]:
        """The dead letter as the admin endpoint returns it."""
        return {"webhook": self.webhook, "ledger_seq": self.seq, "status": self.status, "error": self.error,
                "attempts": self.attempts, "payload": self.payload, "failed_at": self.failed_at}


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return str(value)


class DeadLetterStore:
    """Records and lists dead letters in one database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        p = database.dialect.placeholder
        if isinstance(database, PostgresDatabase):
            table = "ledgerbase.webhook_deadletters"
            self._setup: tuple[str, ...] = (
                f"SELECT pg_advisory_xact_lock({_LOCK_KEY})",
                "CREATE SCHEMA IF NOT EXISTS ledgerbase",
                f"""CREATE TABLE IF NOT EXISTS {table} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  webhook text NOT NULL,
  seq bigint NOT NULL,
  status integer,
  error text NOT NULL,
  attempts integer NOT NULL,
  payload text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
)""")
        else:
            table = "_ledgerbase_webhook_deadletters"
            self._setup = (f"""CREATE TABLE IF NOT EXISTS {table} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  webhook TEXT NOT NULL,
  seq INTEGER NOT NULL,
  status INTEGER,
  error TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  payload TEXT NOT NULL,
  failed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)""",)
        self._insert = (f"INSERT INTO {table} (webhook, seq, status, error, attempts, payload) "
                        f"VALUES ({p(1)}, {p(2)}, {p(3)}, {p(4)}, {p(5)}, {p(6)})")
        self._list = (f"SELECT webhook, seq, status, error, attempts, payload, failed_at FROM {table} "
                      f"ORDER BY id DESC LIMIT {p(1)}")
        self._ready = False

    async def _ensure(self) -> None:
        if self._ready:
            return

        async def work(tx: Transaction) -> None:
            for statement in self._setup:
                await tx.fetch_all(statement, ())

        await self.database.write(work)
        self._ready = True

    async def record(self, letter: DeadLetter) -> None:
        """Store ``letter``. Raises LedgerbaseError when the database is unavailable."""
        await self._ensure()

        async def work(tx: Transaction) -> None:
            await tx.fetch_all(self._insert, (letter.webhook, letter.seq, letter.status, letter.error,
                                              letter.attempts, letter.payload))

        await self.database.write(work)

    async def latest(self, limit: int = 1000) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first. Raises LedgerbaseError when unavailable."""
        await self._ensure()
        rows = await self.database.fetch_all(self._list, (limit,))
        return [DeadLetter(webhook=str(row[0]), seq=int(row[1]), status=None if row[2] is None else int(row[2]),
                           error=str(row[3]), attempts=int(row[4]), payload=str(row[5]),
                           failed_at=_timestamp(row[6])) for row in rows]
