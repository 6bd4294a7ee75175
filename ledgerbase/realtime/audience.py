"""Which of many callers may see which changed rows: one query per table and role.

A table's ``postgres_changes`` subscribers may be thousands of users, each with their
own claims. Asking the data API once per user would cost one query per subscriber and
batch; instead, the table's SELECT policies for a role are evaluated once for every
subscriber of that role, in one statement joining the changed rows with the callers'
claims (bound as one JSON parameter), the policies' ``auth.uid()`` & co. reading each
caller's claims instead of the session's:

    SELECT caller, key FROM <callers> JOIN <changed keys> JOIN <table> WHERE <policies>

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

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlglot
import structlog
from sqlglot import exp

from ledgerbase.auth.keys import Claims
from ledgerbase.auth.policies import PolicySet
from ledgerbase.db.dialect import quote_ident
from ledgerbase.db.engine import Database
from ledgerbase.db.schema import SchemaCache, Table, TypeKind
from ledgerbase.errors import LedgerbaseError

log = structlog.get_logger("ledgerbase.realtime")

KEY_KINDS = frozenset({TypeKind.INTEGER, TypeKind.TEXT, TypeKind.UUID})
_HELPER = re.compile(r"\bauth\.(uid|role|jwt|email)\(\)")
# PostgreSQL: what auth.<name>() returns (ledgerbase.db.platform), from a caller's claims
_PG_HELPERS = {
    "uid": "((_lb_c._lb_claims ->> 'sub')::uuid)",
    "role": "(_lb_c._lb_claims ->> 'role')",
    "jwt": "(_lb_c._lb_claims)",
    "email": "(_lb_c._lb_claims ->> 'email')",
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

    async def visible(self, cache: SchemaCache, table: Table, keys: Sequence[dict[str, object]],
                      callers: Sequence[Claims]) -> list[set[int]] | None:
        """For each caller (all of one role), the indexes of ``keys`` whose rows it may select.

        None when this table and role must be answered the exact way (module docstring).
        Raises LedgerbaseError when the database fails.
        """
        if not callers:
            return []
        role = callers[0].role
        query = await self._query(cache, table, role)
        if query is None:
            return None
        if query is _ALL:
            return [set(range(len(keys))) for _ in callers]
        found: list[set[int]] = [set() for _ in callers]
        if query is _DENY or not keys:
            return found
        assert isinstance(query, Query)
        bound = [[key.get(name) for name in query.columns] for key in keys]
        members = [index for index, caller in enumerate(callers) if self._evaluable(caller)]
        if not members:
            return found
        rows_of_callers: list[Any]
        if self.sqlite:
            contexts = [(index, callers[index].context) for index in members]
            rows_of_callers = [[index, context.uid, context.role, context.claims_json, context.email]
                               for index, context in contexts]
        else:
            rows_of_callers = [{"_lb_i": index, "_lb_claims": callers[index].raw} for index in members]
        rows = await self.database.fetch_all(query.sql, (orjson.dumps(bound).decode(),
                                                         orjson.dumps(rows_of_callers).decode()))
        for caller, key in rows:
            found[int(caller)].add(int(key))
        return found

    def _evaluable(self, caller: Claims) -> bool:
        """Whether the caller's claims can be evaluated with the others: on PostgreSQL a
        ``sub`` that is no uuid makes ``auth.uid()`` fail, so that caller's read would fail
        (and it sees nothing) rather than failing everyone's."""
        if self.sqlite:
            return True
        subject = caller.raw.get("sub")
        return subject is None or (isinstance(subject, str) and _valid_uuid(subject))

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
            match = f'"_lb_t".{quote_ident(columns[0])} = "_lb_k"."_lb_v" ->> 0'
        else:
            match = " AND ".join(f'"_lb_t".{quote_ident(name)} = "_lb_k"."_lb_v" ->> {position}'
                                 for position, name in enumerate(columns))
        sql = (
            'WITH "_lb_k" AS (SELECT key AS "_lb_n", value AS "_lb_v" FROM json_each(?1)), '
            '"_lb_c" AS MATERIALIZED (SELECT value ->> 0 AS "_lb_i", value ->> 1 AS "_lb_uid", '
            'value ->> 2 AS "_lb_role", value ->> 3 AS "_lb_jwt", value ->> 4 AS "_lb_email" '
            'FROM json_each(?2)) '
            f'SELECT "_lb_c"."_lb_i", "_lb_k"."_lb_n" FROM "_lb_k" '
            f'JOIN {quote_ident(table.name)} AS "_lb_t" ON {match} '
            f'JOIN "_lb_c" ON 1 WHERE {condition}')
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
            "CROSS JOIN jsonb_to_recordset($2::jsonb) AS _lb_c(_lb_i integer, _lb_claims jsonb) "
            f"WHERE {condition}")
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
