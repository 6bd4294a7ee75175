"""Database engines: SQLite (one writer, readers in threads) and PostgreSQL (asyncpg pool).

Both expose the same small async interface to the request pipeline: run one
read statement, or run a unit of work in a write transaction. Driver errors are
turned into ``LedgerbaseError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from ledgerbase.db.context import RequestContext, current, current_actor, current_helper
from ledgerbase.db.dialect import POSTGRES, SQLITE, Dialect
from ledgerbase.db.flush import WalFlusher
from ledgerbase.db.sqlite_threads import ReaderPool, RolledBack, Writer
from ledgerbase.errors import ConstraintError, DataError, LedgerbaseError, UnavailableError

T = TypeVar("T")
Row = tuple[Any, ...]


class Transaction(ABC):
    """Statements run inside one write transaction."""

    @abstractmethod
    async def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Run one statement and return its rows."""


class Database(ABC):
    """A connected database."""

    dialect: Dialect
    url: str

    @abstractmethod
    async def start(self) -> None:
        """Open connections (a PostgreSQL that is down is retried per request later)."""

    @abstractmethod
    async def close(self) -> None:
        """Close every connection."""

    @abstractmethod
    async def fetch_one(self, sql: str, params: Sequence[Any], *,
                        context: RequestContext | None = None) -> Row | None:
        """Run one read-only statement and return its first row.

        ``context``: the request's role and claims (PostgreSQL runs the statement as that
        role, so its row-level security applies; SQLite's statements carry the policies).
        """

    @abstractmethod
    async def fetch_all(self, sql: str, params: Sequence[Any], *,
                        context: RequestContext | None = None) -> list[Row]:
        """Run one read-only statement and return its rows (``context`` as for fetch_one)."""

    @abstractmethod
    async def write(self, work: Callable[[Transaction], Awaitable[T]], *, rollback: bool = False,
                    context: RequestContext | None = None) -> T:
        """Run ``work`` in a write transaction, committed unless it raises or ``rollback``."""

    async def fetch_all_read_only(self, sql: str, params: Sequence[Any], *,
                                  context: RequestContext | None = None) -> list[Row]:
        """Run one statement where writing is refused (25006), as PostgREST runs GET requests.

        SQLite's reader connections are opened read-only, so there it is ``fetch_all``.
        """
        return await self.fetch_all(sql, params, context=context)

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            await self.fetch_one("SELECT 1", ())
        except LedgerbaseError:
            return False
        return True


def open_database(url: str, *, readers: int = 4, pool_size: int = 10,
                  statement_timeout_ms: int = 30_000, capture: bool = True) -> Database:
    """The engine for a ``sqlite:///path`` or ``postgresql://`` URL.

    ``capture``: the ledger records this server's writes (PostgreSQL; SQLite's capture
    triggers are installed on the writer by the ledger itself).
    """
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url, readers=readers)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms,
                                capture=capture)
    raise LedgerbaseError(
        f"unsupported database URL scheme in {url.split(':', 1)[0]!r}: "
        "use sqlite:///path/to/file.db or postgresql://user@host/db",
        code="PGRST000", status=500,
    )


def sqlite_path(url: str) -> Path:
    """The file path of a ``sqlite:///`` URL (relative paths are relative to the working dir)."""
    return Path(url.removeprefix("sqlite:///"))


# --- SQLite -----------------------------------------------------------------------------

_UNIQUE_RE = re.compile(r"UNIQUE constraint failed: (.+)")
_NOT_NULL_RE = re.compile(r"NOT NULL constraint failed: (\w+)\.(\w+)")
_CHECK_RE = re.compile(r"CHECK constraint failed: (.+)")


def _regexp(pattern: str | None, value: Any) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if re.search(pattern, str(value)) else 0


def _fold(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _to_integer(value: Any) -> int | None:
    """``::integer`` of text as PostgreSQL does it: an error, not 0, for non-numbers."""
    if value is None or isinstance(value, int):
        return value
    return int(str(value).strip())  # ValueError -> "user-defined function raised exception"


def _to_number(value: Any) -> float | None:
    """``::numeric`` of text, failing on non-numbers."""
    if value is None or isinstance(value, (int, float)):
        return value
    return float(str(value).strip())


def connect_sqlite(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection configured as Ledgerbase needs it (WAL, foreign keys, functions)."""
    if readonly:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False)
    else:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=5000")
    # pages read through a shared memory map instead of a pread() each: random primary-key
    # lookups over 100,000 rows went from 14.0k to 14.9k req/s (one core, 16 connections)
    connection.execute("PRAGMA mmap_size=268435456")
    connection.execute("PRAGMA case_sensitive_like=ON")
    connection.create_function("regexp", 2, _regexp, deterministic=True)
    connection.create_function("lb_fold", 1, _fold, deterministic=True)
    connection.create_function("lb_integer", 1, _to_integer, deterministic=True)
    connection.create_function("lb_number", 1, _to_number, deterministic=True)
    for helper in ("uid", "role", "jwt", "email"):
        # auth.uid() and friends in column defaults: the claims of the running write
        connection.create_function(f"lb_auth_{helper}", 0, functools.partial(current_helper, helper))
    connection.create_function("lb_ledger_actor", 0, current_actor)
    return connection


def sqlite_error(error: sqlite3.Error) -> LedgerbaseError:
    """Translate a sqlite3 error to the PostgreSQL SQLSTATE PostgREST would report."""
    message = str(error)
    if isinstance(error, sqlite3.IntegrityError):
        if match := _UNIQUE_RE.match(message):
            columns = [part.split(".", 1)[-1] for part in match.group(1).split(", ")]
            table = match.group(1).split(".", 1)[0]
            name = f"{table}_pkey" if columns == ["id"] else f"{table}_{'_'.join(columns)}_key"
            return ConstraintError(
                f'duplicate key value violates unique constraint "{name}"', code="23505",
                details=f"Key ({', '.join(columns)}) already exists.",
            )
        if match := _NOT_NULL_RE.match(message):
            return ConstraintError(
                f'null value in column "{match.group(2)}" of relation "{match.group(1)}" '
                "violates not-null constraint", code="23502", status=400,
            )
        if "FOREIGN KEY constraint failed" in message:
            return ConstraintError(
                "insert or update on table violates foreign key constraint", code="23503",
                details="Key is not present in the referenced table, or is still referenced.",
            )
        if match := _CHECK_RE.match(message):
            return ConstraintError(
                f'new row violates check constraint "{match.group(1)}"', code="23514", status=400,
            )
        return ConstraintError(message, code="23000", status=400)
    if "ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint" in message:
        return LedgerbaseError(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            code="42P10", status=400,
        )
    if "user-defined function raised exception" in message:
        return DataError("invalid input syntax for a cast of a text value", code="22P02")
    if "database is locked" in message or "unable to open database" in message:
        return UnavailableError("the database is busy or unavailable", code="PGRST001")
    if "too many SQL variables" in message or "too many terms" in message:
        return LedgerbaseError("the request is too large for one statement", code="54000",
                               status=413)
    return LedgerbaseError("the database could not run the statement", code="XX000", status=500,
                           details=None)


class _SqliteTransaction(Transaction):
    """Statements of a transaction already running in the writer thread (no hand-off each)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            return self._connection.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise sqlite_error(error) from None


def _run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that awaits nothing but ``_SqliteTransaction`` calls, which never suspend."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a SQLite write transaction awaited something other than its statements")


class SqliteDatabase(Database):
    """SQLite in WAL mode: one writer connection and reader connections, each in its own thread."""

    dialect = SQLITE

    def __init__(self, url: str, *, readers: int = 4) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._readers_count = max(1, readers)
        self._readers: ReaderPool | None = None
        self._writer: Writer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        writer = Writer(self.path, connect_sqlite, sqlite_error)
        try:
            await asyncio.to_thread(writer.start, loop)
        except sqlite3.Error as error:
            raise sqlite_error(error) from None
        self._writer = writer
        self._readers = ReaderPool(self.path, self._readers_count,
                                   lambda path: connect_sqlite(path, readonly=True), sqlite_error)
        self._readers.start(loop)

    async def close(self) -> None:
        if self._readers is not None:
            await asyncio.to_thread(self._readers.close)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.close)
        self._readers = None
        self._writer = None

    async def _on_reader(self, sql: str, params: Sequence[Any], one: bool) -> Any:
        if self._readers is None:
            raise UnavailableError("the database is not open")
        return await self._readers.submit(sql, params, one)

    async def fetch_one(self, sql: str, params: Sequence[Any], *,
                        context: RequestContext | None = None) -> Row | None:
        row: Row | None = await self._on_reader(sql, params, True)
        return row

    async def fetch_all(self, sql: str, params: Sequence[Any], *,
                        context: RequestContext | None = None) -> list[Row]:
        rows: list[Row] = await self._on_reader(sql, params, False)
        return rows

    async def write(self, work: Callable[[Transaction], Awaitable[T]], *, rollback: bool = False,
                    context: RequestContext | None = None) -> T:
        if self._writer is None:
            raise UnavailableError("the database is not open")

        def transaction(connection: sqlite3.Connection) -> T:
            # the writer wraps this in a savepoint of its group's transaction (group commit)
            current.context = context
            try:
                result: T = _run_to_completion(work(_SqliteTransaction(connection)))  # type: ignore[arg-type]
            finally:
                current.context = None
            if rollback:
                raise RolledBack(result)
            return result

        result: T = await self._writer.submit(transaction)
        return result

    async def schema_version(self) -> int:
        """SQLite's schema cookie: it changes whenever a migration alters the schema."""
        row = await self.fetch_one("PRAGMA schema_version", ())
        return int(row[0]) if row else 0

    def run_sync(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on a fresh private connection (introspection, maintenance)."""
        connection = connect_sqlite(self.path)
        try:
            return work(connection)
        finally:
            connection.close()


# --- PostgreSQL -------------------------------------------------------------------------

_UNAVAILABLE = (OSError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
                asyncpg.InterfaceError, asyncpg.TooManyConnectionsError, asyncio.TimeoutError)


def pg_status(sqlstate: str, *, authenticated: bool = True) -> int:
    """PostgREST's HTTP status for a PostgreSQL SQLSTATE."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "42883": 404, "42P01": 404,
             "42P17": 500, "P0001": 400, "57014": 504}
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "42501":
        return 403 if authenticated else 401
    prefix = sqlstate[:2]
    by_class = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
                "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500,
                "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return by_class.get(prefix, 400)


def pg_error(error: BaseException) -> LedgerbaseError:
    """Translate an asyncpg error to a LedgerbaseError carrying PostgreSQL's SQLSTATE."""
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = getattr(error, "sqlstate", None) or "XX000"
        status = pg_status(sqlstate)
        if status >= 500 and sqlstate not in ("57014", "42P17"):  # 42P17 names a policy, no SQL
            if status == 503:
                return UnavailableError("the database is unavailable", code=sqlstate)
            return LedgerbaseError("the database could not run the statement", code=sqlstate,
                                   status=status)
        return LedgerbaseError(
            getattr(error, "message", None) or str(error), code=sqlstate, status=status,
            details=getattr(error, "detail", None), hint=getattr(error, "hint", None),
        )
    return UnavailableError("the database is unavailable", code="PGRST001")


# As PostgREST: statements run as the request's role, with its claims readable by
# auth.uid() & co. Set for the session (outside any transaction, so a rollback keeps
# it) and remembered per connection: a connection already set for the same role and
# claims needs no extra round trip, and the pool's reset on release (one more round
# trip, which would not reset the role anyway) is replaced by this. 'none' is the
# login role, for Ledgerbase's own statements.
_SET_CONTEXT = ("SELECT set_config('role', $1, false), set_config('request.jwt.claims', $2, false), "
                "set_config('ledgerbase.capture', $3, false)")
_SERVER_CONTEXT = ("none", "")


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that remembers the role and claims it was last set to."""

    lb_context: tuple[str, str, str] | None = None

    async def use_context(self, context: RequestContext | None, capture: str) -> None:
        """Run what follows as ``context``'s role and claims (Ledgerbase's own role if None),
        its writes captured by the ledger when ``capture`` is ``on``."""
        role, claims = (context.role, context.claims_json) if context is not None else _SERVER_CONTEXT
        wanted = (role, claims, capture)
        if wanted != self.lb_context:
            self.lb_context = None  # unknown until the server has answered
            await self.execute(_SET_CONTEXT, *wanted)
            self.lb_context = wanted


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing (transactions are rolled back by asyncpg first;
    the role and claims are set on every acquisition by ``use_context``)."""


class _PostgresTransaction(Transaction):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        try:
            records = await self._connection.fetch(sql, *params)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            raise pg_error(error) from None
        return [tuple(record) for record in records]


class PostgresDatabase(Database):
    """PostgreSQL through an asyncpg pool, reconnecting by itself when the server returns."""

    dialect = POSTGRES

    def __init__(self, url: str, *, pool_size: int = 10, statement_timeout_ms: int = 30_000,
                 capture: bool = True) -> None:
        self.url = url
        self._capture = "on" if capture else "off"
        # With capture on, the ledger numbers a writing transaction's changes at COMMIT under
        # a lock that is held until the transaction ends. Such a transaction commits
        # without waiting for its WAL flush (the capture trigger turns synchronous_commit
        # off when ledgerbase.flush_after_commit is on), and then a transaction that does
        # wait commits (shared by the writes committing meanwhile, ledgerbase.db.flush): its
        # commit record comes later in the WAL, so when it returns the write is on disk before
        # it is acknowledged. Holding the lock through every flush serialized all writes (0.5x
        # the writes per second of the ledger off).
        self._flush_after_commit = capture
        self._flusher = WalFlusher(self._connect_flusher)  # connects on first use
        self._pool_size = pool_size
        self._statement_timeout_ms = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._get_pool()
        except UnavailableError:
            pass  # the server starts anyway; /health/ready says 503 until PostgreSQL answers

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self.url, min_size=1, max_size=self._pool_size, timeout=5,
                        connection_class=_Connection, reset=_keep_session,
                        server_settings={
                            "timezone": "UTC", "application_name": "ledgerbase",
                            "statement_timeout": str(self._statement_timeout_ms),
                            "ledgerbase.flush_after_commit": self._capture,
                        },
                    )
                except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
                    raise pg_error(error) from None
        return self._pool

    async def _connect_flusher(self) -> asyncpg.Connection:
        connection: asyncpg.Connection = await asyncpg.connect(
            self.url, timeout=5, server_settings={
                "application_name": "ledgerbase", "statement_timeout": str(self._statement_timeout_ms)})
        return connection

    async def close(self) -> None:
        await self._flusher.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def flush_wal(self) -> None:
        """Return once every transaction committed before this call is on disk (one flush
        transaction shared with the calls made meanwhile); raises UnavailableError."""
        try:
            await self._flusher.flush()
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            raise pg_error(error) from None

    async def fetch_one(self, sql: str, params: Sequence[Any], *,
                        context: RequestContext | None = None) -> Row | None:
        rows = await self.fetch_all(sql, params, context=context)
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Sequence[Any], *,
                        context: RequestContext | None = None) -> list[Row]:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as connection:
                await connection.use_context(context, self._capture)
                records = await connection.fetch(sql, *params)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            raise pg_error(error) from None
        return [tuple(record) for record in records]

    async def fetch_all_read_only(self, sql: str, params: Sequence[Any], *,
                                  context: RequestContext | None = None) -> list[Row]:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as connection:
                await connection.use_context(context, self._capture)
                async with connection.transaction(readonly=True):
                    records = await connection.fetch(sql, *params)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            raise pg_error(error) from None
        return [tuple(record) for record in records]

    async def write(self, work: Callable[[Transaction], Awaitable[T]], *, rollback: bool = False,
                    context: RequestContext | None = None) -> T:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as connection:
                await connection.use_context(context, self._capture)
                await connection.execute("BEGIN")
                try:
                    result = await work(_PostgresTransaction(connection))
                except BaseException:
                    await connection.execute("ROLLBACK")
                    raise
                await connection.execute("ROLLBACK" if rollback else "COMMIT")
            if self._flush_after_commit and not rollback:
                await self.flush_wal()
            return result
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            raise pg_error(error) from None

    async def listen(self, channel: str, callback: Callable[[str], None]) -> asyncpg.Connection:
        """A dedicated connection calling ``callback(payload)`` on each NOTIFY on ``channel``."""
        try:
            connection = await asyncpg.connect(self.url, timeout=5)
        except (asyncpg.PostgresError, *_UNAVAILABLE) as error:
            raise pg_error(error) from None
        await connection.add_listener(channel, lambda *args: callback(str(args[-1])))
        return connection
