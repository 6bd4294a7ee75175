"""The change feed: committed changes read from the ledger's changes table, in sequence order.

Every write through Ledgerbase is captured in the same transaction as a numbered change
(``ledgerbase.ledger.capture``); numbers are gapless and follow commit order on both
databases, so a reader that remembers the last number it saw misses nothing and never
sees a rolled-back write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ledgerbase.db.engine import Database, PostgresDatabase

OPS = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of a row."""

    seq: int
    commit_timestamp: str  # ISO 8601 UTC with milliseconds, as Supabase Realtime sends it
    table: str  # "todos" (schema public), "auth.users"
    op: str  # INSERT | UPDATE | DELETE
    pk: dict[str, Any]
    record: dict[str, Any] | None  # the new row as the data API returns it; None for deletes
    # the whole row before an update or delete, for tables with REPLICA IDENTITY FULL; else None
    old_record: dict[str, Any] | None = None


def _timestamp(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return str(value)


def _json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        return orjson.loads(value)
    return value


class ChangeReader:
    """Reads changes after a sequence number (one indexed range query per call)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        p = database.dialect.placeholder
        if isinstance(database, PostgresDatabase):
            # changes are written numbered at COMMIT (ledgerbase.ledger.capture)
            self._after = ("SELECT seq, time, table_name, op, pk::text, row_data::text, old_data::text "
                           "FROM ledgerbase.ledger_changes_from($1::bigint + 1, $2)")
            self._head = "SELECT coalesce(max(seq), -1) FROM ledgerbase.ledger_changes"
            self._postgres: PostgresDatabase | None = database
        else:
            # seq = id - 1
            self._after = (f"SELECT id - 1, time, table_name, op, pk, row_data, old_data "
                           f"FROM _ledgerbase_ledger_changes WHERE id > {p(1)} + 1 ORDER BY id LIMIT {p(2)}")
            self._head = "SELECT coalesce(max(id), 0) - 1 FROM _ledgerbase_ledger_changes"
            self._postgres = None

    async def head(self) -> int:
        """The number of the last committed change (-1 when there is none).

        Raises LedgerbaseError when the changes table is not there (yet).
        """
        row = await self.database.fetch_one(self._head, ())
        return int(row[0]) if row is not None and row[0] is not None else -1

    async def after(self, seq: int, limit: int = 1000) -> list[Change]:
        """Up to ``limit`` changes numbered above ``seq``, in order; raises LedgerbaseError."""
        rows = await self.database.fetch_all(self._after, (seq, limit))
        if rows and self._postgres is not None:
            # PostgreSQL: a numbered write is visible a moment before its commit is on disk
            # (PostgresDatabase.write flushes it before answering); this commit's flush covers
            # every change read, so nothing leaves the server that a crash could take back
            await self._postgres.flush_wal()
        return [Change(seq=int(row[0]), commit_timestamp=_timestamp(row[1]), table=str(row[2]),
                       op=OPS.get(str(row[3]), str(row[3]).upper()), pk=_json(row[4]) or {},
                       record=_json(row[5]), old_record=_json(row[6]))
                for row in rows]

