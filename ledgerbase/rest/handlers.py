"""The data API's request pipeline: route -> parse -> plan -> compile (cached) -> execute -> respond."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson

from ledgerbase.auth.keys import Claims
from ledgerbase.auth.policies import Command, Guards, PolicySet, Predicate
from ledgerbase.db.context import RequestContext
from ledgerbase.db.engine import Database, Transaction
from ledgerbase.db.schema import Column, SchemaCache, Table
from ledgerbase.db.values import coerce_json, coerce_text, to_sqlite
from ledgerbase.errors import AuthError, LedgerbaseError, UnavailableError
from ledgerbase.ledger.capture import LedgerMark
from ledgerbase.rest import mutate
from ledgerbase.rest.compile import Statement, compile_planned_count, compile_read
from ledgerbase.rest.exchange import Incoming, Reply
from ledgerbase.rest.parse import parse_request, query_shape, split_query
from ledgerbase.rest.plan import ReadNode, plan_read, resolve_column, resolve_table
from ledgerbase.rest.request import ApiRequest, Condition, MediaType, ReturnPref
from ledgerbase.rest.responses import (
    CONTENT_TYPES,
    content_range,
    parse_csv_body,
    range_status,
    singular,
    to_csv,
)
from ledgerbase.rest.rpc import call_function

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_URL_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*")
KNOWN_METHODS = WRITE_METHODS | {"GET", "HEAD", "OPTIONS"}


class StatementCache:
    """Compiled statements by request shape, dropped whenever the schema changes."""

    def __init__(self, limit: int = 2048) -> None:
        self._entries: dict[Any, Any] = {}
        self._limit = limit

    def get_or_build(self, key: Any, build: Callable[[], Any]) -> Any:
        """The cached value for ``key``, building (and caching) it on a miss."""
        found = self._entries.get(key)
        if found is None:
            found = build()
            self.put(key, found)
        return found

    def get(self, key: Any) -> Any:
        """The cached value for ``key``, or None."""
        return self._entries.get(key)

    def put(self, key: Any, value: Any) -> None:
        """Cache ``value`` under ``key`` (forgetting everything when full)."""
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = value

    def clear(self) -> None:
        """Forget everything (the schema changed)."""
        self._entries.clear()


class _ReadPlan(NamedTuple):
    """A parsed read (its shape: ``values`` are one request's) with its plan and statement."""

    request: ApiRequest
    node: ReadNode
    statement: Statement


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request runs for: its role and claims, and (SQLite) the policies to compile in."""

    role: str
    context: RequestContext
    guards: Guards | None  # None: no row-level policies to compile (PostgreSQL, service_role)


class DataApi:
    """The PostgREST-compatible pipeline over one database and its schema cache."""

    def __init__(self, database: Database, schema: Callable[[], SchemaCache], *,
                 anon_writes_without_rls: bool = False) -> None:
        self.database = database
        self._schema = schema
        self.statements = StatementCache()
        self.dialect = database.dialect
        self.sqlite = database.dialect.name == "sqlite"
        self.anon_writes_without_rls = anon_writes_without_rls
        self._policies: tuple[int, PolicySet] | None = None
        self.ledger_mark: LedgerMark | None = None  # set when the ledger captures writes

    def schema(self) -> SchemaCache:
        """The schema cache in use."""
        return self._schema()

    def caller(self, cache: SchemaCache, claims: Claims) -> Caller:
        """The caller of a request: PostgreSQL runs it as its role; SQLite compiles the policies."""
        guards = None
        if self.sqlite:
            if self._policies is None or self._policies[0] != id(cache):
                self._policies = (id(cache), PolicySet(cache))
            guards = self._policies[1].for_role(claims.role)
        return Caller(role=claims.role, context=claims.context, guards=guards)

    async def handle(self, incoming: Incoming) -> Reply:
        """Answer one request below ``/rest/v1``; raises LedgerbaseError for error replies."""
        try:
            return await self._handle(incoming)
        except LedgerbaseError as error:
            if error.code == "42501" and incoming.claims.role == "anon":
                error.status = 401  # as PostgREST: insufficient privilege without a user is 401
            raise

    async def _handle(self, incoming: Incoming) -> Reply:
        cache = self._schema()
        for header in ("accept-profile", "content-profile"):
            profile = incoming.headers.get(header)
            if profile is not None and profile != cache.schema:
                raise LedgerbaseError(f"The schema must be one of the following: {cache.schema}",
                                      code="PGRST106", status=406)
        if incoming.method not in KNOWN_METHODS:
            raise LedgerbaseError(f"Unsupported HTTP method: {incoming.method}", code="PGRST117",
                                  status=405)
        if not cache.loaded:
            raise UnavailableError("Could not query the database for the schema cache. Retrying.",
                                   code="PGRST002")
        path = incoming.path.strip("/")
        method = incoming.method
        caller = self.caller(cache, incoming.claims)
        if path.startswith("rpc/"):
            return await call_function(self, cache, path[4:], incoming, caller)
        if "/" in path or not path:
            raise LedgerbaseError(f'relation "{cache.schema}.{path}" does not exist', code="42P01",
                                  status=404)
        table = resolve_table(cache, path)
        if method == "OPTIONS":
            allow = "OPTIONS,GET,HEAD"
            if table.insertable:
                allow += ",POST,PUT,PATCH,DELETE" if table.primary_key else ",POST,PATCH,DELETE"
            return Reply(200, headers={"Allow": allow})
        if method not in ("GET", "HEAD") and method not in WRITE_METHODS:
            raise LedgerbaseError(f"Unsupported HTTP method: {method}", code="PGRST117", status=405)
        query = split_query(incoming.query_string)
        if method in ("GET", "HEAD"):
            return await self._read(cache, table, incoming, query, caller)
        request = self._parse(table, incoming, query)
        if caller.role == "anon" and not table.rls and not self.anon_writes_without_rls:
            raise AuthError(f"permission denied for table {table.name}", code="42501", status=401,
                            hint="anon may only read tables without row-level security")
        if method == "POST":
            return await self._insert(cache, table, request, incoming, caller)
        if method == "PUT":
            return await self._put(cache, table, request, incoming, caller)
        if method == "PATCH":
            return await self._update(cache, table, request, incoming, caller)
        return await self._delete(cache, table, request, caller)

    # --- reads --------------------------------------------------------------------------

    def _parse(self, table: Table, incoming: Incoming, query: list[tuple[str, str]]) -> ApiRequest:
        headers = incoming.headers
        return parse_request(incoming.method, table.name, is_rpc=False, query=query, headers=headers,
                             prefer=[headers["prefer"]] if "prefer" in headers else [])

    def _read_statement(self, cache: SchemaCache, table: Table, request: ApiRequest,
                        caller: Caller) -> tuple[ReadNode, Statement]:
        count = request.preferences.count is not None and not self._planned(request)

        def build() -> tuple[ReadNode, Statement]:
            node = plan_read(cache, table, request)
            return node, compile_read(self.dialect, node, count=count, guards=caller.guards)

        result: tuple[ReadNode, Statement] = self.statements.get_or_build(
            ("read", id(cache), request, caller.role), build)
        return result

    async def _read(self, cache: SchemaCache, table: Table, incoming: Incoming,
                    query: list[tuple[str, str]], caller: Caller) -> Reply:
        """A table read. Its shape (``query_shape``) finds an earlier read's request and statement,
        sparing the parse, once a full parse has shown that shape to give the values it takes out."""
        shape = query_shape(query)
        key: tuple[Any, ...] | None = None
        if shape is not None:
            headers = incoming.headers
            key = ("shape", id(cache), table.name, incoming.method, caller.role, shape[0],
                   headers.get("accept"), headers.get("prefer"), headers.get("range"),
                   headers.get("range-unit"))
            known: _ReadPlan | None = self.statements.get(key)
            if known is not None:
                return await self._answer_read(cache, known, shape[1], query, caller)
        request = self._parse(table, incoming, query)
        node, statement = self._read_statement(cache, table, request, caller)
        plan = _ReadPlan(request, node, statement)
        if key is not None and shape is not None and shape[1] == request.values \
                and not self._planned(request):
            self.statements.put(key, plan)
        return await self._answer_read(cache, plan, request.values, query, caller)

    async def _answer_read(self, cache: SchemaCache, plan: _ReadPlan, values: tuple[object, ...],
                           query: list[tuple[str, str]], caller: Caller) -> Reply:
        request, node, statement = plan
        row = await self.database.fetch_one(statement.sql, statement.bind(values, caller.context),
                                            context=caller.context)
        assert row is not None
        total, page_total, body = row[0], int(row[1]), str(row[2])
        if self._planned(request):
            total = await self._planned_total(cache, node, request, caller)
        return self.page_reply(request, node, page_total, total, body,
                               {"Content-Location": _content_location(request.target, query)}, values)

    def page_reply(self, request: ApiRequest, node: ReadNode, page_total: int, total: int | None,
                   body: str, headers: dict[str, str], values: tuple[object, ...] | None = None) -> Reply:
        """A page of rows with PostgREST's Content-Range, 206 and 416 (``values``: the request's)."""
        if values is None:
            values = request.values
        first = int(values[node.offset_slot]) if node.offset_slot is not None else 0  # type: ignore[call-overload]
        status = range_status(first, page_total, total)
        headers["Content-Range"] = content_range(first, page_total, total)
        applied = request.preferences.applied("count", "tx", "handling")
        if applied:
            headers["Preference-Applied"] = applied
        if status == 416:
            raise LedgerbaseError(
                "Requested range not satisfiable", code="PGRST103", status=416,
                details=f"An offset of {first} was requested, but there are only {total} rows.",
                headers={"Content-Range": f"*/{total}"},
            )
        payload = self.format_rows(body, page_total, node, request.media_type)
        headers["Content-Type"] = CONTENT_TYPES[request.media_type]
        if request.method == "HEAD":
            return Reply(status, b"", headers)
        return Reply(status, payload, headers)

    def _planned(self, request: ApiRequest) -> bool:
        """``count=planned`` (and ``estimated``) use the planner's estimate on PostgreSQL.

        SQLite keeps no row estimates, so there both give the exact count.
        """
        return not self.sqlite and request.preferences.count in ("planned", "estimated")

    async def _planned_total(self, cache: SchemaCache, node: ReadNode, request: ApiRequest,
                             caller: Caller) -> int:
        statement = self.statements.get_or_build(
            ("planned", id(cache), request), lambda: compile_planned_count(self.dialect, node))
        row = await self.database.fetch_one(statement.sql, statement.bind(request.values),
                                            context=caller.context)
        plan = orjson.loads(row[0]) if row else [{}]
        if isinstance(plan, str):
            plan = orjson.loads(plan)
        return int(plan[0].get("Plan", {}).get("Plan Rows", 0))

    def format_rows(self, body: str, rows: int, node: ReadNode, media: MediaType) -> bytes:
        if media is MediaType.OBJECT:
            return singular(body, rows).encode()
        if media is MediaType.CSV:
            return to_csv(body, node).encode()
        return body.encode()

    # --- writes -------------------------------------------------------------------------

    def _payload_rows(self, incoming: Incoming, request: ApiRequest) -> list[dict[str, Any]]:
        content_type = incoming.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type == "text/csv":
            return parse_csv_body(incoming.body.decode("utf-8", "replace"))
        if content_type not in ("application/json", "", "application/vnd.pgrst.object+json",
                                "application/x-www-form-urlencoded"):
            raise LedgerbaseError(f"Content-Type not acceptable: {content_type}", code="PGRST107",
                                  status=415)
        if content_type == "application/x-www-form-urlencoded":
            return [dict(split_query(incoming.body.decode("utf-8", "replace")))]
        try:
            data = orjson.loads(incoming.body) if incoming.body.strip() else None
        except orjson.JSONDecodeError:
            raise LedgerbaseError("Empty or invalid json", code="PGRST102") from None
        if isinstance(data, dict):
            return [data]
        if isinstance(data, list):
            if all(isinstance(item, dict) for item in data):
                return data
            raise LedgerbaseError("All object keys must match", code="PGRST102")
        raise LedgerbaseError("Empty or invalid json", code="PGRST102")

    def _write_columns(self, table: Table, request: ApiRequest,
                       rows: list[dict[str, Any]]) -> tuple[Column, ...]:
        if request.columns is not None:
            names: tuple[str, ...] = request.columns
        elif rows:
            names = tuple(rows[0])
            for row in rows[1:]:
                if row.keys() != rows[0].keys():
                    raise LedgerbaseError("All object keys must match", code="PGRST102")
        else:
            names = ()
        columns = []
        for name in names:
            column = table.column(name)
            if column is None:
                raise LedgerbaseError(
                    f"Could not find the '{name}' column of '{table.name}' in the schema cache",
                    code="PGRST204")
            columns.append(column)
        return tuple(columns)

    def _returned_node(self, cache: SchemaCache, table: Table, request: ApiRequest) -> ReadNode | None:
        if request.preferences.return_ is not ReturnPref.REPRESENTATION:
            return None
        return plan_read(cache, table, request)

    async def _put(self, cache: SchemaCache, table: Table, request: ApiRequest,
                   incoming: Incoming, caller: Caller) -> Reply:
        """PUT: insert or replace the one row the primary key filters name (as PostgREST)."""
        top = request.node(())
        if top is not None and (top.limit_slot is not None or top.offset_slot is not None):
            raise LedgerbaseError("limit/offset querystring parameters are not allowed for PUT",
                                  code="PGRST114")
        filters = top.filters if top is not None else ()
        keyed = {f.field.name: f for f in filters
                 if isinstance(f, Condition) and f.operator == "eq" and not f.negated
                 and f.quantifier is None and not f.field.path}
        if (not table.primary_key or len(keyed) != len(filters)
                or set(keyed) != set(table.primary_key) or len(request.nodes) > 1):
            raise LedgerbaseError("Filters must include all and only primary key columns with 'eq' operators",
                                  code="PGRST105", status=405)
        rows = self._payload_rows(incoming, request)[:1]
        columns = self._write_columns(table, request, rows)
        for name, condition in keyed.items():
            column = resolve_column(table, name)
            given = rows[0].get(name) if rows else None
            wanted = coerce_text(column.type, str(request.values[condition.slot]))
            if given is None or coerce_json(column.type, given) != wanted:
                raise LedgerbaseError("Payload values do not match URL in primary key column(s)",
                                      code="PGRST115")
        prefs = replace(request.preferences, resolution="merge-duplicates")
        upsert = replace(request, preferences=prefs, on_conflict=table.primary_key,
                         nodes=tuple(n for n in request.nodes if n.path))
        node = self._returned_node(cache, table, upsert)
        affected, inserted, bodies, _ = await self._write_rows(table, upsert, node, rows, columns, caller)
        headers: dict[str, str] = {}
        applied = request.preferences.applied("return", "count", "tx", "handling")
        if applied:
            headers["Preference-Applied"] = applied
        if node is None:
            return Reply(204, b"", headers)
        headers["Content-Type"] = CONTENT_TYPES[request.media_type]
        _add_ledger_seq(headers)
        return Reply(201 if inserted > 0 else 200,
                     self.format_rows(_merge_arrays(bodies), affected, node, request.media_type), headers)

    async def _insert(self, cache: SchemaCache, table: Table, request: ApiRequest,
                      incoming: Incoming, caller: Caller) -> Reply:
        rows = self._payload_rows(incoming, request)
        columns = self._write_columns(table, request, rows)
        prefs = request.preferences
        if request.on_conflict is not None:
            for name in request.on_conflict:
                if table.column(name) is None:
                    raise LedgerbaseError(f"column {table.name}.{name} does not exist", code="42703")
        node = self._returned_node(cache, table, request)
        if prefs.resolution is not None and not (request.on_conflict or table.primary_key):
            # PostgREST ignores a resolution it has no key for
            request = replace(request, preferences=replace(prefs, resolution=None, given=tuple(
                item for item in prefs.given if item[0] != "resolution")))
            prefs = request.preferences
        affected, inserted, bodies, location = await self._write_rows(table, request, node, rows, columns,
                                                                      caller)
        status = 200 if prefs.resolution == "merge-duplicates" and inserted <= 0 else 201
        headers = {"Content-Range": "*/" + (str(affected) if prefs.count else "*")}
        if location and table.primary_key and prefs.return_ is ReturnPref.HEADERS_ONLY:
            keys = orjson.loads(location)
            headers["Location"] = f"/{quote(table.name)}?" + "&".join(
                f"{quote(column, safe='')}={quote(f'eq.{value}', safe='')}"
                for column, value in zip(table.primary_key, keys, strict=True))
        keys_applied = ["missing", "return", "count", "tx", "handling"]
        if table.primary_key or request.on_conflict:
            keys_applied.append("resolution")
        return self._write_reply(status, request, node, affected, _merge_arrays(bodies), headers,
                                 keys_applied)

    async def _write_rows(self, table: Table, request: ApiRequest, node: ReadNode | None,
                          rows: list[dict[str, Any]], columns: tuple[Column, ...], caller: Caller
                          ) -> tuple[int, int, list[str], str | None]:
        """Insert (or upsert) ``rows``; returns (affected, inserted, bodies, location key)."""
        prefs = request.preferences
        groups = _group_rows(rows, columns, missing_default=prefs.missing_default)
        if not columns and rows:
            # every column takes its default: one row at a time, as DEFAULT VALUES inserts one
            groups = [((), [row]) for row in rows]
        elif not rows:
            groups = []

        async def work(tx: Transaction) -> tuple[int, int, list[str], str | None]:
            affected = inserted = 0
            bodies: list[str] = []
            location: str | None = None
            for group_columns, group_rows in groups:
                if self.sqlite:
                    outcome = await self._sqlite_insert(tx, table, request, node, group_columns,
                                                        group_rows, caller)
                else:
                    outcome = await self._pg_insert(tx, table, request, node, group_columns, group_rows)
                affected += outcome[0]
                inserted += outcome[1]
                if outcome[2] is not None:
                    bodies.append(outcome[2])
                location = location or outcome[3]
            return affected, inserted, bodies, location

        return await self._run_write(request, work, caller)

    async def _pg_insert(self, tx: Transaction, table: Table, request: ApiRequest,
                         node: ReadNode | None, columns: tuple[Column, ...],
                         rows: list[dict[str, Any]]) -> tuple[int, int, str | None, str | None]:
        names = tuple(c.name for c in columns)
        prefs = request.preferences
        statement = self.statements.get_or_build(
            ("insert", id(self._schema()), request, names),
            lambda: mutate.pg_insert(self.dialect, table, names, len(request.values), node,
                                     on_conflict=request.on_conflict, resolution=prefs.resolution,
                                     location=prefs.return_ is ReturnPref.HEADERS_ONLY))
        payload = orjson.dumps([{name: row.get(name) for name in names} for row in rows]).decode()
        result = await tx.fetch_all(statement.sql, statement.bind(request.values + (payload,)))
        affected, inserted, body, location = result[0]
        return int(affected), int(inserted or 0), body, location

    async def _sqlite_insert(self, tx: Transaction, table: Table, request: ApiRequest,
                             node: ReadNode | None, columns: tuple[Column, ...],
                             rows: list[dict[str, Any]], caller: Caller
                             ) -> tuple[int, int, str | None, str | None]:
        names = tuple(c.name for c in columns)
        prefs = request.preferences
        data = [[to_sqlite(c.type, coerce_json(c.type, row.get(c.name))) for c in columns]
                for row in rows]
        payload = orjson.dumps(data, default=str).decode()
        values = request.values + (payload,)
        slot = len(request.values)
        guards = caller.guards if caller.guards is not None and caller.guards.protects(table.name) else None
        # returned columns (a body, a Location, an upsert's outcome) must be readable
        visible = (node is not None or prefs.resolution is not None
                   or prefs.return_ is ReturnPref.HEADERS_ONLY)
        key = request.on_conflict or table.primary_key
        keyed = prefs.resolution is not None and all(k in names for k in key)
        merge = prefs.resolution == "merge-duplicates" and keyed
        refused: list[tuple[int, bool]] = []  # (index of the proposed row, refused by USING)
        if guards is not None and (checks := self._checks(table, guards, "INSERT", visible=visible)):
            # PostgreSQL checks each proposed row before its constraints and conflicts (an
            # upsert: the rows it will insert; the rows it updates are checked below)
            proposed = self.statements.get_or_build(
                ("proposed", id(self._schema()), table.name, caller.role, names, visible, merge, key),
                lambda: mutate.sqlite_proposed_inserts(self.dialect, table, guards, names, 0, checks,
                                                       unless_existing=key if merge else None))
            first = (await tx.fetch_all(proposed.sql, proposed.bind((payload,), caller.context)))[0][0]
            if first is not None:
                refused.append((int(first), False))
        existing: list[int] = []
        if keyed:
            conflicting = mutate.sqlite_conflicting(self.dialect, table, key, names, slot,
                                                    guards if merge else None)
            found, denied = (await tx.fetch_all(conflicting.sql, conflicting.bind(values, caller.context)))[0]
            existing = orjson.loads(found)
            if denied is not None:
                refused.append((int(denied), True))
        if refused:
            index, by_using = min(refused)
            await self._sqlite_rows_before(tx, table, request, names, slot, data[:index])
            raise _policy_violation(table, using=by_using)
        statement = self.statements.get_or_build(
            ("insert", id(self._schema()), request, names),
            lambda: mutate.sqlite_insert(self.dialect, table, names, slot,
                                         on_conflict=request.on_conflict,
                                         resolution=prefs.resolution))
        rowids = [row[0] for row in await tx.fetch_all(statement.sql, statement.bind(values))]
        affected = len(rowids)
        inserted = max(0, len(rows) - len(existing)) if prefs.resolution != "ignore-duplicates" else affected
        ids = orjson.dumps(rowids).decode()
        if guards is not None and merge and existing:
            # the rows an upsert updated: their new versions against the UPDATE policies
            updated = set(existing)
            await self._sqlite_check(tx, table, guards, caller,
                                     orjson.dumps([r for r in rowids if r in updated]).decode(), "UPDATE",
                                     visible=visible)
        body = await self._sqlite_render(tx, node, request, ids, caller)
        location = None
        if table.primary_key and rowids and prefs.return_ is ReturnPref.HEADERS_ONLY:
            keys = mutate.sqlite_keys(self.dialect, table, 0)
            location = (await tx.fetch_all(keys.sql, keys.bind((ids,))))[0][0]
        return affected, inserted, body, location

    async def _sqlite_rows_before(self, tx: Transaction, table: Table, request: ApiRequest,
                                  names: tuple[str, ...], slot: int, rows: list[list[Any]]) -> None:
        """Insert the rows before the first one a policy refuses, so that their own errors come
        first, as PostgreSQL meets them row by row (its foreign keys are checked at the end of
        the statement, after the policy violation: those are not reported)."""
        if not rows:
            return
        prefs = request.preferences
        statement = self.statements.get_or_build(
            ("insert", id(self._schema()), request, names),
            lambda: mutate.sqlite_insert(self.dialect, table, names, slot, on_conflict=request.on_conflict,
                                         resolution=prefs.resolution))
        try:
            await tx.fetch_all(statement.sql, statement.bind(request.values + (orjson.dumps(rows).decode(),)))
        except LedgerbaseError as error:
            if error.code != "23503":
                raise

    @staticmethod
    def _checks(table: Table, guards: Guards, command: Command, *, visible: bool) -> tuple[Predicate, ...]:
        """What a row written by ``command`` must satisfy: WITH CHECK, and the SELECT policies
        when the statement returns its rows (``visible``)."""
        return tuple(check for check in (guards.check(table.name, command),
                                         guards.using(table.name, "SELECT") if visible else None)
                     if check is not None)

    async def _sqlite_check(self, tx: Transaction, table: Table, guards: Guards, caller: Caller,
                            ids: str, command: Command, *, visible: bool) -> None:
        """Refuse (42501) when a row just written fails ``_checks``."""
        checks = self._checks(table, guards, command, visible=visible)
        if not checks or ids == "[]":
            return
        statement = self.statements.get_or_build(
            ("check", id(self._schema()), table.name, caller.role, command, visible),
            lambda: mutate.sqlite_violations(self.dialect, table, guards, 0, checks))
        if (await tx.fetch_all(statement.sql, statement.bind((ids,), caller.context)))[0][0]:
            raise _policy_violation(table)

    async def _sqlite_render(self, tx: Transaction, node: ReadNode | None, request: ApiRequest,
                             ids: str, caller: Caller) -> str | None:
        if node is None:
            return None
        render = mutate.sqlite_render(self.dialect, node, len(request.values), caller.guards)
        return str((await tx.fetch_all(render.sql, render.bind(request.values + (ids,),
                                                               caller.context)))[0][0])

    async def _update(self, cache: SchemaCache, table: Table, request: ApiRequest,
                      incoming: Incoming, caller: Caller) -> Reply:
        _check_limited(request)
        rows = self._payload_rows(incoming, request)
        if len(rows) > 1:
            raise LedgerbaseError("Empty or invalid json", code="PGRST102",
                                  details="PATCH takes one JSON object.")
        columns = self._write_columns(table, request, rows[:1])
        node = plan_read(cache, table, request)
        want_body = request.preferences.return_ is ReturnPref.REPRESENTATION
        if not columns or not rows:
            return self._write_reply(200, request, node if want_body else None, 0, "[]",
                                     {"Content-Range": "*/*"}, ["return"])
        values = rows[0] if rows else {}
        defaults: tuple[Column, ...] = ()
        if request.preferences.missing_default:
            defaults = tuple(c for c in columns if c.name not in values)
            columns = tuple(c for c in columns if c.name in values)
        names = tuple(c.name for c in columns)

        async def work(tx: Transaction) -> tuple[int, int, list[str], str | None]:
            if not self.sqlite:
                statement = mutate.pg_update(self.dialect, table, names, len(request.values), node,
                                             want_body=want_body,
                                             defaults=tuple(c.name for c in defaults))
                payload = orjson.dumps({n: values.get(n) for n in names}).decode()
                affected, _, body, _ = (await tx.fetch_all(
                    statement.sql, statement.bind(request.values + (payload,))))[0]
                return int(affected), 0, [body] if body is not None else [], None
            reads = mutate.reads_columns(node, want_body)
            ids = await self._sqlite_rowids(tx, table, node, request, caller, "UPDATE", reads)
            coerced = tuple(to_sqlite(c.type, coerce_json(c.type, values.get(c.name))) for c in columns)
            base = len(request.values)
            guards = caller.guards
            if guards is not None and guards.protects(table.name):
                # the new rows, before writing them (PostgreSQL checks before constraints)
                checks = self._checks(table, guards, "UPDATE", visible=reads)
                if checks:
                    proposed = mutate.sqlite_proposed_updates(self.dialect, table, guards, names, base,
                                                              base + len(coerced), defaults, checks)
                    if (await tx.fetch_all(proposed.sql, proposed.bind(request.values + coerced + (ids,),
                                                                       caller.context)))[0][0]:
                        raise _policy_violation(table)
            update = mutate.sqlite_update(self.dialect, table, names, base, base + len(coerced),
                                          defaults)
            changed = await tx.fetch_all(update.sql, update.bind(request.values + coerced + (ids,)))
            # an update of an integer primary key moves the row to a new rowid
            new_ids = orjson.dumps([row[0] for row in changed]).decode()
            body = await self._sqlite_render(tx, node if want_body else None, request, new_ids, caller)
            return len(changed), 0, [body] if body is not None else [], None

        affected, _, bodies, _ = await self._run_write(request, work, caller)
        total = str(affected) if request.preferences.count else "*"
        headers = {"Content-Range": f"0-{affected - 1}/{total}" if affected else f"*/{total}"}
        return self._write_reply(200, request, node if want_body else None, affected,
                                 _merge_arrays(bodies), headers,
                                 ["missing", "return", "count", "tx", "handling", "max-affected"])

    async def _sqlite_rowids(self, tx: Transaction, table: Table, node: ReadNode,
                             request: ApiRequest, caller: Caller, command: Command, reads: bool) -> str:
        statement = self.statements.get_or_build(
            ("rowids", id(self._schema()), request, caller.role, command, reads),
            lambda: mutate.sqlite_target_rowids(self.dialect, table, node, caller.guards, command,
                                                reads_rows=reads))
        return str((await tx.fetch_all(statement.sql, statement.bind(request.values, caller.context)))[0][0])

    async def _delete(self, cache: SchemaCache, table: Table, request: ApiRequest,
                      caller: Caller) -> Reply:
        _check_limited(request)
        node = plan_read(cache, table, request)
        want_body = request.preferences.return_ is ReturnPref.REPRESENTATION

        async def work(tx: Transaction) -> tuple[int, int, list[str], str | None]:
            if not self.sqlite:
                statement = mutate.pg_delete(self.dialect, table, node, want_body=want_body)
                affected, _, body, _ = (await tx.fetch_all(statement.sql,
                                                           statement.bind(request.values)))[0]
                return int(affected), 0, [body] if body is not None else [], None
            ids = await self._sqlite_rowids(tx, table, node, request, caller, "DELETE",
                                            mutate.reads_columns(node, want_body))
            body = await self._sqlite_render(tx, node if want_body else None, request, ids, caller)
            delete = mutate.sqlite_delete(self.dialect, table, len(request.values))
            await tx.fetch_all(delete.sql, delete.bind(request.values + (ids,)))
            return len(orjson.loads(ids)), 0, [body] if body is not None else [], None

        affected, _, bodies, _ = await self._run_write(request, work, caller)
        headers = {"Content-Range": "*/" + (str(affected) if request.preferences.count else "*")}
        return self._write_reply(200, request, node if want_body else None, affected,
                                 _merge_arrays(bodies), headers,
                                 ["return", "count", "tx", "handling", "max-affected"])

    async def _run_write(self, request: ApiRequest,
                         work: Callable[[Transaction], Awaitable[tuple[int, int, list[str], str | None]]],
                         caller: Caller) -> tuple[int, int, list[str], str | None]:
        prefs = request.preferences

        mark = self.ledger_mark if prefs.return_ is ReturnPref.REPRESENTATION and prefs.tx != "rollback" else None

        async def checked(tx: Transaction) -> tuple[int, int, list[str], str | None]:
            before = await mark.before(tx) if mark is not None else None
            outcome = await work(tx)
            affected = outcome[0]
            if request.media_type is MediaType.OBJECT and affected != 1:
                singular("[]", affected)  # raises 406 PGRST116; the transaction rolls back
            if prefs.max_affected is not None and prefs.handling_strict and affected > prefs.max_affected:
                raise LedgerbaseError("Query result exceeds max-affected preference constraint",
                                      code="PGRST124",
                                      details=f"The query affects {affected} rows")
            if mark is not None:
                written.append(await mark.after(tx, before))
            return outcome

        written: list[Any] = []
        outcome = await self.database.write(checked, rollback=prefs.tx == "rollback", context=caller.context)
        if mark is not None and written:
            try:
                seq = await mark.committed(written[0])
            except LedgerbaseError:
                seq = None  # the write has committed: answer it, without the header
            if seq is not None:
                _LEDGER_SEQ.set(seq)
        return outcome

    def _write_reply(self, status: int, request: ApiRequest, node: ReadNode | None, affected: int,
                     body: str, headers: dict[str, str], preferences: list[str]) -> Reply:
        """PostgREST's write response: the body only with ``return=representation``."""
        applied = request.preferences.applied(*preferences)
        if applied:
            headers["Preference-Applied"] = applied
        if node is None:
            return Reply(status if request.method == "POST" else 204, b"", headers)
        headers["Content-Type"] = CONTENT_TYPES[request.media_type]
        _add_ledger_seq(headers)
        return Reply(status, self.format_rows(body, affected, node, request.media_type), headers)

# The ledger sequence number of the last entry a write made (for its Ledger-Seq header); a
# context variable, since a write and its reply run in the same request task.
_LEDGER_SEQ: ContextVar[int | None] = ContextVar("ledger_seq", default=None)


def _add_ledger_seq(headers: dict[str, str]) -> None:
    seq = _LEDGER_SEQ.get()
    if seq is not None:
        headers["Ledger-Seq"] = str(seq)
        _LEDGER_SEQ.set(None)


def _policy_violation(table: Table, *, using: bool = False) -> LedgerbaseError:
    """PostgreSQL's error for a row a policy does not allow to be written."""
    which = " (USING expression)" if using else ""
    return LedgerbaseError(f'new row violates row-level security policy{which} for table "{table.name}"',
                           code="42501", status=403)


def _group_rows(rows: list[dict[str, Any]], columns: tuple[Column, ...], *,
                missing_default: bool) -> list[tuple[tuple[Column, ...], list[dict[str, Any]]]]:
    """Rows grouped by the columns they set; with ``missing=default`` a missing key takes the default."""
    if not missing_default:
        return [(columns, rows)]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        present = tuple(c.name for c in columns if c.name in row)
        groups.setdefault(present, []).append(row)
    by_name = {c.name: c for c in columns}
    return [(tuple(by_name[n] for n in names), group) for names, group in groups.items()]


def _merge_arrays(bodies: list[str]) -> str:
    """Concatenate JSON arrays (one per insert group) into one."""
    if len(bodies) == 1:
        return bodies[0]
    items: list[Any] = []
    for body in bodies:
        items.extend(orjson.loads(body))
    return orjson.dumps(items).decode()


def _check_limited(request: ApiRequest) -> None:
    """PATCH/DELETE with ``limit`` needs an explicit ``order`` (PGRST109), as in PostgREST."""
    top = request.node(())
    if top is not None and top.limit_slot is not None and not top.order:
        raise LedgerbaseError("A 'limit' was applied without an explicit 'order'", code="PGRST109",
                              hint="Apply an 'order' using unique column(s)")


def _content_location(table: str, query: list[tuple[str, str]]) -> str:
    """PostgREST's Content-Location: the table and its query parameters in sorted order."""
    if not query:
        return f"/{_quote(table)}"
    pairs = sorted(query) if len(query) > 1 else query
    return f"/{_quote(table)}?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in pairs)


@lru_cache(maxsize=4096)
def _quote(text: str) -> str:
    """Percent-encode for a URL, skipping the work when nothing needs it (the usual case)."""
    return text if _URL_PLAIN.fullmatch(text) else quote(text, safe="")
