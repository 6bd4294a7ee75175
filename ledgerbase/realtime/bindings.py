"""A channel's ``postgres_changes`` bindings, and the payloads Supabase Realtime sends for them."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ledgerbase.db.schema import Column, SchemaCache
from ledgerbase.realtime.changes import Change
from ledgerbase.realtime.filters import Condition, FilterError, matches, parse_filter

EVENTS = frozenset({"*", "INSERT", "UPDATE", "DELETE"})

# the short names Supabase Realtime puts in "columns" (pg_type.typname)
_TYPE_NAMES = {
    "smallint": "int2", "integer": "int4", "int": "int4", "bigint": "int8", "real": "float4",
    "double precision": "float8", "boolean": "bool", "character varying": "varchar",
    "character": "bpchar", "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp", "time without time zone": "time",
    "time with time zone": "timetz", "serial": "int4", "bigserial": "int8",
}


class BindingError(ValueError):
    """A binding the server cannot serve (unknown table or column, bad filter)."""


@dataclass(frozen=True, slots=True)
class Binding:
    """One ``config.postgres_changes`` entry of a join, with the id the join reply gives it."""

    id: int
    event: str  # "*", INSERT, UPDATE, DELETE
    schema: str
    table: str | None  # None: every table of the schema
    conditions: tuple[Condition, ...]
    select: tuple[str, ...] | None
    echo: dict[str, Any]  # the binding as the client sent it, plus "id"

    def wants(self, change: Change, rls: bool = False) -> bool:
        """Whether ``change`` is for this binding: table, event and filter.

        Deletes are filtered on the old row a subscriber may be sent (``old_record``): the
        whole row for tables with ``REPLICA IDENTITY FULL`` and no row-level security, else
        the primary key.
        """
        if self.table is not None and self.table != change.table:
            return False
        if self.event != "*" and self.event != change.op:
            return False
        if not self.conditions:
            return True
        row = old_record(change, rls) if change.op == "DELETE" else (change.record or {})
        return matches(self.conditions, row)


def binding_id(raw: Mapping[str, Any]) -> int:
    """A stable non-zero id for a binding (equal bindings share it, like Supabase's hash)."""
    return zlib.crc32(orjson.dumps(dict(raw), option=orjson.OPT_SORT_KEYS)) or 1


def echo_bindings(raw: Any) -> list[dict[str, Any]]:
    """The join reply's ``postgres_changes`` for bindings that could not be served: as sent,
    with ids (Supabase Realtime replies so, then reports the failure in a ``system`` message)."""
    if not isinstance(raw, list):
        return []
    return [{**entry, "id": binding_id(entry)} for entry in raw if isinstance(entry, dict)]


def parse_bindings(raw: Any, schema: SchemaCache) -> list[Binding]:
    """The bindings of a join's ``config.postgres_changes``; raises BindingError."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BindingError("postgres_changes must be a list")
    bindings = []
    for entry in raw:
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise BindingError("each postgres_changes entry must be an object")
        event = str(entry.get("event", "*")).upper()
        if event not in EVENTS:
            raise BindingError(f"invalid event {entry.get('event')!r}: use *, INSERT, UPDATE or DELETE")
        schema_name = entry.get("schema") or "public"
        if schema_name != schema.schema:
            raise BindingError(f"schema {schema_name!r} is not exposed")
        table_name = entry.get("table")
        if table_name in (None, "*"):
            table_name = None
        elif not isinstance(table_name, str) or table_name not in schema.tables:
            raise BindingError(f"relation {schema_name}.{table_name} does not exist")
        elif schema.tables[table_name].is_view:
            raise BindingError(f"{schema_name}.{table_name} is a view: changes are sent for tables")
        conditions: tuple[Condition, ...] = ()
        text = entry.get("filter")
        if text:
            try:
                conditions = parse_filter(str(text))
            except FilterError as error:
                raise BindingError(f"invalid filter {text!r}: {error}") from None
            if table_name is None:
                raise BindingError("a filter needs a table")
            table = schema.tables[table_name]
            unknown = [c.column for c in conditions if table.column(c.column) is None]
            if unknown:
                raise BindingError(f"column {unknown[0]!r} of {table_name} does not exist")
        select = entry.get("select")
        columns: tuple[str, ...] | None = None
        if select:
            if not isinstance(select, list) or not all(isinstance(c, str) for c in select):
                raise BindingError("select must be a list of column names")
            columns = tuple(select)
        bindings.append(Binding(id=binding_id(entry), event=event, schema=schema_name, table=table_name,
                                conditions=conditions, select=columns, echo={**entry, "id": binding_id(entry)}))
    return bindings


def type_name(column: Column) -> str:
    """A column's type as Supabase Realtime names it in ``columns`` (int8, text, timestamptz...)."""
    name = column.type.name
    if name.endswith("[]"):
        return "_" + type_name(Column(name=column.name, type=column.type.parse(name[:-2])))
    base = name.split("(", 1)[0].strip()
    return _TYPE_NAMES.get(base, base)


def old_record(change: Change, rls: bool, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The ``old_record`` of an update or delete, as Supabase Realtime sends it: the primary key,
    or the whole old row when the table has ``REPLICA IDENTITY FULL`` (``change.old_record``),
    but a delete's key only when the table has row-level security (nobody's policy can be
    checked against a row that is gone). ``select`` keeps the chosen columns and the key."""
    old = change.old_record
    if old is None or (rls and change.op == "DELETE"):
        return dict(change.pk)
    if select is None:
        return dict(old)
    return {name: value for name, value in old.items() if name in select or name in change.pk}


def change_data(change: Change, columns: Sequence[Column], schema: str,
                record: dict[str, Any] | None, select: tuple[str, ...] | None,
                rls: bool = False) -> dict[str, Any]:
    """The ``data`` of a ``postgres_changes`` push, as Supabase Realtime shapes it.

    A delete has no ``record``; ``old_record`` is described by ``old_record``.
    """
    shown = [c for c in columns if select is None or c.name in select]
    data: dict[str, Any] = {
        "schema": schema, "table": change.table, "commit_timestamp": change.commit_timestamp,
        "type": change.op, "errors": None,
        "columns": [{"name": c.name, "type": type_name(c)} for c in shown],
    }
    if change.op != "DELETE":
        row = record or {}
        data["record"] = row if select is None else {k: v for k, v in row.items() if k in select}
    if change.op != "INSERT":
        data["old_record"] = old_record(change, rls, select)
    return data
