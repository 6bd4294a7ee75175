"""The schema cache: tables, columns, keys and relationships, as immutable values.

Every identifier in a request is resolved here before any SQL is built; a name
that is not in the cache never reaches SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class TypeKind(StrEnum):
    """How a column's values are coerced, compared and rendered on both dialects."""

    INTEGER = "integer"  # smallint, integer, bigint, serial
    NUMERIC = "numeric"  # numeric / decimal, with an optional scale
    FLOAT = "float"  # real, double precision
    BOOLEAN = "boolean"
    TEXT = "text"  # text, varchar, char, citext, names
    UUID = "uuid"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"  # without time zone
    TIMESTAMPTZ = "timestamptz"
    JSON = "json"
    JSONB = "jsonb"
    BYTEA = "bytea"
    ARRAY = "array"  # PostgreSQL arrays (PostgreSQL only)
    OTHER = "other"  # enums, ranges, tsvector...: passed as text, PostgreSQL only


_KIND_BY_NAME: dict[str, TypeKind] = {
    "smallint": TypeKind.INTEGER, "int2": TypeKind.INTEGER, "integer": TypeKind.INTEGER,
    "int": TypeKind.INTEGER, "int4": TypeKind.INTEGER, "bigint": TypeKind.INTEGER,
    "int8": TypeKind.INTEGER, "serial": TypeKind.INTEGER, "bigserial": TypeKind.INTEGER,
    "smallserial": TypeKind.INTEGER, "serial4": TypeKind.INTEGER, "serial8": TypeKind.INTEGER,
    "numeric": TypeKind.NUMERIC, "decimal": TypeKind.NUMERIC,
    "real": TypeKind.FLOAT, "float4": TypeKind.FLOAT, "double precision": TypeKind.FLOAT,
    "float8": TypeKind.FLOAT, "float": TypeKind.FLOAT, "double": TypeKind.FLOAT,
    "boolean": TypeKind.BOOLEAN, "bool": TypeKind.BOOLEAN,
    "text": TypeKind.TEXT, "character varying": TypeKind.TEXT, "varchar": TypeKind.TEXT,
    "character": TypeKind.TEXT, "char": TypeKind.TEXT, "bpchar": TypeKind.TEXT,
    "citext": TypeKind.TEXT, "name": TypeKind.TEXT, "clob": TypeKind.TEXT,
    "uuid": TypeKind.UUID, "date": TypeKind.DATE,
    "time": TypeKind.TIME, "time without time zone": TypeKind.TIME,
    "timestamp": TypeKind.TIMESTAMP, "timestamp without time zone": TypeKind.TIMESTAMP,
    "timestamptz": TypeKind.TIMESTAMPTZ, "timestamp with time zone": TypeKind.TIMESTAMPTZ,
    "json": TypeKind.JSON, "jsonb": TypeKind.JSONB, "bytea": TypeKind.BYTEA, "blob": TypeKind.BYTEA,
}

_TYPE_RE = re.compile(r"^\s*([a-z0-9_ ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*(\[\])?\s*$")


@dataclass(frozen=True, slots=True)
class PgType:
    """A column type as PostgreSQL names it, with what Ledgerbase needs to know of it."""

    name: str  # canonical PostgreSQL name, e.g. "integer", "numeric(10,2)", "text[]"
    kind: TypeKind
    scale: int | None = None  # numeric(p, s): s
    element: TypeKind | None = None  # for arrays

    @classmethod
    def parse(cls, declared: str) -> PgType:
        """Classify a declared type name (from pg_catalog or SQLite's declared type)."""
        text = declared.strip().lower()
        match = _TYPE_RE.match(text)
        if match is None:
            return cls(name=text, kind=TypeKind.OTHER)
        base, _precision, scale, array = match.groups()
        base = base.strip()
        kind = _KIND_BY_NAME.get(base, TypeKind.OTHER)
        if base.startswith("timestamp") and "with time zone" in base:
            kind = TypeKind.TIMESTAMPTZ
        if array:
            return cls(name=text, kind=TypeKind.ARRAY, element=kind)
        return cls(name=text, kind=kind, scale=int(scale) if scale is not None else None)


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a table or view."""

    name: str
    type: PgType
    nullable: bool = True
    has_default: bool = False
    generated: bool = False  # identity ALWAYS / generated columns cannot be written
    position: int = 0
    description: str | None = None
    max_length: int | None = None
    default_sql: str | None = None  # SQLite: the declared DEFAULT expression, from the schema


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A foreign key constraint: ``columns`` of ``table`` reference ``ref_columns`` of ``ref_table``."""

    name: str
    table: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """A table or view exposed by the data API."""

    name: str
    schema: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    is_view: bool = False
    insertable: bool = True
    description: str | None = None
    rls: bool = False  # row-level security enabled: only rows a policy allows
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({column.name: column for column in self.columns})

    def column(self, name: str) -> Column | None:
        """The column called ``name``, or None."""
        return self._by_name.get(name)

    def has_unique(self, columns: tuple[str, ...]) -> bool:
        """Whether ``columns`` (in any order) form the primary key or a unique key."""
        wanted = set(columns)
        keys = ((self.primary_key,) if self.primary_key else ()) + self.unique_keys
        return any(set(key) == wanted for key in keys)


class Cardinality(StrEnum):
    """How an embedded resource relates to its parent."""

    MANY_TO_ONE = "m2o"
    ONE_TO_MANY = "o2m"
    ONE_TO_ONE = "o2o"
    MANY_TO_MANY = "m2m"


@dataclass(frozen=True, slots=True)
class Relationship:
    """A way to embed ``target`` in ``source`` rows, through a foreign key (or a join table).

    For direct relationships ``source_columns`` match ``target_columns``. For
    many-to-many ones the join table ``junction`` has ``junction_source`` columns
    referencing ``source_columns`` and ``junction_target`` columns referencing
    ``target_columns``.
    """

    source: str
    target: str
    cardinality: Cardinality
    constraint: str  # the foreign key's name (for m2m: the one towards the target)
    source_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    junction: str | None = None
    junction_source: tuple[str, ...] = ()
    junction_target: tuple[str, ...] = ()
    junction_constraint: str | None = None  # m2m: the join table's key towards the source


@dataclass(frozen=True, slots=True)
class FunctionParam:
    """A parameter of an RPC function."""

    name: str
    type: PgType
    has_default: bool = False


@dataclass(frozen=True, slots=True)
class Function:
    """A function callable at ``/rest/v1/rpc/<name>``.

    On PostgreSQL it is a real function; on SQLite ``body`` holds the SQLite SQL
    of a ``LANGUAGE sql`` function declared in a migration, with ``:name``
    placeholders for its parameters.
    """

    name: str
    schema: str
    params: tuple[FunctionParam, ...]
    return_type: PgType
    returns_set: bool = False
    returns_table: str | None = None  # the table whose row type it returns, if any
    volatile: bool = True
    body: str | None = None


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A ``CREATE POLICY`` as the SQLite translator stored it (see ``ledgerbase.auth.policies``)."""

    table: str
    name: str
    compiled: str | None  # JSON; None when it predates compilation (enforced as "deny")


@dataclass(frozen=True, slots=True)
class SchemaCache:
    """Everything the planner needs to know about the exposed schema."""

    schema: str
    tables: dict[str, Table]
    relationships: dict[str, tuple[Relationship, ...]]  # by source table
    functions: dict[str, Function] = field(default_factory=dict)
    loaded: bool = True  # False for the placeholder used until the database first answers
    # SQLite: the row-level policies of migrations, compiled (ledgerbase.auth.policies);
    # PostgreSQL enforces its own, so there this stays empty
    policies: tuple[StoredPolicy, ...] = ()

    def table(self, name: str) -> Table | None:
        """The exposed table or view called ``name``, or None."""
        return self.tables.get(name)

    def relationships_from(self, source: str) -> tuple[Relationship, ...]:
        """Every relationship that lets ``source`` rows embed another table."""
        return self.relationships.get(source, ())


def build_relationships(tables: dict[str, Table]) -> dict[str, tuple[Relationship, ...]]:
    """Derive many-to-one, one-to-many and many-to-many relationships from foreign keys.

    As PostgREST does: a join table is one whose foreign keys' columns are all
    part of its primary key (or of one unique key), referencing two tables.
    """
    found: dict[str, list[Relationship]] = {name: [] for name in tables}
    for table in tables.values():
        for fk in table.foreign_keys:
            if fk.ref_table not in tables:
                continue
            one_to_one = table.has_unique(fk.columns)
            found[table.name].append(Relationship(
                source=table.name, target=fk.ref_table,
                cardinality=Cardinality.ONE_TO_ONE if one_to_one else Cardinality.MANY_TO_ONE,
                constraint=fk.name, source_columns=fk.columns, target_columns=fk.ref_columns,
            ))
            found[fk.ref_table].append(Relationship(
                source=fk.ref_table, target=table.name,
                cardinality=Cardinality.ONE_TO_ONE if one_to_one else Cardinality.ONE_TO_MANY,
                constraint=fk.name, source_columns=fk.ref_columns, target_columns=fk.columns,
            ))
    for junction in tables.values():
        fks = [fk for fk in junction.foreign_keys if fk.ref_table in tables]
        key_columns = set(junction.primary_key)
        for first in fks:
            for second in fks:
                if first is second:
                    continue
                if not (set(first.columns) | set(second.columns)) <= key_columns and not any(
                    (set(first.columns) | set(second.columns)) <= set(unique)
                    for unique in junction.unique_keys
                ):
                    continue
                found[first.ref_table].append(Relationship(
                    source=first.ref_table, target=second.ref_table,
                    cardinality=Cardinality.MANY_TO_MANY, constraint=second.name,
                    source_columns=first.ref_columns, target_columns=second.ref_columns,
                    junction=junction.name, junction_source=first.columns,
                    junction_target=second.columns, junction_constraint=first.name,
                ))
    return {name: tuple(rels) for name, rels in found.items()}
