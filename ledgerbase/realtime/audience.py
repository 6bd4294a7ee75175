"""Which of many callers may see which changed rows: one query per table and role.

A table's ``postgres_changes`` subscribers may be thousands of users, each with their
own claims. Asking the data API once per user would cost one query per subscriber and
batch; instead, the table's SELECT policies for a role are evaluated once for every
subscriber of that role, in one statement joining the changed rows with a table of the
callers' claims, the policies' ``auth.uid()`` & co. reading each caller's columns
instead of the session's:

    SELECT caller, key FROM <changed keys> JOIN <table> JOIN <callers> WHERE <policies>

The callers table is a TEMP table of a connection kept for this (``_Members``), indexed
by role and helper value and updated with the callers that came and went since the last
batch, so a policy like ``user_id = auth.uid()`` finds each row's callers by index.

- SQLite: the policies compiled for the data API (``ledgerbase.auth.policies``), so the
  answer is the data API's own, nested policies included.
- PostgreSQL: the policies as the server stores them (``pg_policy``), applicable to the
  role (``pg_has_role``) and combined as ``rowsecurity.c`` does (permissive OR-ed,
  restrictive AND-ed, none: no rows), on tables the role may SELECT. Such a rewrite is
  only exact when the policy's outcome depends on nothing but the row and the claims,
  so it is used for policies made of the row's columns, ``auth.*()``, built-in operators
  and functions, and sub-queries of tables without row-level security. A policy calling
  a function of its own (which could read the claims itself), ``current_setting`` or
  ``current_user``, or reading a table with row-level security, is answered the exact
  way instead: one data API read per distinct caller (``ledgerbase.realtime.visibility``).

Only keys of integer, text and uuid columns are matched this way (their JSON value is
the stored value on both databases); other tables take the exact way too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import sqlite3
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson
import sqlglot
import structlog
from sqlglot import exp

from ledgerbase.auth.keys import Claims
from ledgerbase.auth.policies import PolicySet
from ledgerbase.db.dialect import quote_ident
from ledgerbase.db.engine import Database, PostgresDatabase, SqliteDatabase, connect_sqlite, sqlite_error
from ledgerbase.db.schema import SchemaCache, Table, TypeKind
from ledgerbase.errors import LedgerbaseError

log = structlog.get_logger("ledgerbase.realtime")

KEY_KINDS = frozenset({TypeKind.INTEGER, TypeKind.TEXT, TypeKind.UUID})
_HELPER = re.compile(r"\bauth\.(uid|role|jwt|email)\(\)")
# PostgreSQL: what auth.<name>() returns (ledgerbase.db.platform), from a caller's claims
_PG_HELPERS = {  # columns of the callers table, filled from each caller's claims as these do
    "uid": "_lb_c._lb_uid",
    "role": "_lb_c._lb_role_claim",
    "jwt": "_lb_c._lb_claims",
    "email": "_lb_c._lb_email",
}
_SESSION_WORDS = frozenset({"current_user", "current_role", "session_user", "user"})

_PG_POLICIES = """
SELECT p.polpermissive, pg_get_expr(p.polqual, p.polrelid),
       has_table_privilege($3, c.oid, 'SELECT')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polcmd IN ('r', '*')
     AND (p.polroles = '{0}' OR EXISTS (SELECT 1 FROM unnest(p.polroles) AS r(oid)
                                        WHERE r.oid <> 0 AND pg_has_role($3, r.oid, 'USAGE')))
WHERE n.nspname = $1 AND c.relname = $2
"""
_PG_PRIVILEGE = """
SELECT bool_and(has_table_privilege($2, c.oid, 'SELECT'))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($3::text[])
"""
_DENY = object()  # the role sees no row of the table
_ALL = object()  # the role sees every row of the table (no row-level security)


@dataclass(frozen=True, slots=True)
class Query:
    """The statement answering "which (caller, key) pairs are visible" for a table and role."""

    sql: str
    columns: tuple[str, ...]  # the primary key, in the order keys are bound


def _matchable(table: Table) -> bool:
    if not table.primary_key:
        return False
    for name in table.primary_key:
        column = table.column(name)
        if column is None or column.type.kind not in KEY_KINDS:
            return False
    return True


def _valid_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class Audience:
    """Answers visibility for many callers at once, where the policies allow it."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.sqlite = database.dialect.name == "sqlite"
        self._cache_id = 0
        self._policies: PolicySet | None = None
        self._queries: dict[tuple[str, str], Query | object | None] = {}
        self._evaluable_claims: dict[str, bool] = {}
        # per role: the callers list last asked about, the positions of the evaluable ones, those
        self._prepared: dict[str, tuple[Sequence[Claims], list[int], list[Claims]]] = {}
        self._members: _Members = _SqliteMembers(database) if self.sqlite else _PostgresMembers(database)

    async def close(self) -> None:
        """Let go of the connection holding the callers."""
        await self._members.close()

    async def visible(self, cache: SchemaCache, table: Table, keys: Sequence[dict[str, object]],
                      callers: Sequence[Claims]) -> dict[int, set[int]] | bool | None:
        """Which callers (all of one role) may select which of the rows with these ``keys``:
        caller's position -> positions of its keys, for the callers that see any; True when
        every caller sees every row (no row-level security).

        None when this table and role must be answered the exact way (module docstring).
        Raises LedgerbaseError when the database fails.
        """
        if not callers:
            return {}
        role = callers[0].role
        query = await self._query(cache, table, role)
        if query is None:
            return None
        if query is _ALL:
            return True
        found: dict[int, set[int]] = {}
        if query is _DENY or not keys:
            return found
        assert isinstance(query, Query)
        bound = [[key.get(name) for name in query.columns] for key in keys]
        prepared = self._prepared.get(role)
        if prepared is None or prepared[0] is not callers:  # the same list: the same callers
            members = [index for index, caller in enumerate(callers) if self._evaluable(caller)]
            prepared = self._prepared[role] = (callers, members, [callers[index] for index in members])
        _, members, evaluable = prepared
        if not members:
            return found
        if len(members) < len(callers) and self.sqlite:
            return None  # a value SQLite would read as a number: the exact way decides
        try:
            ids, rows = await self._members.run(role, evaluable, query.sql, orjson.dumps(bound).decode())
        except _NotHere as error:
            log.warning("realtime_audience_exact", table=table.name, role=role, error=str(error))
            self._queries[(table.name, role)] = None
            return None
        position = {ids[index]: caller for index, caller in enumerate(members)}
        for member, key in rows:
            caller = position.get(int(member))
            if caller is not None:
                found.setdefault(caller, set()).add(int(key))
        return found

    def _evaluable(self, caller: Claims) -> bool:
        """Whether the caller's claims can be evaluated with the others: on PostgreSQL a
        ``sub`` that is no uuid makes ``auth.uid()`` fail, so that caller's read would fail
        (and it sees nothing) rather than failing everyone's; on SQLite, the callers table
        has numeric affinity (so its indexes serve any column's comparisons), and a value
        that looks like a number would be compared as one."""
        context = caller.context
        known = self._evaluable_claims.get(context.claims_json)
        if known is None:
            if self.sqlite:
                known = not any(_numeric(value) for value in (context.uid, context.email, context.role))
            else:
                subject = caller.raw.get("sub")
                known = subject is None or (isinstance(subject, str) and _valid_uuid(subject))
            if len(self._evaluable_claims) > 100_000:
                self._evaluable_claims.clear()
            self._evaluable_claims[context.claims_json] = known
        return known

    async def _query(self, cache: SchemaCache, table: Table, role: str) -> Query | object | None:
        if self._cache_id != id(cache):
            self._cache_id = id(cache)
            self._queries.clear()
            self._policies = PolicySet(cache) if self.sqlite else None
        key = (table.name, role)
        if key not in self._queries:
            if not _matchable(table):
                self._queries[key] = None
            elif self.sqlite:
                self._queries[key] = self._sqlite_query(table, role)
            else:
                try:
                    self._queries[key] = await self._postgres_query(cache, table, role)
                except LedgerbaseError as error:  # e.g. a role the database does not know
                    log.debug("realtime_audience_exact", table=table.name, role=role, code=error.code)
                    return None
        return self._queries[key]

    # --- SQLite ----------------------------------------------------------------------------

    def _sqlite_query(self, table: Table, role: str) -> Query | object | None:
        assert self._policies is not None
        guards = self._policies.for_role(role)
        if guards is None:
            return _ALL
        try:
            predicate = guards.using(table.name, "SELECT")
        except LedgerbaseError:  # 42P17: every read of the table fails
            return _DENY
        if predicate is None:
            return _ALL
        if predicate.denies_all:
            return _DENY
        condition = predicate.render("_lb_t", lambda name: f'"_lb_c"."_lb_{name}"')
        columns = table.primary_key
        if len(columns) == 1:
            match = f'"_lb_t".{quote_ident(columns[0])} = "_lb_k".value ->> 0'
        else:
            match = " AND ".join(f'"_lb_t".{quote_ident(name)} = "_lb_k".value ->> {position}'
                                 for position, name in enumerate(columns))
        sql = (
            'SELECT "_lb_c"."_lb_i", "_lb_k".key FROM json_each(?1) AS "_lb_k" '
            f'CROSS JOIN main.{quote_ident(table.name)} AS "_lb_t" ON {match} '
            f'CROSS JOIN temp."_lb_callers" AS "_lb_c" WHERE "_lb_c"."_lb_role" = ?2 AND ({condition})')
        return Query(sql=sql, columns=columns)

    # --- PostgreSQL ------------------------------------------------------------------------

    async def _postgres_query(self, cache: SchemaCache, table: Table, role: str) -> Query | object | None:
        schema = table.schema or cache.schema
        rows = await self.database.fetch_all(_PG_POLICIES, (schema, table.name, role))
        if not rows or not rows[0][2]:
            return _DENY  # no SELECT privilege: every read is refused
        if not table.rls:
            return _ALL
        permissive = [str(row[1]) for row in rows if row[1] is not None and row[0]]
        restrictive = [str(row[1]) for row in rows if row[1] is not None and not row[0]]
        if not permissive:
            return _DENY
        condition = "(" + " OR ".join(f"({qual})" for qual in permissive) + ")"
        condition += "".join(f" AND ({qual})" for qual in restrictive)
        condition = _HELPER.sub(lambda match: _PG_HELPERS[match.group(1)], condition)
        tables = _outside_reads(condition, schema)
        if tables is None:
            return None
        unprotected = [name for name in tables if name in cache.tables and not cache.tables[name].rls]
        if len(unprotected) != len(tables):
            return None
        if tables:
            allowed = await self.database.fetch_one(_PG_PRIVILEGE, (schema, role, sorted(tables)))
            if allowed is None or not allowed[0]:
                return None  # the policy's own reads would be refused: the exact way decides
        qualified = f"{quote_ident(schema)}.{quote_ident(table.name)}"
        match = " AND ".join(
            f"{qualified}.{quote_ident(name)} = (_lb_k._lb_v ->> {position})::{table.column(name).type.name}"  # type: ignore[union-attr]
            for position, name in enumerate(table.primary_key))
        sql = (
            "SELECT _lb_c._lb_i, _lb_k._lb_n - 1 "
            "FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS _lb_k(_lb_v, _lb_n) "
            f"JOIN {qualified} ON {match} "
            "CROSS JOIN pg_temp._lb_callers AS _lb_c "
            f"WHERE _lb_c._lb_role = $2 AND ({condition})")
        return Query(sql=sql, columns=table.primary_key)


def _outside_reads(condition: str, schema: str) -> set[str] | None:
    """The tables a PostgreSQL policy condition reads; None when its outcome may depend on
    more than the row and the claims (functions of its own, session settings)."""
    try:
        parsed = sqlglot.parse_one(f"SELECT 1 WHERE {condition}", read="postgres")
    except sqlglot.errors.ParseError:
        return None
    tables: set[str] = set()
    for node in parsed.walk():
        if isinstance(node, exp.Anonymous):
            return None  # a function sqlglot does not know: possibly the user's own
        if isinstance(node, (exp.CurrentUser, exp.CurrentSchema)):
            return None
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in _SESSION_WORDS:
            return None
        if isinstance(node, exp.Table):
            if node.db and node.db != schema:
                return None
            tables.add(node.name)
    return tables


def _numeric(value: str | None) -> bool:
    if value is None:
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


class _NotHere(Exception):
    """The statement cannot run this way (a function the check does not know, say)."""


class _Members:
    """The callers of the current batch, kept in a table of a connection of its own
    (indexed by role and helper value, so a policy like ``user_id = auth.uid()`` finds a
    row's callers by index) and brought up to date with each batch's callers, so that
    a batch costs the callers that came and went, not every caller."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, int]] = {}  # role -> claims -> row in the callers table
        self._last: dict[str, tuple[Sequence[Claims], list[int]]] = {}  # role -> callers, their rows
        self._next = 1
        self._lock = asyncio.Lock()

    async def run(self, role: str, callers: Sequence[Claims], sql: str,
                  keys_json: str) -> tuple[list[int], list[tuple[Any, ...]]]:
        """Bring ``role``'s callers up to date and run ``sql``: each caller's row id, and the
        rows found. Raises LedgerbaseError when the database fails, _NotHere when it refuses."""
        async with self._lock:
            last = self._last.get(role)
            if last is not None and last[0] is callers and role in self._ids:
                try:  # the same callers as last time: nothing to bring up to date
                    return last[1], await self._apply(role, [], [], sql, keys_json, analyze=False)
                except BaseException:
                    self._ids.clear()
                    self._last.clear()
                    await self._forget()
                    raise
            current = self._ids.setdefault(role, {})
            wanted = {caller.context.claims_json: caller for caller in callers}
            gone = [current.pop(key) for key in [key for key in current if key not in wanted]]
            added: list[tuple[int, Claims]] = []
            for key, caller in wanted.items():
                if key not in current:
                    current[key] = self._next
                    added.append((self._next, caller))
                    self._next += 1
            ids = [current[caller.context.claims_json] for caller in callers]
            try:
                rows = await self._apply(role, gone, added, sql, keys_json,
                                         analyze=len(gone) + len(added) > len(current) // 10)
            except BaseException:
                self._ids.clear()  # the table's content is unknown now: start again next time
                self._last.clear()
                await self._forget()
                raise
            self._last[role] = (callers, ids)
            return ids, rows

    async def _apply(self, role: str, gone: list[int], added: list[tuple[int, Claims]], sql: str,
                     keys_json: str, *, analyze: bool) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _forget(self) -> None:
        """Drop the connection (its table goes with it)."""

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            self._ids.clear()
            self._last.clear()
            await self._forget()


class _SqliteMembers(_Members):
    """A read-only connection of its own, on a thread of its own, with a TEMP table."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        assert isinstance(database, SqliteDatabase)
        self._path = database.path
        self._connection: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledgerbase-audience")

    async def _apply(self, role: str, gone: list[int], added: list[tuple[int, Claims]], sql: str,
                     keys_json: str, *, analyze: bool) -> list[tuple[Any, ...]]:
        rows = [(number, caller.context.role, caller.context.uid, caller.context.claims_json,
                 caller.context.email) for number, caller in added]
        work = functools.partial(self._work, [(number,) for number in gone], rows, sql, (keys_json, role))
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    def _work(self, gone: list[tuple[int]], added: list[tuple[Any, ...]], sql: str,
              params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            connection = self._connection
            if connection is None:
                connection = self._connection = connect_sqlite(self._path, readonly=True)
                connection.execute("PRAGMA temp_store=MEMORY")
                connection.execute(_SQLITE_CALLERS)
                connection.execute('CREATE INDEX temp."_lb_callers_uid" ON "_lb_callers" ("_lb_role", "_lb_uid")')
                connection.execute('CREATE INDEX temp."_lb_callers_email" ON "_lb_callers" ("_lb_role", "_lb_email")')
            if gone or added:
                connection.execute("BEGIN")
                connection.executemany('DELETE FROM temp."_lb_callers" WHERE "_lb_i" = ?', gone)
                connection.executemany('INSERT INTO temp."_lb_callers" VALUES (?, ?, ?, ?, ?)', added)
                connection.execute("COMMIT")
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError as error:
            if "no such" in str(error) or "syntax" in str(error):
                raise _NotHere(str(error)) from None
            raise sqlite_error(error) from None
        except sqlite3.Error as error:
            raise sqlite_error(error) from None

    async def _forget(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, connection.close)


_SQLITE_CALLERS = ('CREATE TEMP TABLE "_lb_callers" ("_lb_i" INTEGER PRIMARY KEY, "_lb_role" NUMERIC, '
                   '"_lb_uid" NUMERIC, "_lb_jwt" NUMERIC, "_lb_email" NUMERIC)')
_PG_CALLERS = [
    "CREATE TEMP TABLE _lb_callers (_lb_i integer PRIMARY KEY, _lb_role text NOT NULL, _lb_claims jsonb, "
    "_lb_uid uuid, _lb_email text, _lb_role_claim text)",
    "CREATE INDEX ON pg_temp._lb_callers (_lb_role, _lb_uid)",
    "CREATE INDEX ON pg_temp._lb_callers (_lb_role, _lb_email)",
]
_PG_ADD = """
INSERT INTO pg_temp._lb_callers (_lb_i, _lb_role, _lb_claims, _lb_uid, _lb_email, _lb_role_claim)
SELECT x.i, x.r, x.c, (x.c ->> 'sub')::uuid, x.c ->> 'email', x.c ->> 'role'
FROM jsonb_to_recordset($1::jsonb) AS x(i integer, r text, c jsonb)
"""


class _PostgresMembers(_Members):
    """A connection of its own (not from the pool), as Ledgerbase's login role, with a TEMP table."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        assert isinstance(database, PostgresDatabase)
        self._url = database.url
        self._connection: Any = None

    async def _apply(self, role: str, gone: list[int], added: list[tuple[int, Claims]], sql: str,
                     keys_json: str, *, analyze: bool) -> list[tuple[Any, ...]]:
        import asyncpg

        try:
            connection = self._connection
            if connection is None:
                connection = self._connection = await asyncpg.connect(self._url, timeout=10)
                for statement in _PG_CALLERS:
                    await connection.execute(statement)
            if gone:
                await connection.execute("DELETE FROM pg_temp._lb_callers WHERE _lb_i = ANY($1::integer[])", gone)
            if added:
                await connection.execute(_PG_ADD, orjson.dumps(
                    [{"i": number, "r": caller.role, "c": caller.raw} for number, caller in added]).decode())
            if analyze:
                await connection.execute("ANALYZE pg_temp._lb_callers")  # temp tables get no autovacuum
            return [tuple(row) for row in await connection.fetch(sql, keys_json, role)]
        except asyncpg.PostgresError as error:
            state = str(getattr(error, "sqlstate", "") or "")
            if state.startswith(("42", "0A")):
                raise _NotHere(f"{state}: {error}") from None
            raise LedgerbaseError(str(error), code=state or "PGRST000", status=503) from None
        except (OSError, asyncpg.InterfaceError) as error:
            raise LedgerbaseError(f"the database is unavailable: {error}", code="PGRST000", status=503) from None

    async def _forget(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=5)
