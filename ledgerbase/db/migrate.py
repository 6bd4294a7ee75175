"""The migration runner: apply a directory's ``*.sql`` files once each, in name order.

Plain ``NAME.sql`` files are PostgreSQL's dialect: run as written on PostgreSQL
and translated (``ledgerbase.db.translate``) on SQLite. ``NAME.postgres.sql`` and
``NAME.sqlite.sql`` apply to one database only. Every file runs in its own
transaction and is recorded with its checksum, so a failing file leaves the
database as it was and an applied file is never run twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from ledgerbase.auth.schema import postgres_tables, sqlite_tables
from ledgerbase.db.dialect import quote_ident
from ledgerbase.db.engine import connect_sqlite, sqlite_path
from ledgerbase.db.platform import postgres_setup
from ledgerbase.db.translate import POLICY_SELF, TranslatedStatement, TranslationError, translate_to_sqlite
from ledgerbase.errors import LedgerbaseError
from ledgerbase.ledger import capture

SQLITE_SUFFIX = ".sqlite.sql"
POSTGRES_SUFFIX = ".postgres.sql"

_SQLITE_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS _ledgerbase_migrations "
    "(name text PRIMARY KEY, checksum text NOT NULL, applied_at text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS _ledgerbase_functions "
    "(name text PRIMARY KEY, params text NOT NULL, return_type text NOT NULL, "
    "returns_set integer NOT NULL, body text NOT NULL)",
    # one row per policy (compiled: ledgerbase.auth.policies), and one with name NULL per
    # table with row-level security enabled
    "CREATE TABLE IF NOT EXISTS _ledgerbase_policies "
    "(table_name text NOT NULL, name text, statement text NOT NULL, compiled text)",
    # PostgreSQL types SQLite could not keep as declared (a bigint identity key is "integer")
    "CREATE TABLE IF NOT EXISTS _ledgerbase_columns "
    "(table_name text NOT NULL, column_name text NOT NULL, pg_type text NOT NULL, "
    "PRIMARY KEY (table_name, column_name))",
)
_POSTGRES_BOOKKEEPING = (
    "CREATE SCHEMA IF NOT EXISTS ledgerbase",
    "CREATE TABLE IF NOT EXISTS ledgerbase.migrations "
    "(name text PRIMARY KEY, checksum text NOT NULL, applied_at text NOT NULL)",
    # when the platform (roles, auth schema, grants) was first set up
    "CREATE TABLE IF NOT EXISTS ledgerbase.platform (name text PRIMARY KEY, applied_at text NOT NULL)",
)
# One migration run at a time per PostgreSQL database (several servers may start together).
_POSTGRES_LOCK_KEY = 0x4C42_4D49  # "LBMI"


class MigrationError(LedgerbaseError):
    """A migration file could not be applied; the message names file, line and construct."""

    status = 400
    code = "PGRST100"


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """File names applied by this run, and those found already applied."""

    applied: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MigrationFile:
    """One ``*.sql`` file of a migrations directory."""

    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


async def migrate(database_url: str, directory: Path | None) -> MigrationResult:
    """Apply the migrations of ``directory`` not applied yet to the database at ``database_url``.

    ``database_url`` is ``sqlite:///path.db`` (its directory is created) or
    ``postgresql://...``. Raises MigrationError naming the file (and line) that
    failed; files before it stay applied, the failing one leaves no trace.
    The platform (``ledgerbase.db.platform``, the auth tables) is set up first;
    ``directory=None`` does only that.
    """
    if database_url.startswith("sqlite:///"):
        files = migration_files(directory, "sqlite") if directory is not None else []
        return await asyncio.to_thread(_migrate_sqlite, sqlite_path(database_url), files)
    if database_url.startswith(("postgresql://", "postgres://")):
        files = migration_files(directory, "postgres") if directory is not None else []
        return await _migrate_postgres(database_url, files)
    raise MigrationError(
        f"unsupported database URL scheme {database_url.split(':', 1)[0]!r}: "
        "use sqlite:///path/to/file.db or postgresql://user@host/db")


def migration_files(directory: Path, dialect: str) -> list[MigrationFile]:
    """The ``*.sql`` files of ``directory`` that apply to ``dialect``, in name order."""
    if not directory.is_dir():
        raise MigrationError(f"{directory} is not a directory of .sql migrations")
    other = POSTGRES_SUFFIX if dialect == "sqlite" else SQLITE_SUFFIX
    files = []
    for path in sorted(directory.glob("*.sql"), key=lambda item: item.name):
        if path.name.endswith(other) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise MigrationError(f"{path.name}: cannot read the file ({error})") from None
        files.append(MigrationFile(name=path.name, text=text))
    return files


def _now() -> str:
    return datetime.now(UTC).isoformat()


# --- SQLite -------------------------------------------------------------------------------------

def _migrate_sqlite(path: Path, files: Sequence[MigrationFile]) -> MigrationResult:
    path.parent.mkdir(parents=True, exist_ok=True)
    applied: list[str] = []
    skipped: list[str] = []
    try:
        connection = connect_sqlite(path)
    except sqlite3.Error as error:
        raise MigrationError(f"cannot open the SQLite database {path}: {error}") from None
    try:
        connection.execute("BEGIN IMMEDIATE")
        for statement in (*_SQLITE_BOOKKEEPING, *sqlite_tables(), *capture.SQLITE_SETUP):
            connection.execute(statement)
        if not connection.execute("SELECT 1 FROM pragma_table_info('_ledgerbase_policies') "
                                  "WHERE name = 'compiled'").fetchone():
            connection.execute("ALTER TABLE _ledgerbase_policies ADD COLUMN compiled text")
        capture.sqlite_upgrade(connection)
        connection.execute("COMMIT")
        # the ledger: tables there before are adopted, and this connection's writes captured
        connection.execute("BEGIN IMMEDIATE")
        _capture_sqlite(connection)
        connection.execute("COMMIT")
        for migration in files:
            if _apply_sqlite(connection, migration):
                applied.append(migration.name)
            else:
                skipped.append(migration.name)
    finally:
        connection.close()
    return MigrationResult(applied=tuple(applied), skipped=tuple(skipped))


def _apply_sqlite(connection: sqlite3.Connection, migration: MigrationFile) -> bool:
    """Apply one file in its own transaction; False when it was applied before."""
    # IMMEDIATE takes the write lock first, so two runners cannot both apply a file.
    connection.execute("BEGIN IMMEDIATE")
    try:
        if connection.execute("SELECT 1 FROM _ledgerbase_migrations WHERE name = ?",
                              (migration.name,)).fetchone():
            connection.execute("ROLLBACK")
            return False
        for statement in _sqlite_statements(connection, migration):
            try:
                connection.execute(statement.sql, statement.params)
                _check_compiled_policy(connection, statement)
            except sqlite3.Error as error:
                raise MigrationError(f"{migration.name} line {statement.line}: {error}") from None
        _capture_sqlite(connection)
        connection.execute("INSERT INTO _ledgerbase_migrations (name, checksum, applied_at) VALUES (?, ?, ?)",
                           (migration.name, migration.checksum, _now()))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return True


def _capture_sqlite(connection: sqlite3.Connection) -> None:
    """Adopt new tables into the ledger and capture this connection's writes to every table."""
    for statement in capture.sqlite_capture_statements(connection):
        connection.execute(statement)


def _check_compiled_policy(connection: sqlite3.Connection, statement: TranslatedStatement) -> None:
    """Prepare a just-stored policy's expressions once, so SQLite refuses what it cannot run now
    (an unknown function, say) rather than on the first request."""
    if not statement.sql.startswith("INSERT INTO _ledgerbase_policies") or statement.params[3] is None:
        return
    policy = orjson.loads(statement.params[3])
    for clause in ("using", "check"):
        if policy[clause] is not None:
            connection.execute(f"EXPLAIN SELECT 1 FROM {quote_ident(statement.params[0])} AS "
                               f"{POLICY_SELF} WHERE {policy[clause]}")


def _sqlite_statements(connection: sqlite3.Connection,
                       migration: MigrationFile) -> list[TranslatedStatement]:
    """The statements of a file for SQLite: translated, or as written for ``.sqlite.sql``."""
    if migration.name.endswith(SQLITE_SUFFIX):
        return split_sqlite_script(migration.text)
    try:
        return translate_to_sqlite(migration.text, migration.name, _sqlite_column_types(connection))
    except TranslationError as error:
        raise MigrationError(error.message) from None


def split_sqlite_script(text: str) -> list[TranslatedStatement]:
    """Split a SQLite script into complete statements, each with its starting line."""
    statements: list[TranslatedStatement] = []
    start = 0
    for index, char in enumerate(text):
        if char == ";" and sqlite3.complete_statement(text[start:index + 1]):
            _append_statement(statements, text, start, index + 1)
            start = index + 1
    _append_statement(statements, text, start, len(text))
    return statements


def _append_statement(statements: list[TranslatedStatement], text: str, start: int, end: int) -> None:
    body = text[start:end].lstrip()
    if body and not _only_comments(body):
        line = text.count("\n", 0, end - len(body)) + 1
        statements.append(TranslatedStatement(line=line, sql=body))


def _only_comments(chunk: str) -> bool:
    lines = [line.strip() for line in chunk.splitlines()]
    return all(not line or line.startswith("--") for line in lines)


def _sqlite_column_types(connection: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """Declared (PostgreSQL) column types of the tables already in the database."""
    types: dict[str, dict[str, str]] = {}
    for (table,) in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall():
        types[table] = {name: (declared or "").lower() for name, declared in connection.execute(
            "SELECT name, type FROM pragma_table_info(?) ORDER BY cid", (table,)).fetchall()}
    return types


# --- PostgreSQL ---------------------------------------------------------------------------------

async def _migrate_postgres(url: str, files: Sequence[MigrationFile]) -> MigrationResult:
    try:
        connection = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as error:
        raise MigrationError(f"cannot connect to PostgreSQL: {type(error).__name__}: {error}") from None
    applied: list[str] = []
    skipped: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _POSTGRES_LOCK_KEY)
        try:
            async with connection.transaction():
                for statement in _POSTGRES_BOOKKEEPING:
                    await connection.execute(statement)
                first_time = not await connection.fetchval(
                    "SELECT 1 FROM ledgerbase.platform WHERE name = 'grants'")
                for statement in (*postgres_setup(first_time), *postgres_tables(), *capture.POSTGRES_SETUP):
                    await connection.execute(statement)
                await _capture_postgres(connection)
                if first_time:
                    await connection.execute(
                        "INSERT INTO ledgerbase.platform (name, applied_at) VALUES ('grants', $1)", _now())
            for migration in files:
                if await _apply_postgres(connection, migration):
                    applied.append(migration.name)
                else:
                    skipped.append(migration.name)
            if applied:
                await connection.execute("NOTIFY pgrst, 'reload schema'")
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _POSTGRES_LOCK_KEY)
    finally:
        await connection.close()
    return MigrationResult(applied=tuple(applied), skipped=tuple(skipped))


async def _apply_postgres(connection: asyncpg.Connection, migration: MigrationFile) -> bool:
    """Apply one file in its own transaction; False when it was applied before."""
    done = await connection.fetchval("SELECT 1 FROM ledgerbase.migrations WHERE name = $1", migration.name)
    if done:
        return False
    try:
        async with connection.transaction():
            await connection.execute(f"SET LOCAL {capture.CAPTURE_SETTING} = 'on'")
            await connection.execute(capture.POSTGRES_CAPTURE_AT_STATEMENT_END)
            await connection.execute(migration.text)
            await _capture_postgres(connection)
            await connection.execute(
                "INSERT INTO ledgerbase.migrations (name, checksum, applied_at) VALUES ($1, $2, $3)",
                migration.name, migration.checksum, _now())
    except asyncpg.PostgresError as error:
        raise MigrationError(_postgres_failure(migration, error)) from None
    return True


async def _capture_postgres(connection: asyncpg.Connection) -> None:
    """Adopt the tables not captured yet into the ledger (their rows, and a capture trigger)."""
    async def fetch(sql: str) -> list[Any]:
        return list(await connection.fetch(sql))

    await capture.adopt_postgres(connection.execute, fetch)


def _postgres_failure(migration: MigrationFile, error: asyncpg.PostgresError) -> str:
    """``file line N: message`` when PostgreSQL reports where in the file it failed."""
    message = getattr(error, "message", None) or str(error)
    position = getattr(error, "position", None)
    if position and str(position).isdigit():
        line = migration.text.count("\n", 0, int(position) - 1) + 1
        return f"{migration.name} line {line}: {message}"
    return f"{migration.name}: {message}"
