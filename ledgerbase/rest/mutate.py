"""Compile writes (insert, upsert, update, delete) and RPC calls to SQL, per dialect.

PostgreSQL runs a write and renders its rows in one statement (a data-modifying
CTE, as PostgREST does). SQLite has no data-modifying CTEs, so there a write is
done in steps inside one transaction: find the target rowids, write, then render
those rows with the read compiler.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

import sqlglot
from sqlglot import exp

from ledgerbase.auth.policies import Command, Guards, Predicate
from ledgerbase.db.dialect import Dialect, quote_ident
from ledgerbase.db.schema import Column, Function, Table
from ledgerbase.rest.compile import Binder, ReadCompiler, Statement, _pg_cast_name
from ledgerbase.rest.plan import EmbedOut, ReadNode


def render_node(node: ReadNode) -> ReadNode:
    """``node`` without its top-level filters and paging: for rendering rows already chosen."""
    return replace(node, filters=(), limit_slot=None, offset_slot=None)


def _columns_sql(columns: tuple[str, ...]) -> str:
    return ", ".join(quote_ident(c) for c in columns)


def _conflict_sql(table: Table, columns: tuple[str, ...], on_conflict: tuple[str, ...] | None,
                  resolution: str | None) -> str:
    if resolution is None:
        return ""
    target = on_conflict or table.primary_key
    if resolution == "ignore-duplicates":
        return f" ON CONFLICT ({_columns_sql(target)}) DO NOTHING"
    updates = [c for c in columns if c not in target] or list(target)
    assignments = ", ".join(f"{quote_ident(c)} = excluded.{quote_ident(c)}" for c in updates)
    return f" ON CONFLICT ({_columns_sql(target)}) DO UPDATE SET {assignments}"


# --- PostgreSQL: one statement ------------------------------------------------------------

def returning(table: Table, reads_rows: bool, *, upsert: bool = False) -> str:
    """The RETURNING clause of a write.

    ``RETURNING 1`` when the response needs no column, as PostgREST does: returning
    columns needs SELECT privilege, and makes row-level security apply the SELECT
    policies to the written rows (a user may insert rows they cannot read back).
    """
    name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    if upsert:
        return f" RETURNING {name}.*, (xmax = 0) AS _lb_inserted"
    return f" RETURNING {name}.*" if reads_rows else " RETURNING 1"


def _pg_outcome(dialect: Dialect, table: Table, node: ReadNode | None, mutation: str,
                compiler: ReadCompiler, *, inserted: bool, location: bool = False) -> Statement:
    """``(affected, inserted, body, location key)`` over the mutation's RETURNING rows."""
    body = "NULL"
    if node is not None:
        body = f"({compiler.read(render_node(node), 'pgrst_source', count=False, body_only=True)})"
    key = (f"(SELECT json_build_array({_columns_sql(table.primary_key)})::text FROM pgrst_source LIMIT 1)"
           if table.primary_key and location else "NULL")
    inserted_sql = ("(SELECT count(*) FROM pgrst_source WHERE _lb_inserted)" if inserted
                    else "(SELECT count(*) FROM pgrst_source)")
    sql = (f"WITH pgrst_source AS ({mutation}) SELECT (SELECT count(*) FROM pgrst_source), "
           f"{inserted_sql}, {body}, {key}")
    return compiler.statement(sql)


def pg_insert(dialect: Dialect, table: Table, columns: tuple[str, ...], body_slot: int,
              node: ReadNode | None, *, on_conflict: tuple[str, ...] | None,
              resolution: str | None, location: bool = False) -> Statement:
    """INSERT ... SELECT FROM json_populate_recordset(body) [ON CONFLICT ...] RETURNING."""
    compiler = ReadCompiler(dialect)
    name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    column_list = _columns_sql(columns)
    if columns:
        body = compiler.binder.slot(body_slot)
        insert = (f"INSERT INTO {name} ({column_list}) SELECT {column_list} FROM "
                  f"json_populate_recordset(NULL::{name}, {body}::json)")
    else:
        insert = f"INSERT INTO {name} DEFAULT VALUES"
    upsert = resolution is not None
    mutation = (f"{insert}{_conflict_sql(table, columns, on_conflict, resolution)}"
                f"{returning(table, node is not None or location, upsert=upsert)}")
    return _pg_outcome(dialect, table, node, mutation, compiler, inserted=upsert, location=location)


def pg_update(dialect: Dialect, table: Table, columns: tuple[str, ...], body_slot: int,
              node: ReadNode, *, want_body: bool, defaults: tuple[str, ...] = ()) -> Statement:
    """UPDATE ... FROM json_populate_record(body) WHERE filters RETURNING."""
    compiler = ReadCompiler(dialect)
    name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    body = compiler.binder.slot(body_slot)
    assignments = ", ".join([f"{quote_ident(c)} = _r.{quote_ident(c)}" for c in columns]
                            + [f"{quote_ident(c)} = DEFAULT" for c in defaults])
    where = _pg_target(compiler, table, node)
    mutation = (f"UPDATE {name} SET {assignments} FROM "
                f"(SELECT * FROM json_populate_record(NULL::{name}, {body}::json)) AS _r"
                f"{where}{returning(table, want_body)}")
    return _pg_outcome(dialect, table, node if want_body else None, mutation, compiler,
                       inserted=False)


def pg_delete(dialect: Dialect, table: Table, node: ReadNode, *, want_body: bool) -> Statement:
    """DELETE ... WHERE filters RETURNING."""
    compiler = ReadCompiler(dialect)
    name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    mutation = f"DELETE FROM {name}{_pg_target(compiler, table, node)}{returning(table, want_body)}"
    return _pg_outcome(dialect, table, node if want_body else None, mutation, compiler,
                       inserted=False)


def reads_columns(node: ReadNode, want_body: bool) -> bool:
    """Whether an UPDATE or DELETE reads its table's columns (WHERE, ORDER BY or RETURNING).

    PostgreSQL then needs SELECT privilege and applies the SELECT policies too.
    """
    return want_body or bool(node.filters) or bool(node.order) or node.limit_slot is not None \
        or any(isinstance(out, EmbedOut) and out.inner for out in node.outputs)


def _pg_target(compiler: ReadCompiler, table: Table, node: ReadNode) -> str:
    name = f"{quote_ident(table.schema)}.{quote_ident(table.name)}"
    if node.limit_slot is None and not node.order:
        where = compiler.where(table.name, node)
        return f" WHERE {where}" if where else ""
    where = compiler.where("t0", node)
    where_sql = f" WHERE {where}" if where else ""
    tail = compiler.order_by("t0", node) + compiler.paging(node)
    return f" WHERE {name}.ctid IN (SELECT \"t0\".ctid FROM {name} AS \"t0\"{where_sql}{tail})"


# --- SQLite: steps in one transaction -----------------------------------------------------

def sqlite_target_rowids(dialect: Dialect, table: Table, node: ReadNode, guards: Guards | None = None,
                         command: Command = "UPDATE", *, reads_rows: bool = True) -> Statement:
    """The rowids a PATCH or DELETE will touch, as a JSON array.

    With ``guards``, only rows the ``command`` policies let the caller change, and, when
    the statement reads the rows (``reads_rows``: filters, order or a returned body, as
    ``reads_columns`` tells), the SELECT policies let them see, as on PostgreSQL.
    """
    compiler = ReadCompiler(dialect, guards)
    guard = compiler.guard(table.name, "t0", command)
    where = compiler.where("t0", node, (guard,) if guard is not None else (), guarded=reads_rows)
    where_sql = f" WHERE {where}" if where else ""
    tail = compiler.order_by("t0", node) + compiler.paging(node)
    return compiler.statement(
        f"SELECT coalesce(json_group_array(_r.id), '[]') FROM (SELECT \"t0\".rowid AS id FROM "
        f"{quote_ident(table.name)} AS \"t0\"{where_sql}{tail}) AS _r")


def sqlite_render(dialect: Dialect, node: ReadNode, rowids_slot: int, guards: Guards | None = None) -> Statement:
    """Render the rows whose rowids are in ``values[rowids_slot]`` (a JSON array), in that order."""
    compiler = ReadCompiler(dialect, guards)
    ids = compiler.binder.slot(rowids_slot)
    target = render_node(node)
    extra = (f"\"t0\".rowid IN (SELECT value FROM json_each({ids}))",)
    sql = compiler.read(target, quote_ident(node.table.name), count=False, extra=extra, body_only=True)
    return compiler.statement(sql)


def sqlite_insert(dialect: Dialect, table: Table, columns: tuple[str, ...], rows_slot: int, *,
                  on_conflict: tuple[str, ...] | None, resolution: str | None) -> Statement:
    """INSERT ... SELECT from a JSON array of row arrays, returning the rowids."""
    binder = Binder(dialect)
    rows = binder.slot(rows_slot)
    name = quote_ident(table.name)
    if not columns:
        return Statement(sql=f"INSERT INTO {name} DEFAULT VALUES RETURNING rowid", params=())
    picks = ", ".join(f"_v.value ->> {index}" for index in range(len(columns)))
    conflict = _conflict_sql(table, columns, on_conflict, resolution)
    # "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT's join
    sql = (f"INSERT INTO {name} ({_columns_sql(columns)}) SELECT {picks} FROM json_each({rows}) "
           f"AS _v WHERE true{conflict} RETURNING rowid")
    return Statement(sql=sql, params=tuple(binder.params))


def sqlite_existing(dialect: Dialect, table: Table, key: tuple[str, ...], columns: tuple[str, ...],
                    rows_slot: int) -> Statement:
    """How many of the rows to upsert already exist (to answer 201 or 200)."""
    binder = Binder(dialect)
    rows = binder.slot(rows_slot)
    picks = ", ".join(f"_v.value ->> {columns.index(c)}" for c in key)
    sql = (f"SELECT count(*) FROM {quote_ident(table.name)} WHERE ({_columns_sql(key)}) IN "
           f"(SELECT {picks} FROM json_each({rows}) AS _v)")
    return Statement(sql=sql, params=tuple(binder.params))


def sqlite_violations(dialect: Dialect, table: Table, guards: Guards, rowids_slot: int,
                      checks: tuple[Predicate, ...]) -> Statement:
    """How many of the given rowids fail one of ``checks`` (a row-level policy's WITH CHECK)."""
    compiler = ReadCompiler(dialect, guards)
    ids = compiler.binder.slot(rowids_slot)
    conditions = " AND ".join(f"({check.render('t0', compiler.binder.helper)})" for check in checks)
    return compiler.statement(
        f"SELECT count(*) FROM {quote_ident(table.name)} AS \"t0\" WHERE \"t0\".rowid IN "
        f"(SELECT value FROM json_each({ids})) AND NOT coalesce(({conditions}), 0)")


def sqlite_proposed_inserts(dialect: Dialect, table: Table, guards: Guards, columns: tuple[str, ...],
                            rows_slot: int, checks: tuple[Predicate, ...], *,
                            unless_existing: tuple[str, ...] | None = None) -> Statement:
    """The index of the first row an INSERT proposes that fails ``checks`` (NULL if none):
    PostgreSQL checks WITH CHECK on each new row before its constraints and conflicts, so
    SQLite does it before writing too.

    The proposed row is the payload's values, and each other column's DEFAULT.
    """
    compiler = ReadCompiler(dialect, guards)
    rows = compiler.binder.slot(rows_slot)
    values = []
    for column in table.columns:
        if column.name in columns:
            values.append(f"_v.value ->> {columns.index(column.name)}")
        else:
            # a DEFAULT expression comes from the schema itself (sqlite_master), never from a request
            values.append(f"({column.default_sql})" if column.default_sql else "NULL")
    picks = ", ".join(f"{value} AS {quote_ident(column.name)}" for value, column in zip(values, table.columns,
                                                                                          strict=True))
    conditions = " AND ".join(f"({check.render('t0', compiler.binder.helper)})" for check in checks)
    if unless_existing:
        # an upsert's rows whose key exists are updated, not inserted
        same = " AND ".join(f"\"_x\".{quote_ident(c)} = \"t0\".{quote_ident(c)}" for c in unless_existing)
        conditions = f"({conditions}) OR EXISTS (SELECT 1 FROM {quote_ident(table.name)} AS \"_x\" WHERE {same})"
    return compiler.statement(
        f"SELECT min(\"t0\"._lb_index) FROM (SELECT {picks}, _v.key AS _lb_index FROM json_each({rows}) AS _v) "
        f"AS \"t0\" WHERE NOT coalesce(({conditions}), 0)")


def sqlite_proposed_updates(dialect: Dialect, table: Table, guards: Guards, columns: tuple[str, ...],
                            first_slot: int, rowids_slot: int, defaults: tuple[Column, ...],
                            checks: tuple[Predicate, ...]) -> Statement:
    """How many rows an UPDATE would produce that fail ``checks`` (checked before writing,
    as PostgreSQL checks WITH CHECK before constraints)."""
    compiler = ReadCompiler(dialect, guards)
    picks = []
    reset = {column.name for column in defaults}
    for column in table.columns:
        if column.name in columns:
            value = compiler.binder.slot(first_slot + columns.index(column.name))
        elif column.name in reset:
            value = f"({column.default_sql or 'NULL'})"
        else:
            value = f"\"_o\".{quote_ident(column.name)}"
        picks.append(f"{value} AS {quote_ident(column.name)}")
    ids = compiler.binder.slot(rowids_slot)
    conditions = " AND ".join(f"({check.render('t0', compiler.binder.helper)})" for check in checks)
    return compiler.statement(
        f"SELECT count(*) FROM (SELECT {', '.join(picks)} FROM {quote_ident(table.name)} AS \"_o\" "
        f"WHERE \"_o\".rowid IN (SELECT value FROM json_each({ids}))) AS \"t0\" "
        f"WHERE NOT coalesce(({conditions}), 0)")


def sqlite_conflicting(dialect: Dialect, table: Table, key: tuple[str, ...], columns: tuple[str, ...],
                       rows_slot: int, guards: Guards | None) -> Statement:
    """The rows an upsert would update (JSON array of rowids), and the index of the first
    proposed row whose existing row the caller's UPDATE and SELECT policies do not allow
    (NULL if none; PostgreSQL refuses the upsert when it reaches that row)."""
    compiler = ReadCompiler(dialect, guards)
    rows = compiler.binder.slot(rows_slot)
    picks = ", ".join(f"_v.value ->> {columns.index(c)}" for c in key)
    qualified = ", ".join(f"\"t0\".{quote_ident(c)}" for c in key)
    conditions = [guard for guard in (compiler.guard(table.name, "t0", "UPDATE"),
                                      compiler.guard(table.name, "t0", "SELECT")) if guard is not None]
    denied = (f"min(CASE WHEN NOT coalesce(({' AND '.join(f'({c})' for c in conditions)}), 0) "
              f"THEN _v.key END)" if conditions else "NULL")
    return compiler.statement(
        f"SELECT coalesce(json_group_array(DISTINCT \"t0\".rowid), '[]'), {denied} FROM json_each({rows}) AS _v "
        f"JOIN {quote_ident(table.name)} AS \"t0\" ON ({qualified}) = ({picks})")


def sqlite_update(dialect: Dialect, table: Table, columns: tuple[str, ...], first_slot: int,
                  rowids_slot: int, defaults: tuple[Column, ...] = ()) -> Statement:
    """UPDATE the given rowids with ``values[first_slot + i]``, returning their (new) rowids.

    ``defaults`` are set to their declared DEFAULT (``Prefer: missing=default``).
    """
    binder = Binder(dialect)
    assignments = [f"{quote_ident(c)} = {binder.slot(first_slot + i)}" for i, c in enumerate(columns)]
    # a DEFAULT expression comes from the schema itself (sqlite_master), never from a request
    assignments += [f"{quote_ident(c.name)} = ({c.default_sql or 'NULL'})" for c in defaults]
    ids = binder.slot(rowids_slot)
    sql = (f"UPDATE {quote_ident(table.name)} SET {', '.join(assignments)} WHERE rowid IN "
           f"(SELECT value FROM json_each({ids})) RETURNING rowid")
    return Statement(sql=sql, params=tuple(binder.params))


def sqlite_delete(dialect: Dialect, table: Table, rowids_slot: int) -> Statement:
    """DELETE the given rowids."""
    binder = Binder(dialect)
    ids = binder.slot(rowids_slot)
    return Statement(sql=f"DELETE FROM {quote_ident(table.name)} WHERE rowid IN "
                         f"(SELECT value FROM json_each({ids}))", params=tuple(binder.params))


def sqlite_keys(dialect: Dialect, table: Table, rowids_slot: int) -> Statement:
    """The primary key of the first of the given rowids, as a JSON array (for Location)."""
    binder = Binder(dialect)
    ids = binder.slot(rowids_slot)
    return Statement(sql=f"SELECT json_array({_columns_sql(table.primary_key)}) FROM "
                         f"{quote_ident(table.name)} WHERE rowid = ({ids} ->> 0)",
                     params=tuple(binder.params))


# --- RPC ----------------------------------------------------------------------------------

def function_call(dialect: Dialect, compiler: ReadCompiler, function: Function,
                  arg_slots: dict[str, int]) -> str:
    """The SQL call of ``function`` with named arguments bound from request value slots."""
    if dialect.name == "sqlite":
        body = function.body or "SELECT NULL"
        if compiler.guards is not None:
            body = _guarded_body(body, compiler.guards)

        def placeholder(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in arg_slots:
                return "NULL"
            return compiler.binder.slot(arg_slots[name])

        body = re.sub(r":([A-Za-z_][A-Za-z0-9_]*)", placeholder, body)
        body = _HELPER_CALL.sub(lambda match: compiler.binder.helper(match.group(1).lower()), body)
        return "(" + body + ")"
    args = ", ".join(
        f"{quote_ident(param.name)} := {compiler.binder.slot(arg_slots[param.name])}::"
        f"{_pg_cast_name(param.type)}"
        for param in function.params if param.name in arg_slots
    )
    return f"{quote_ident(function.schema)}.{quote_ident(function.name)}({args})"


_HELPER_CALL = re.compile(r"LB_AUTH_(UID|ROLE|JWT|EMAIL)\(\)", re.IGNORECASE)


@lru_cache(maxsize=256)
def _guarded_body(body: str, guards: Guards) -> str:
    """A SQLite function body whose table reads only see the rows the caller's policies allow.

    Each protected table becomes ``(SELECT * FROM t WHERE <SELECT policies>) AS t``, as
    PostgreSQL's row-level security filters the scans of a SECURITY INVOKER function.
    """
    parsed = sqlglot.parse_one(body, read="sqlite")

    def guard(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Table) or not guards.protects(node.name):
            return node
        predicate = guards.using(node.name, "SELECT")
        if predicate is None:
            return node
        condition = predicate.render("_lb_g", lambda name: f"LB_AUTH_{name.upper()}()")
        rows = sqlglot.parse_one(f'SELECT * FROM {quote_ident(node.name)} AS "_lb_g" WHERE {condition}',
                                 read="sqlite")
        return exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name)))

    return parsed.transform(guard).sql(dialect="sqlite")
