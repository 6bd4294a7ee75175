"""Introspection: read tables, columns, keys, foreign keys and functions into a SchemaCache."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import sqlglot
from sqlglot import exp

from ledgerbase.db.engine import Database, PostgresDatabase, SqliteDatabase
from ledgerbase.db.schema import (
    Column,
    ForeignKey,
    Function,
    FunctionParam,
    PgType,
    SchemaCache,
    StoredPolicy,
    Table,
    build_relationships,
)

_HIDDEN_PREFIXES = ("_ledgerbase", "sqlite_")


async def introspect(database: Database, schema: str = "public") -> SchemaCache:
    """Build the schema cache of ``schema`` (``main`` is used on SQLite)."""
    policies: tuple[StoredPolicy, ...] = ()
    if isinstance(database, SqliteDatabase):
        tables, functions, policies = database.run_sync(_sqlite_tables)
    elif isinstance(database, PostgresDatabase):
        tables, functions = await _postgres_tables(database, schema)
    else:  # pragma: no cover - only two engines exist
        raise TypeError(type(database).__name__)
    return SchemaCache(schema=schema, tables=tables, relationships=build_relationships(tables),
                       functions=functions, policies=policies)


# --- SQLite -----------------------------------------------------------------------------

def _sqlite_tables(connection: sqlite3.Connection
                   ) -> tuple[dict[str, Table], dict[str, Function], tuple[StoredPolicy, ...]]:
    tables: dict[str, Table] = {}
    rows = connection.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
    ).fetchall()
    policies: list[StoredPolicy] = []
    protected: set[str] = set()
    if connection.execute("SELECT 1 FROM pragma_table_info('_ledgerbase_policies') "
                          "WHERE name = 'compiled'").fetchone():
        for table, name, compiled in connection.execute(
                "SELECT table_name, name, compiled FROM _ledgerbase_policies ORDER BY rowid").fetchall():
            if name is None:
                protected.add(table)
            else:
                policies.append(StoredPolicy(table=table, name=name, compiled=compiled))
    for name, kind in rows:
        if name.startswith(_HIDDEN_PREFIXES):
            continue
        tables[name] = sqlite_table(connection, name, is_view=kind == "view", rls=name in protected)
    return tables, _sqlite_functions(connection), tuple(policies)


def sqlite_table(connection: sqlite3.Connection, name: str, *, is_view: bool = False, rls: bool = False) -> Table:
    """One SQLite table (or view) of the database as a Table."""
    info = connection.execute("SELECT cid, name, type, \"notnull\", dflt_value, pk "
                              "FROM pragma_table_info(?)", (name,)).fetchall()
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = '_ledgerbase_columns'").fetchone():
        declared_as = dict(connection.execute(
            "SELECT column_name, pg_type FROM _ledgerbase_columns WHERE table_name = ?", (name,)).fetchall())
        info = [(cid, column, declared_as.get(column, declared), *rest)
                for cid, column, declared, *rest in info]
    pk = tuple(column for *_, column in sorted((row[5], row[1]) for row in info if row[5]))
    rowid_alias = len(pk) == 1 and any(
        row[1] == pk[0] and (row[2] or "").lower() in ("integer", "bigint", "smallint") for row in info
    )
    columns = tuple(
        Column(
            name=column, type=PgType.parse(declared or "text"),
            nullable=not notnull and column not in pk,
            has_default=default is not None or (rowid_alias and column == pk[0]),
            position=cid + 1, default_sql=default,
        )
        for cid, column, declared, notnull, default, _pk in info
    )
    uniques: list[tuple[str, ...]] = []
    foreign_keys: list[ForeignKey] = []
    if not is_view:
        for _seq, index, unique, origin, partial in connection.execute(
            "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?)", (name,)
        ).fetchall():
            if not unique or partial or origin == "pk":
                continue
            key = tuple(row[0] for row in connection.execute(
                "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index,)).fetchall())
            if all(key) and key not in uniques:
                uniques.append(key)
        names = _sqlite_constraint_names(connection, name)
        grouped: dict[int, list[tuple[Any, ...]]] = {}
        for row in connection.execute(
            "SELECT id, seq, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?)", (name,)
        ).fetchall():
            grouped.setdefault(row[0], []).append(row)
        for parts in grouped.values():
            parts.sort(key=lambda part: part[1])
            ref_table = parts[0][2]
            local = tuple(part[3] for part in parts)
            remote = tuple(part[4] or "" for part in parts)
            if not all(remote):
                remote = _sqlite_primary_key(connection, ref_table)
            foreign_keys.append(ForeignKey(
                # the declared name, else PostgreSQL's default one, so hints work alike on both
                name=names.get(local) or f"{name}_{'_'.join(local)}_fkey", table=name,
                columns=local, ref_table=ref_table, ref_columns=remote,
            ))
        foreign_keys.sort(key=lambda fk: fk.name)
    return Table(name=name, schema="public", columns=columns, primary_key=pk,
                 unique_keys=tuple(uniques), foreign_keys=tuple(foreign_keys), is_view=is_view,
                 insertable=not is_view, rls=rls)


def _sqlite_constraint_names(connection: sqlite3.Connection, table: str) -> dict[tuple[str, ...], str]:
    """Declared foreign key names by their columns (SQLite's pragmas do not report names)."""
    row = connection.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    if row is None or not row[0]:
        return {}
    try:
        statement = sqlglot.parse_one(row[0], read="sqlite")
    except sqlglot.errors.ParseError:
        return {}
    names: dict[tuple[str, ...], str] = {}
    for constraint in statement.find_all(exp.Constraint):
        foreign_key = constraint.find(exp.ForeignKey)
        if foreign_key is not None:
            names[tuple(e.name for e in foreign_key.expressions)] = constraint.this.name
    for column in statement.find_all(exp.ColumnDef):
        for item in column.constraints:
            if isinstance(item.kind, exp.Reference) and item.this is not None:
                names[(column.name,)] = item.this.name
    return names


def _sqlite_primary_key(connection: sqlite3.Connection, table: str) -> tuple[str, ...]:
    rows = connection.execute("SELECT name, pk FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk",
                              (table,)).fetchall()
    return tuple(row[0] for row in rows)


def _sqlite_functions(connection: sqlite3.Connection) -> dict[str, Function]:
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE name = '_ledgerbase_functions'").fetchone()
    if not exists:
        return {}
    functions: dict[str, Function] = {}
    for name, params, return_type, returns_set, body in connection.execute(
        "SELECT name, params, return_type, returns_set, body FROM _ledgerbase_functions"
    ).fetchall():
        declared = PgType.parse(return_type or "void")
        functions[name] = Function(
            name=name, schema="public",
            params=tuple(FunctionParam(name=p["name"], type=PgType.parse(p["type"]),
                                       has_default=bool(p.get("has_default")))
                         for p in orjson.loads(params or "[]")),
            return_type=declared, returns_set=bool(returns_set),
            returns_table=return_type if return_type and declared.kind.value == "other" else None,
            body=body,
        )
    return functions


# --- PostgreSQL -------------------------------------------------------------------------

_PG_COLUMNS = """
SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '', a.attidentity = 'a' OR a.attgenerated <> '', a.attnum,
       col_description(c.oid, a.attnum), obj_description(c.oid, 'pg_class'),
       CASE WHEN c.relkind = 'r' OR c.relkind = 'p' THEN true
            ELSE pg_relation_is_updatable(c.oid::regclass, false) & 8 = 8 END,
       c.relrowsecurity
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
ORDER BY c.relname, a.attnum
"""

_PG_CONSTRAINTS = """
SELECT con.conname, con.contype::text, c.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
       fc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f') AND (fn.nspname IS NULL OR fn.nspname = $1)
ORDER BY con.conname
"""

_PG_FUNCTIONS = """
SELECT p.proname, coalesce(p.proargnames, '{}'::text[]),
       ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t),
       p.pronargdefaults, format_type(p.prorettype, NULL), p.proretset,
       CASE WHEN rt.typrelid <> 0 THEN rc.relname END, p.provolatile::text,
       coalesce(p.proargmodes::text[], ARRAY[]::text[])
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type rt ON rt.oid = p.prorettype
LEFT JOIN pg_class rc ON rc.oid = rt.typrelid
WHERE n.nspname = $1 AND p.prokind = 'f'
"""


async def _postgres_tables(database: PostgresDatabase,
                           schema: str) -> tuple[dict[str, Table], dict[str, Function]]:
    columns: dict[str, list[Column]] = {}
    meta: dict[str, tuple[str, str | None, bool, bool]] = {}
    for (table, kind, column, declared, notnull, has_default, generated, position, comment,
         table_comment, updatable, rls) in await database.fetch_all(_PG_COLUMNS, (schema,)):
        columns.setdefault(table, []).append(Column(
            name=column, type=PgType.parse(declared), nullable=not notnull,
            has_default=bool(has_default), generated=bool(generated), position=position,
            description=comment,
        ))
        meta[table] = (kind, table_comment, bool(updatable), bool(rls))
    primary: dict[str, tuple[str, ...]] = {}
    uniques: dict[str, list[tuple[str, ...]]] = {}
    fks: dict[str, list[ForeignKey]] = {}
    for name, kind, table, local, ref_table, remote in await database.fetch_all(
        _PG_CONSTRAINTS, (schema,)
    ):
        if kind == "p":
            primary[table] = tuple(local)
        elif kind == "u":
            uniques.setdefault(table, []).append(tuple(local))
        elif ref_table is not None:
            fks.setdefault(table, []).append(ForeignKey(
                name=name, table=table, columns=tuple(local), ref_table=ref_table,
                ref_columns=tuple(remote),
            ))
    tables = {
        name: Table(
            name=name, schema=schema, columns=tuple(cols), primary_key=primary.get(name, ()),
            unique_keys=tuple(uniques.get(name, ())), foreign_keys=tuple(fks.get(name, ())),
            is_view=meta[name][0] in ("v", "m"), insertable=meta[name][2],
            description=meta[name][1], rls=meta[name][3],
        )
        for name, cols in columns.items()
        if not name.startswith(_HIDDEN_PREFIXES)
    }
    functions: dict[str, Function] = {}
    for (name, arg_names, arg_types, n_defaults, return_type, returns_set, returns_table,
         volatility, modes) in await database.fetch_all(_PG_FUNCTIONS, (schema,)):
        if any(mode not in ("i", "b", "v") for mode in modes) or len(arg_names) < len(arg_types):
            continue  # OUT/TABLE parameters or unnamed arguments: not callable by name
        count = len(arg_types)
        params = tuple(
            FunctionParam(name=arg_names[i], type=PgType.parse(arg_types[i]),
                          has_default=i >= count - n_defaults)
            for i in range(count)
        )
        functions[name] = Function(
            name=name, schema=schema, params=params, return_type=PgType.parse(return_type),
            returns_set=bool(returns_set), returns_table=returns_table,
            volatile=volatility == "v",
        )
    return tables, functions
