"""Compile planned reads to one SQL statement with bound parameters, per dialect.

The statement builds the whole JSON response inside the database, as PostgREST
does (``json_agg`` on PostgreSQL, ``json_group_array``/``json_object`` on
SQLite), embedding related rows in sub-selects rather than with N+1 queries.
Identifiers come from the schema cache and are quoted by ``quote_ident``;
every value is a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ledgerbase.auth.policies import Command, Guards
from ledgerbase.db.context import RequestContext
from ledgerbase.db.dialect import Dialect, quote_ident
from ledgerbase.db.schema import Column, PgType, Relationship, TypeKind
from ledgerbase.db.values import coerce_text, parse_array_literal, to_sqlite
from ledgerbase.errors import LedgerbaseError
from ledgerbase.rest.plan import (
    ColumnOut,
    EmbedOut,
    EmbedPresence,
    Filter,
    ReadNode,
    ResolvedCondition,
    ResolvedLogic,
)
from ledgerbase.rest.request import Condition, JsonStep

Convert = Callable[[Any], Any]

_COMPARISON = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_PG_ONLY = {"cs": "@>", "cd": "<@", "ov": "&&", "sl": "<<", "sr": ">>", "nxr": "&<", "nxl": "&>",
            "adj": "-|-"}
_FTS_FUNCTION = {"fts": "to_tsquery", "plfts": "plainto_tsquery", "phfts": "phraseto_tsquery",
                 "wfts": "websearch_to_tsquery"}
# SQLite's default limit on function arguments is 127: json_object takes key/value pairs
_SQLITE_PAIRS_PER_CALL = 60


@dataclass(frozen=True, slots=True)
class Param:
    """One bound parameter: a request value (by slot), a constant, or an auth helper's value
    (``auth.uid()`` & co. in row-level policies), then converted."""

    slot: int | None
    const: Any = None
    convert: Convert | None = None
    helper: str | None = None

    def value(self, values: Sequence[object], context: RequestContext | None) -> Any:
        """The value to bind for a request's ``values`` and ``context``."""
        if self.helper is not None:
            return context.helper(self.helper) if context is not None else None
        raw = values[self.slot] if self.slot is not None else self.const
        return self.convert(raw) if self.convert is not None else raw

    @property
    def constant(self) -> bool:
        """Whether ``value`` is ``const`` for every request."""
        return self.slot is None and self.helper is None and self.convert is None


@dataclass(frozen=True, slots=True)
class Statement:
    """A compiled statement: SQL text and how to bind its parameters."""

    sql: str
    params: tuple[Param, ...]
    # bind's plan, made once: the constants in place, then what each request fills in
    _constants: tuple[Any, ...] = field(init=False, repr=False, compare=False)
    _filled: tuple[tuple[int, Param], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_constants", tuple(p.const if p.constant else None for p in self.params))
        object.__setattr__(self, "_filled", tuple((i, p) for i, p in enumerate(self.params) if not p.constant))

    def bind(self, values: Sequence[object], context: RequestContext | None = None) -> list[Any]:
        """The parameter list for one request's values (may raise DataError on bad values)."""
        bound = list(self._constants)
        for index, param in self._filled:
            bound[index] = param.value(values, context)
        return bound


class Binder:
    """Hands out placeholders and records what each binds."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: list[Param] = []

    def slot(self, slot: int, convert: Convert | None = None) -> str:
        """A placeholder for request value ``slot``."""
        self.params.append(Param(slot=slot, convert=convert))
        return self.dialect.placeholder(len(self.params))

    def const(self, value: Any) -> str:
        """A placeholder for a constant fixed by the request's shape (a JSON key, say)."""
        self.params.append(Param(slot=None, const=value))
        return self.dialect.placeholder(len(self.params))

    def helper(self, name: str) -> str:
        """A placeholder for ``auth.<name>()`` of the request (uid, role, jwt, email)."""
        self.params.append(Param(slot=None, helper=name))
        return self.dialect.placeholder(len(self.params))


def _sqlite_json_path(step: JsonStep) -> str:
    """SQLite's JSON path for one step: ``$[2]``, ``$[#-1]`` or ``$."key"``."""
    index = step.index
    if index is None:
        return '$."' + step.key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"$[{index}]" if index >= 0 else f"$[#{index}]"


def _pg_cast_name(pg_type: PgType) -> str:
    """A type name from the catalog, safe to put after ``::``."""
    name = pg_type.name
    if not all(c.isalnum() or c in " _[](),\"." for c in name):
        raise LedgerbaseError(f"unsupported type {name}", code="42704")
    return name


def scalar_converter(dialect: Dialect, pg_type: PgType) -> Convert:
    """Text -> bound value of ``pg_type`` for ``dialect``."""
    if dialect.name == "sqlite":
        return lambda raw: to_sqlite(pg_type, coerce_text(pg_type, str(raw)))
    return lambda raw: coerce_text(pg_type, str(raw))


class ReadCompiler:
    """Compiles ``ReadNode`` trees; one instance per statement."""

    def __init__(self, dialect: Dialect, guards: Guards | None = None) -> None:
        self.dialect = dialect
        self.sqlite = dialect.name == "sqlite"
        self.binder = Binder(dialect)
        self.guards = guards
        self._aliases = 0

    def guard(self, table: str, alias: str, command: Command = "SELECT") -> str | None:
        """The row-level policy condition on ``table`` (as ``alias``) for ``command``; None if none."""
        if self.guards is None:
            return None
        predicate = self.guards.using(table, command)
        return predicate.render(alias, self.binder.helper) if predicate is not None else None

    def new_alias(self, prefix: str = "t") -> str:
        """A fresh table alias."""
        self._aliases += 1
        return f"{prefix}{self._aliases}"

    # --- expressions ------------------------------------------------------------------

    def column_expr(self, alias: str, column: Column, path: tuple[JsonStep, ...] = ()) -> str:
        """``"t0"."col"`` followed by its JSON path operators."""
        expr = f"{quote_ident(alias)}.{quote_ident(column.name)}"
        if not path:
            return expr
        if self.sqlite:
            # one JSON path string per step, so keys with dots or brackets stay keys and
            # negative indexes count from the end, as on PostgreSQL
            for step in path[:-1]:
                expr = f"({expr} -> {self.binder.const(_sqlite_json_path(step))})"
            last = path[-1]
            value = f"({expr} -> {self.binder.const(_sqlite_json_path(last))})"
            if not last.text:
                return value
            # ->> gives text on PostgreSQL: a JSON string unquoted, anything else as JSON text
            # "|| ''" drops the JSON subtype, so numbers and objects come out as text
            return (f"(CASE json_type({value}) WHEN 'text' THEN {value} ->> '$' "
                    f"WHEN 'null' THEN NULL ELSE ({value} || '') END)")
        for step in path:
            arrow = "->>" if step.text else "->"
            index = step.index
            placeholder = self.binder.const(index if index is not None else step.key)
            placeholder += "::integer" if index is not None else "::text"
            expr = f"{expr}{arrow}{placeholder}"
        return expr

    def output_expr(self, alias: str, out: ColumnOut) -> str:
        """The value of an output column, rendered so the JSON matches PostgreSQL's."""
        expr = self.column_expr(alias, out.column, out.path)
        if not self.sqlite:
            return f"CAST({expr} AS {out.cast})" if out.cast else expr
        if out.path:
            if out.cast:
                return self._sqlite_cast(expr, PgType("text", TypeKind.TEXT), out.cast)
            return expr if out.path[-1].text else f"json({expr})"
        if out.cast:
            return self._sqlite_cast(expr, out.column.type, out.cast)
        return self._sqlite_render(expr, out.column.type)

    def _sqlite_render(self, expr: str, pg_type: PgType) -> str:
        kind = pg_type.kind
        if kind is TypeKind.BOOLEAN:
            return f"json(CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} THEN 'true' ELSE 'false' END)"
        if kind in (TypeKind.JSON, TypeKind.JSONB):
            return f"json({expr})"
        if kind is TypeKind.NUMERIC and pg_type.scale is not None:
            return (f"json(CASE WHEN {expr} IS NULL THEN NULL "
                    f"ELSE printf('%.{int(pg_type.scale)}f', {expr}) END)")
        if kind is TypeKind.BYTEA:
            return f"('\\x' || lower(hex({expr})))"
        return expr

    def _sqlite_cast(self, expr: str, source: PgType, target: str) -> str:
        kind = source.kind
        if target == "text":
            if kind is TypeKind.BOOLEAN:
                return f"(CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} THEN 'true' ELSE 'false' END)"
            if kind is TypeKind.NUMERIC and source.scale is not None:
                return f"(CASE WHEN {expr} IS NULL THEN NULL ELSE printf('%.{int(source.scale)}f', {expr}) END)"
            if kind is TypeKind.TIMESTAMPTZ:
                return f"replace(replace({expr}, 'T', ' '), '+00:00', '+00')"
            if kind is TypeKind.TIMESTAMP:
                return f"replace({expr}, 'T', ' ')"
            return f"CAST({expr} AS TEXT)"
        if target in ("integer", "bigint", "smallint"):
            return f"lb_integer({expr})"
        if target in ("numeric", "double precision", "real"):
            return f"lb_number({expr})"
        if target == "boolean":
            return f"json(CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} THEN 'true' ELSE 'false' END)"
        if target in ("json", "jsonb"):
            return f"json({expr})"
        if target in ("uuid", "date", "timestamptz", "timestamp"):
            return expr
        raise LedgerbaseError(f"casting to {target} is not supported on SQLite", code="PGRST127",
                              details=f"cast to {target}", hint="Use PostgreSQL for this cast.")

    # --- filters ----------------------------------------------------------------------

    def where(self, alias: str, node: ReadNode, extra: Sequence[str] = (), *, guarded: bool = True) -> str:
        """The conditions of ``node`` (its policies, filters, ``!inner`` embeds), AND-ed; '' if none."""
        parts = [self.filter_sql(alias, f) for f in node.filters]
        guard = self.guard(node.table.name, alias) if guarded else None
        if guard is not None:
            parts.insert(0, guard)
        for out in node.outputs:
            if isinstance(out, EmbedOut) and out.inner:
                parts.append(self._exists(alias, out))
        parts.extend(extra)
        return " AND ".join(f"({part})" for part in parts)

    def filter_sql(self, alias: str, item: Filter) -> str:
        """One filter or logic tree as SQL."""
        if isinstance(item, EmbedPresence):
            exists = self._exists(alias, item.embed)
            return exists if item.present else f"NOT {exists}"
        if isinstance(item, ResolvedLogic):
            joiner = " AND " if item.conjunction == "and" else " OR "
            body = joiner.join(f"({self.filter_sql(alias, child)})" for child in item.children)
            return f"NOT ({body})" if item.negated else body
        sql = self._condition_sql(alias, item)
        return f"NOT ({sql})" if item.condition.negated else sql

    def _operand_type(self, item: ResolvedCondition) -> PgType:
        path = item.condition.field.path
        if not path:
            return item.column.type
        return PgType("text", TypeKind.TEXT) if path[-1].text else PgType("jsonb", TypeKind.JSONB)

    def _condition_sql(self, alias: str, item: ResolvedCondition) -> str:
        condition: Condition = item.condition
        operator = condition.operator
        expr = self.column_expr(alias, item.column, condition.field.path)
        operand = self._operand_type(item)
        if condition.field.path and not condition.field.path[-1].text and not self.sqlite:
            expr = f"({expr})::jsonb"
        if operator == "is":
            keyword = condition.keyword
            return {"null": f"{expr} IS NULL", "not_null": f"{expr} IS NOT NULL",
                    "true": f"{expr} IS TRUE", "false": f"{expr} IS FALSE",
                    "unknown": f"{expr} IS NULL"}[keyword or "null"]
        if operator in _PG_ONLY or operator in _FTS_FUNCTION:
            return self._postgres_only(expr, item, operand)
        if operator == "in":
            return self._in(expr, condition.slot, operand)
        if condition.quantifier is not None:
            return self._quantified(expr, condition, operand)
        return self._binary(expr, operator, self._operand(condition.slot, operator, operand))

    def _operand(self, slot: int, operator: str, operand: PgType) -> str:
        if operator in ("like", "ilike"):
            return self.binder.slot(slot, lambda raw: str(raw).replace("*", "%"))
        if operator in ("match", "imatch"):
            if self.sqlite and operator == "imatch":
                return self.binder.slot(slot, lambda raw: "(?i)" + str(raw))
            return self.binder.slot(slot, str)
        if not self.sqlite and operand.kind in (TypeKind.ARRAY, TypeKind.OTHER):
            # arrays, ranges, enums: PostgreSQL parses the literal, as it does for PostgREST
            return f"CAST(CAST({self.binder.slot(slot, str)} AS text) AS {_pg_cast_name(operand)})"
        placeholder = self.binder.slot(slot, scalar_converter(self.dialect, operand))
        if not self.sqlite and operand.kind is TypeKind.JSONB:
            placeholder += "::jsonb"
        return placeholder

    def _binary(self, expr: str, operator: str, operand: str) -> str:
        if operator in _COMPARISON:
            return f"{expr} {_COMPARISON[operator]} {operand}"
        if operator == "isdistinct":
            return f"{expr} IS NOT {operand}" if self.sqlite else f"{expr} IS DISTINCT FROM {operand}"
        if self.sqlite:
            if operator == "like":
                return f"{expr} LIKE {operand} ESCAPE '\\'"
            if operator == "ilike":
                return f"lb_fold({expr}) LIKE lb_fold({operand}) ESCAPE '\\'"
            if operator in ("match", "imatch"):
                return f"{expr} REGEXP {operand}"
        else:
            symbol = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}[operator]
            return f"{expr} {symbol} {operand}"
        raise LedgerbaseError(f"unknown operator {operator}", code="PGRST100")

    def _list_converter(self, operand: PgType, *, like: bool = False) -> Convert:
        element = scalar_converter(self.dialect, operand)

        def convert(raw: Any) -> Any:
            items = [str(v).replace("*", "%") if like else element(v) for v in raw]
            if self.sqlite:
                return orjson.dumps(items, default=str).decode()
            return items

        return convert

    def _in(self, expr: str, slot: int, operand: PgType) -> str:
        if not self.sqlite and operand.kind in (TypeKind.ARRAY, TypeKind.OTHER):
            texts = self.binder.slot(slot, lambda raw: [str(v) for v in raw])
            return f"{expr} = ANY(CAST(CAST({texts} AS text[]) AS {_pg_cast_name(operand)}[]))"
        placeholder = self.binder.slot(slot, self._list_converter(operand))
        if self.sqlite:
            return f"{expr} IN (SELECT value FROM json_each({placeholder}))"
        return f"{expr} = ANY({placeholder}::{_pg_cast_name(operand)}[])"

    def _quantified(self, expr: str, condition: Condition, operand: PgType) -> str:
        operator = condition.operator
        like = operator in ("like", "ilike")
        convert = (self._list_converter(PgType("text", TypeKind.TEXT), like=like)
                   if operator in ("like", "ilike", "match", "imatch")
                   else self._list_converter(operand))
        placeholder = self.binder.slot(condition.slot, convert)
        if self.sqlite:
            test = self._binary(expr, operator, "_q.value")
            if operator == "imatch":
                test = f"{expr} REGEXP ('(?i)' || _q.value)"
            if condition.quantifier == "any":
                return f"EXISTS (SELECT 1 FROM json_each({placeholder}) AS _q WHERE {test})"
            return f"NOT EXISTS (SELECT 1 FROM json_each({placeholder}) AS _q WHERE NOT ({test}))"
        symbol = {**_COMPARISON, "like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}[operator]
        element = "text" if operator in ("like", "ilike", "match", "imatch") else _pg_cast_name(operand)
        return f"{expr} {symbol} {condition.quantifier.upper()}({placeholder}::{element}[])"  # type: ignore[union-attr]

    def _postgres_only(self, expr: str, item: ResolvedCondition, operand: PgType) -> str:
        operator = item.condition.operator
        if self.sqlite:
            feature = "full-text search" if operator in _FTS_FUNCTION else f"the {operator} operator"
            raise LedgerbaseError(
                f"{feature} is not supported on SQLite", code="PGRST127",
                details=f"{operator} needs PostgreSQL array, range, JSON containment or text search support",
                hint="Run Ledgerbase on PostgreSQL to use this filter.",
            )
        slot = item.condition.slot
        if operator in _FTS_FUNCTION:
            function = _FTS_FUNCTION[operator]
            value = self.binder.slot(slot, str)
            language = item.condition.language
            if language is not None:
                config = self.binder.const(language) + "::regconfig"
                vector = expr if item.column.type.name == "tsvector" else f"to_tsvector({config}, {expr})"
                return f"{vector} @@ {function}({config}, {value})"
            vector = expr if item.column.type.name == "tsvector" else f"to_tsvector({expr})"
            return f"{vector} @@ {function}({value})"
        symbol = _PG_ONLY[operator]
        if operand.kind is TypeKind.ARRAY:
            def to_list(raw: Any) -> Any:
                text = str(raw)
                if text.startswith("(") and text.endswith(")"):
                    text = "{" + text[1:-1] + "}"
                return parse_array_literal(operand, text)

            return f"{expr} {symbol} {self.binder.slot(slot, to_list)}::{_pg_cast_name(operand)}"
        if operand.kind in (TypeKind.JSON, TypeKind.JSONB):
            return f"({expr})::jsonb {symbol} {self.binder.slot(slot, str)}::jsonb"
        return f"{expr} {symbol} CAST(CAST({self.binder.slot(slot, str)} AS text) AS {_pg_cast_name(operand)})"

    # --- order and paging -------------------------------------------------------------

    def order_by(self, alias: str, node: ReadNode) -> str:
        """``ORDER BY ...`` with PostgreSQL's NULL placement on both dialects; '' if none."""
        terms = []
        for order in node.order:
            term = order.term
            if order.relationship is not None:
                child = self.new_alias()
                value = self.column_expr(child, order.column, term.field.path)
                condition = self.join_condition(alias, child, order.relationship)
                guard = self.guard(order.relationship.target, child)
                if guard is not None:
                    condition = f"({guard}) AND {condition}"
                expr = (f"(SELECT {value} FROM {quote_ident(order.relationship.target)} AS "
                        f"{quote_ident(child)} WHERE {condition})")
            else:
                expr = self.column_expr(alias, order.column, term.field.path)
            nulls_first = term.nulls_first if term.nulls_first is not None else term.descending
            terms.append(f"{expr} {'DESC' if term.descending else 'ASC'} "
                         f"NULLS {'FIRST' if nulls_first else 'LAST'}")
        return f" ORDER BY {', '.join(terms)}" if terms else ""

    def paging(self, node: ReadNode) -> str:
        """``LIMIT ... OFFSET ...``; '' if neither was asked for."""
        sql = ""
        if node.limit_slot is not None:
            sql += f" LIMIT {self.binder.slot(node.limit_slot)}"
        elif node.offset_slot is not None and self.sqlite:
            sql += " LIMIT -1"
        if node.offset_slot is not None:
            sql += f" OFFSET {self.binder.slot(node.offset_slot)}"
        return sql

    # --- embedding --------------------------------------------------------------------

    def join_condition(self, parent: str, child: str, rel: Relationship) -> str:
        """How ``child`` rows (of the relationship's target) attach to a ``parent`` row."""
        if rel.junction is None:
            return " AND ".join(
                f"{quote_ident(child)}.{quote_ident(t)} = {quote_ident(parent)}.{quote_ident(s)}"
                for s, t in zip(rel.source_columns, rel.target_columns, strict=True)
            )
        junction = self.new_alias("j")
        to_target = " AND ".join(
            f"{quote_ident(junction)}.{quote_ident(j)} = {quote_ident(child)}.{quote_ident(t)}"
            for j, t in zip(rel.junction_target, rel.target_columns, strict=True)
        )
        to_source = " AND ".join(
            f"{quote_ident(junction)}.{quote_ident(j)} = {quote_ident(parent)}.{quote_ident(s)}"
            for j, s in zip(rel.junction_source, rel.source_columns, strict=True)
        )
        guard = self.guard(rel.junction, junction)
        guarded = f" AND ({guard})" if guard is not None else ""
        return (f"EXISTS (SELECT 1 FROM {quote_ident(rel.junction)} AS {quote_ident(junction)} "
                f"WHERE {to_target} AND {to_source}{guarded})")

    def _exists(self, parent: str, embed: EmbedOut) -> str:
        child = self.new_alias()
        join = self.join_condition(parent, child, embed.relationship)
        where = self.where(child, embed.node, (join,))
        return f"EXISTS (SELECT 1 FROM {quote_ident(embed.node.table.name)} AS {quote_ident(child)} WHERE {where})"

    def embed_expr(self, parent: str, embed: EmbedOut) -> str:
        """A sub-select yielding the embedded object (to-one) or array (to-many) as JSON."""
        child = self.new_alias()
        node = embed.node
        join = self.join_condition(parent, child, embed.relationship)
        where = self.where(child, node, (join,))
        source = f"{quote_ident(node.table.name)} AS {quote_ident(child)} WHERE {where}"
        tail = ("" if embed.to_one else self.order_by(child, node) + self.paging(node))
        if self.sqlite:
            obj = self.json_object(child, node)
            if embed.to_one:
                return f"json((SELECT {obj} FROM {source}))"
            rows = self.new_alias("_e")
            return (f"json((SELECT '[' || coalesce(group_concat({rows}.j, ','), '') || ']' FROM "
                    f"(SELECT {obj} AS j FROM {source}{tail}) AS {rows}))")
        rows = self.new_alias("_e")
        columns = self.select_list(child, node)
        if embed.to_one:
            return f"(SELECT row_to_json({rows}) FROM (SELECT {columns} FROM {source}) AS {rows})"
        return (f"(SELECT coalesce(json_agg({rows}), '[]') FROM "
                f"(SELECT {columns} FROM {source}{tail}) AS {rows})")

    def _spread_exprs(self, parent: str, embed: EmbedOut) -> list[tuple[str, str]]:
        """For ``...rel(cols)``: one scalar sub-select per column of the to-one embed.

        The columns, the join and the filters are compiled once; each sub-select is its
        own scope, so they share the alias and (numbered) parameters.
        """
        child = self.new_alias()
        node = embed.node
        join = self.join_condition(parent, child, embed.relationship)
        where = self.where(child, node, (join,))
        source = f"{quote_ident(node.table.name)} AS {quote_ident(child)} WHERE {where}"
        return [(key, f"(SELECT {value} FROM {source})") for key, value in self._outputs(child, node)]

    def _outputs(self, alias: str, node: ReadNode) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for out in node.outputs:
            if isinstance(out, ColumnOut):
                found.append((out.key, self.output_expr(alias, out)))
            elif out.hidden:
                continue
            elif out.spread:
                found.extend(self._spread_exprs(alias, out))
            else:
                found.append((out.key, self.embed_expr(alias, out)))
        return found

    def select_list(self, alias: str, node: ReadNode) -> str:
        """PostgreSQL: ``expr AS "key", ...`` (json_agg / row_to_json name the keys)."""
        outputs = self._outputs(alias, node)
        return ", ".join(f"{expr} AS {quote_ident(key)}" for key, expr in outputs)

    def json_object(self, alias: str, node: ReadNode) -> str:
        """SQLite: ``json_object(?key, expr, ...)`` for one row of ``node``."""
        outputs = self._outputs(alias, node)
        calls = []
        for start in range(0, max(len(outputs), 1), _SQLITE_PAIRS_PER_CALL):
            chunk = outputs[start:start + _SQLITE_PAIRS_PER_CALL]
            calls.append("json_object(" + ", ".join(
                f"{self.binder.const(key)}, {expr}" for key, expr in chunk) + ")")
        if len(calls) == 1:
            return calls[0]
        raise LedgerbaseError(
            f"a response row with {len(outputs)} columns is more than SQLite can build",
            code="PGRST127", hint=f"Select at most {_SQLITE_PAIRS_PER_CALL} columns.",
        )

    # --- statements -------------------------------------------------------------------

    def read(self, node: ReadNode, source: str, *, count: bool, extra: Sequence[str] = (),
             paged: bool = True, body_only: bool = False, guard_top: bool = True) -> str:
        """``SELECT total, page_total, body`` over ``source`` (a quoted table or a call)."""
        alias = "t0"
        where = self.where(alias, node, extra, guarded=guard_top)
        where_sql = f" WHERE {where}" if where else ""
        tail = self.order_by(alias, node) + (self.paging(node) if paged else "")
        total = (f"(SELECT count(*) FROM {source} AS {quote_ident(alias)}{where_sql})"
                 if count else "NULL")
        if self.sqlite:
            obj = self.json_object(alias, node) if node.outputs else "json_object()"
            head = "" if body_only else f"{total}, count(*), "
            # rows are already JSON text: joining them, rather than json_group_array(json(row)),
            # spares parsing each row again (in-process: get-by-id 38.1 -> 35.8 us, embed 50.3 -> 47.2 us)
            return (f"SELECT {head}'[' || coalesce(group_concat(_s.j, ','), '') || ']' FROM "
                    f"(SELECT {obj} AS j FROM {source} AS {quote_ident(alias)}{where_sql}{tail}) AS _s")
        columns = self.select_list(alias, node) or "NULL AS _none"
        body = ("coalesce(json_agg(_s), '[]')::text" if node.outputs
                else "coalesce(json_agg('{}'::json), '[]')::text")
        head = "" if body_only else f"{total}, count(*), "
        return (f"SELECT {head}{body} FROM "
                f"(SELECT {columns} FROM {source} AS {quote_ident(alias)}{where_sql}{tail}) AS _s")

    def statement(self, sql: str) -> Statement:
        """Freeze ``sql`` with the parameters bound so far."""
        return Statement(sql=sql, params=tuple(self.binder.params))


def compile_read(dialect: Dialect, node: ReadNode, *, count: bool, guards: Guards | None = None) -> Statement:
    """One statement answering a table read: ``(total or NULL, page_total, body JSON text)``.

    ``guards``: the row-level policies to compile in (SQLite; PostgreSQL applies its own).
    """
    compiler = ReadCompiler(dialect, guards)
    return compiler.statement(compiler.read(node, quote_ident(node.table.name), count=count))


def compile_planned_count(dialect: Dialect, node: ReadNode) -> Statement:
    """PostgreSQL's row estimate for a read's filters (``Prefer: count=planned``)."""
    compiler = ReadCompiler(dialect)
    where = compiler.where("t0", node)
    where_sql = f" WHERE {where}" if where else ""
    return compiler.statement(
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {quote_ident(node.table.name)} AS \"t0\"{where_sql}")
