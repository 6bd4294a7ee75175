"""Plan a parsed request against the schema cache: every name is resolved here.

Unknown tables, columns, relationships and operators fail with PostgREST's
errors before any SQL exists. The result is a tree of ``ReadNode`` values that
the compiler turns into one statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledgerbase.db.schema import Cardinality, Column, Relationship, SchemaCache, Table, TypeKind
from ledgerbase.errors import LedgerbaseError, SchemaError
from ledgerbase.rest.request import (
    ApiRequest,
    Condition,
    JsonStep,
    Logic,
    NodeParams,
    OrderTerm,
    SelectEmbed,
    SelectField,
    SelectItem,
)

ALLOWED_CASTS = {
    "text": "text", "varchar": "text", "int": "integer", "integer": "integer", "int4": "integer",
    "int8": "bigint", "bigint": "bigint", "smallint": "smallint", "int2": "smallint",
    "numeric": "numeric", "decimal": "numeric", "float": "double precision",
    "float8": "double precision", "double precision": "double precision", "real": "real",
    "float4": "real", "boolean": "boolean", "bool": "boolean", "json": "json", "jsonb": "jsonb",
    "date": "date", "timestamptz": "timestamptz", "timestamp": "timestamp", "uuid": "uuid",
}


@dataclass(frozen=True, slots=True)
class ColumnOut:
    """A column (or a JSON path into it, or a cast of it) in the response."""

    key: str
    column: Column
    path: tuple[JsonStep, ...] = ()
    cast: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedCondition:
    """A filter whose column exists."""

    column: Column
    condition: Condition


@dataclass(frozen=True, slots=True)
class ResolvedLogic:
    """An and/or tree whose columns exist."""

    conjunction: str
    negated: bool
    children: tuple[ResolvedCondition | ResolvedLogic | EmbedPresence, ...]


@dataclass(frozen=True, slots=True)
class EmbedPresence:
    """``clients=is.null`` / ``clients=not.is.null``: parents with or without related rows."""

    embed: EmbedOut
    present: bool


Filter = ResolvedCondition | ResolvedLogic | EmbedPresence


@dataclass(frozen=True, slots=True)
class ResolvedOrder:
    """An order term; ``relationship`` is set when ordering by a to-one embedded column."""

    column: Column
    term: OrderTerm
    relationship: Relationship | None = None


@dataclass(frozen=True, slots=True)
class EmbedOut:
    """An embedded resource in the response."""

    key: str
    node: ReadNode
    relationship: Relationship
    inner: bool
    spread: bool
    hidden: bool = False  # ``rel()``: used to filter (with !inner), not output

    @property
    def to_one(self) -> bool:
        """Whether the embed is a single object (many-to-one, one-to-one) rather than an array."""
        return self.relationship.cardinality in (Cardinality.MANY_TO_ONE, Cardinality.ONE_TO_ONE)


Output = ColumnOut | EmbedOut


@dataclass(frozen=True, slots=True)
class ReadNode:
    """One table of a read: what to output, how to filter, order and page it."""

    table: Table
    path: tuple[str, ...]
    outputs: tuple[Output, ...]
    filters: tuple[Filter, ...] = ()
    order: tuple[ResolvedOrder, ...] = ()
    limit_slot: int | None = None
    offset_slot: int | None = None
    addresses: tuple[tuple[str, ...], ...] = ()  # the paths (by alias or by name) that reach it


def resolve_table(cache: SchemaCache, name: str) -> Table:
    """The exposed table ``name``; 404 with 42P01 as PostgreSQL says it otherwise."""
    table = cache.table(name)
    if table is None:
        raise LedgerbaseError(f'relation "{cache.schema}.{name}" does not exist', code="42P01",
                              status=404)
    return table


def resolve_column(table: Table, name: str) -> Column:
    """The column ``name`` of ``table``; 400 with 42703 otherwise."""
    column = table.column(name)
    if column is None:
        raise LedgerbaseError(f"column {table.name}.{name} does not exist", code="42703")
    return column


def plan_read(cache: SchemaCache, table: Table, request: ApiRequest) -> ReadNode:
    """Plan the read part of ``request`` (the select tree, filters, order, paging)."""
    node = _plan_node(cache, table, request.select, ((),), request)
    known = _paths(node)
    for params in request.nodes:
        if params.path not in known:
            name = params.path[-1]
            raise LedgerbaseError(
                f"'{name}' is not an embedded resource in this request", code="PGRST108",
                hint=f"Verify that '{name}' is included in the 'select' query parameter.",
            )
    return node


def _paths(node: ReadNode) -> set[tuple[str, ...]]:
    found = set(node.addresses) | {node.path}
    for output in node.outputs:
        if isinstance(output, EmbedOut):
            found |= _paths(output.node)
    return found


def _node_params(request: ApiRequest, addresses: tuple[tuple[str, ...], ...]) -> NodeParams | None:
    """The filters, order and paging given for a resource under any of its addresses, merged."""
    found = [params for address in addresses if (params := request.node(address)) is not None]
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    return NodeParams(
        path=found[0].path, filters=tuple(f for params in found for f in params.filters),
        order=next((params.order for params in found if params.order), ()),
        limit_slot=next((p.limit_slot for p in found if p.limit_slot is not None), None),
        offset_slot=next((p.offset_slot for p in found if p.offset_slot is not None), None),
    )


def _plan_node(cache: SchemaCache, table: Table, select: tuple[SelectItem, ...],
               addresses: tuple[tuple[str, ...], ...], request: ApiRequest) -> ReadNode:
    outputs: list[Output] = []
    for item in select:
        if isinstance(item, SelectField):
            if item.field.name == "*":
                outputs.extend(ColumnOut(key=column.name, column=column) for column in table.columns)
                continue
            column = resolve_column(table, item.field.name)
            check_json_path(column, item.field.path)
            cast = None
            if item.cast is not None:
                cast = ALLOWED_CASTS.get(item.cast.lower())
                if cast is None:
                    raise LedgerbaseError(f'type "{item.cast}" does not exist', code="42704")
            outputs.append(ColumnOut(key=item.alias or item.field.output_name, column=column,
                                     path=item.field.path, cast=cast))
        else:
            outputs.append(_plan_embed(cache, table, item, addresses, request))
    params = _node_params(request, addresses)
    embeds = {out.key: out for out in outputs if isinstance(out, EmbedOut)}
    filters = tuple(_resolve_filter(table, f, embeds) for f in params.filters) if params else ()
    order = tuple(_resolve_order(cache, table, term) for term in params.order) if params else ()
    return ReadNode(table=table, path=addresses[0], outputs=tuple(outputs), filters=filters,
                    order=order, limit_slot=params.limit_slot if params else None,
                    offset_slot=params.offset_slot if params else None, addresses=addresses)


def _plan_embed(cache: SchemaCache, table: Table, item: SelectEmbed,
                addresses: tuple[tuple[str, ...], ...], request: ApiRequest) -> EmbedOut:
    relationship = find_relationship(cache, table, item.relation, item.hint)
    target = resolve_table(cache, relationship.target)
    key = item.alias or item.relation
    # PostgREST lets embedded parameters name an aliased embed by its alias or its relation
    names = (key,) if key == item.relation else (key, item.relation)
    child_addresses = tuple(address + (name,) for name in names for address in addresses)
    child = _plan_node(cache, target, item.items, child_addresses, request)
    visible = any(isinstance(out, ColumnOut) or not out.hidden for out in child.outputs)
    embed = EmbedOut(key=key, node=child, relationship=relationship, inner=item.inner,
                     spread=item.spread, hidden=not visible)
    if item.spread and not embed.to_one:
        raise LedgerbaseError(
            f"A spread operation on '{item.relation}' is not possible",
            code="PGRST119",
            details=f"'{table.name}' and '{item.relation}' do not form a many-to-one or one-to-one relationship",
        )
    return embed


def find_relationship(cache: SchemaCache, table: Table, name: str, hint: str | None) -> Relationship:
    """The relationship embedding ``name`` in ``table`` rows (PGRST200 / PGRST201 otherwise)."""
    candidates = [
        rel for rel in cache.relationships_from(table.name)
        # a self-reference's parent (many-to-one) is embedded by column or constraint name only
        if (rel.target == name and not (rel.source == rel.target and rel.junction is None
                                        and rel.cardinality is Cardinality.MANY_TO_ONE))
        or (rel.cardinality in (Cardinality.MANY_TO_ONE, Cardinality.ONE_TO_ONE)
            and rel.source_columns == (name,))
        or (rel.constraint == name and rel.junction is None)
    ]
    if hint is not None:
        candidates = [
            rel for rel in candidates
            if hint in (rel.constraint, rel.junction, rel.junction_constraint)
            or (len(rel.source_columns) == 1 and hint == rel.source_columns[0])
            or (len(rel.target_columns) == 1 and hint == rel.target_columns[0])
        ]
    if not candidates:
        using = f"' using the hint '{hint}" if hint else ""
        raise SchemaError(
            f"Could not find a relationship between '{table.name}' and '{name}' in the schema cache",
            code="PGRST200",
            details=f"Searched for a foreign key relationship between '{table.name}' and "
                    f"'{name}{using}' in the schema '{cache.schema}', but no matches were found.",
        )
    if len(candidates) > 1:
        details = [
            {
                "cardinality": rel.cardinality.value.replace("m2o", "many-to-one")
                .replace("o2m", "one-to-many").replace("m2m", "many-to-many")
                .replace("o2o", "one-to-one"),
                "embedding": f"{table.name} with {rel.target}",
                "relationship": _describe(rel),
            }
            for rel in candidates
        ]
        options = ", ".join(f"'{name}!{rel.junction or rel.constraint}'" for rel in candidates)
        raise LedgerbaseError(
            f"Could not embed because more than one relationship was found for '{table.name}' and '{name}'",
            code="PGRST201", status=300, details=details,  # type: ignore[arg-type]
            hint=f"Try changing '{name}' to one of the following: {options}. "
                 "Find the desired relationship in the 'details' key.",
        )
    return candidates[0]


def _describe(rel: Relationship) -> str:
    """How PostgREST names a relationship in PGRST201's details."""
    if rel.junction is not None:
        return (f"{rel.junction} using {rel.junction_constraint}({', '.join(rel.junction_source)}) "
                f"and {rel.constraint}({', '.join(rel.junction_target)})")
    return (f"{rel.constraint} using {rel.source}({', '.join(rel.source_columns)}) and "
            f"{rel.target}({', '.join(rel.target_columns)})")


def _resolve_filter(table: Table, item: Condition | Logic, embeds: dict[str, EmbedOut]) -> Filter:
    if isinstance(item, Logic):
        return ResolvedLogic(conjunction=item.conjunction, negated=item.negated,
                             children=tuple(_resolve_filter(table, c, embeds) for c in item.children))
    if table.column(item.field.name) is None and item.field.name in embeds and not item.field.path:
        if item.operator != "is" or item.keyword not in ("null", "not_null"):
            raise LedgerbaseError(
                f"Bad operator on the '{item.field.name}' embedded resource", code="PGRST120",
                details="Only is null or not is null filters are allowed on embedded resources")
        present = (item.keyword == "not_null") != item.negated
        return EmbedPresence(embed=embeds[item.field.name], present=present)
    column = resolve_column(table, item.field.name)
    _check_operator(table, column, item)
    return ResolvedCondition(column=column, condition=item)


def _check_operator(table: Table, column: Column, condition: Condition) -> None:
    kind = column.type.kind
    text_result = bool(condition.field.path) and condition.field.path[-1].text
    if condition.operator in ("like", "ilike", "match", "imatch") and not text_result \
            and kind not in (TypeKind.TEXT, TypeKind.OTHER):
        symbol = {"like": "~~", "ilike": "~~*", "match": "~", "imatch": "~*"}[condition.operator]
        raise LedgerbaseError(f"operator does not exist: {column.type.name} {symbol} unknown",
                              code="42883", status=404,
                              hint="No operator matches the given name and argument types. "
                                   "You might need to add explicit type casts.")
    check_json_path(column, condition.field.path)


def check_json_path(column: Column, path: tuple[JsonStep, ...]) -> None:
    """JSON arrows apply to json/jsonb columns, and nothing follows a ``->>`` (text); 42883 otherwise."""
    if not path:
        return
    source = column.type.name if column.type.kind not in (TypeKind.JSON, TypeKind.JSONB) else None
    following = path[0]
    if source is None:
        for step, after in zip(path, path[1:], strict=False):
            if step.text:
                source, following = "text", after
                break
    if source is not None:
        operand = "integer" if following.index is not None else "unknown"
        raise LedgerbaseError(f"operator does not exist: {source} -> {operand}", code="42883", status=404,
                              hint="No operator matches the given name and argument types. "
                                   "You might need to add explicit type casts.")


def _resolve_order(cache: SchemaCache, table: Table, term: OrderTerm) -> ResolvedOrder:
    if term.relation is None:
        column = resolve_column(table, term.field.name)
        check_json_path(column, term.field.path)
        return ResolvedOrder(column=column, term=term)
    relationship = find_relationship(cache, table, term.relation, None)
    if relationship.cardinality not in (Cardinality.MANY_TO_ONE, Cardinality.ONE_TO_ONE):
        raise LedgerbaseError(
            f"A related order on '{term.relation}' is not possible", code="PGRST118",
            details=f"'{table.name}' and '{term.relation}' do not form a many-to-one or one-to-one relationship",
        )
    target = resolve_table(cache, relationship.target)
    return ResolvedOrder(column=resolve_column(target, term.field.name), term=term,
                         relationship=relationship)
