"""Translation of PostgreSQL migrations to SQLite, following docs/sqlite-storage.md.

``translate_to_sqlite`` is pure: it splits a migration into statements (keeping
each one's starting line), parses each with sqlglot and turns it into SQLite
statements whose declared types, defaults and literal values are the stored
forms of the storage contract. Functions and policies become rows of the
bookkeeping tables ``_ledgerbase_functions`` and ``_ledgerbase_policies``,
which the migration runner creates. Anything SQLite cannot express raises
``TranslationError`` naming file, line and construct.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.tokens import Token, TokenType  # type: ignore[attr-defined]  # re-exported by sqlglot.tokens

from ledgerbase.auth.schema import SQLITE_PREFIX as AUTH_SQLITE_PREFIX
from ledgerbase.db.dialect import quote_ident
from ledgerbase.db.schema import PgType, TypeKind
from ledgerbase.db.values import coerce_text, split_top_level, to_sqlite
from ledgerbase.errors import LedgerbaseError

ColumnTypes = Mapping[str, Mapping[str, str]]
"""Table name -> (column name -> canonical PostgreSQL type), columns in table order."""

TIMESTAMPTZ_NOW = "(rtrim(rtrim(strftime('%Y-%m-%dT%H:%M:%f','now'),'0'),'.') || '+00:00')"
TIMESTAMP_NOW = "(rtrim(rtrim(strftime('%Y-%m-%dT%H:%M:%f','now'),'0'),'.'))"
CURRENT_DATE = "(date('now'))"
RANDOM_UUID = (
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))"
)

_INSERT_FUNCTION = ("INSERT INTO _ledgerbase_functions (name, params, return_type, returns_set, body) "
                    "VALUES (?, ?, ?, ?, ?)")
_REPLACE_FUNCTION = _INSERT_FUNCTION.replace("INSERT INTO", "INSERT OR REPLACE INTO", 1)
_DELETE_FUNCTION = "DELETE FROM _ledgerbase_functions WHERE name = ?"
_INSERT_POLICY = ("INSERT INTO _ledgerbase_policies (table_name, name, statement, compiled) "
                  "VALUES (?, ?, ?, ?)")
# Stands for the policy's own table in a compiled expression; replaced by the alias the
# statement gives that table (ledgerbase.auth.policies).
POLICY_SELF = "__lb_self__"
_POLICY_COMMANDS = ("ALL", "SELECT", "INSERT", "UPDATE", "DELETE")
_DELETE_POLICY = "DELETE FROM _ledgerbase_policies WHERE table_name = ? AND name = ?"
_DELETE_RLS = "DELETE FROM _ledgerbase_policies WHERE table_name = ? AND name IS NULL"
_DELETE_TABLE_POLICIES = "DELETE FROM _ledgerbase_policies WHERE table_name = ?"
# the tables whose changes keep the whole old row (ledgerbase.ledger.capture)
_FULL_IDENTITY = "INSERT OR IGNORE INTO _ledgerbase_replica_identity (table_name) VALUES (?)"
_DEFAULT_IDENTITY = "DELETE FROM _ledgerbase_replica_identity WHERE table_name = ?"
_RENAME_IDENTITY = "UPDATE _ledgerbase_replica_identity SET table_name = ? WHERE table_name = ?"

# Statements with no meaning on SQLite: accepted and skipped (docs/migrations.md).
_IGNORED = {"COMMENT", "GRANT", "REVOKE", "CREATE ROLE", "CREATE USER", "CREATE EXTENSION",
            "CREATE SCHEMA", "ALTER DEFAULT PRIVILEGES"}

_SIMPLE_TYPES: dict[exp.DType, str] = {
    exp.DataType.Type.INT: "integer", exp.DataType.Type.BIGINT: "bigint",
    exp.DataType.Type.SMALLINT: "smallint", exp.DataType.Type.BOOLEAN: "boolean",
    exp.DataType.Type.TEXT: "text", exp.DataType.Type.FLOAT: "real",
    exp.DataType.Type.DOUBLE: "double precision", exp.DataType.Type.TIMESTAMPTZ: "timestamptz",
    exp.DataType.Type.TIMESTAMP: "timestamp", exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIME: "time", exp.DataType.Type.UUID: "uuid", exp.DataType.Type.JSON: "json",
    exp.DataType.Type.JSONB: "jsonb", exp.DataType.Type.VARBINARY: "bytea",
}
_SIZED_TYPES: dict[exp.DType, str] = {
    exp.DataType.Type.DECIMAL: "numeric", exp.DataType.Type.VARCHAR: "varchar",
    exp.DataType.Type.CHAR: "character",
}
_SERIAL_TYPES: dict[str, str] = {
    "serial": "integer", "serial4": "integer", "bigserial": "bigint", "serial8": "bigint",
    "smallserial": "smallint", "serial2": "smallint",
}
_TABLE_CONSTRAINTS = (exp.PrimaryKey, exp.ForeignKey, exp.Constraint, exp.UniqueColumnConstraint,
                      exp.CheckColumnConstraint)
_SEQUENCE_FUNCTIONS = {"nextval", "setval", "currval", "lastval"}
_NOW_FUNCTIONS = {"transaction_timestamp", "statement_timestamp", "clock_timestamp"}
_FUNCTION_OPTIONS = {"LANGUAGE", "AS", "IMMUTABLE", "STABLE", "VOLATILE", "STRICT", "CALLED",
                     "SECURITY", "PARALLEL", "COST", "ROWS", "SET", "LEAKPROOF", "NOT", "WINDOW",
                     "SUPPORT", "TRANSFORM", "EXTERNAL", "BEGIN", "RETURN"}
_DOLLAR_QUOTED = re.compile(r"^\$([A-Za-z_0-9]*)\$(.*)\$\1\$$", re.DOTALL)
_ARGUMENT = re.compile(r'^(?:IN\s+)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z_0-9$]*)\s+(.+?)'
                       r"(?:\s+(?:DEFAULT\b|=)\s*(.+))?$", re.DOTALL | re.IGNORECASE)


class TranslationError(LedgerbaseError):
    """A migration statement that cannot be translated for SQLite."""

    status = 400
    code = "PGRST100"

    def __init__(self, filename: str, line: int, what: str) -> None:
        super().__init__(f"{filename} line {line}: {what}")
        self.filename = filename
        self.line = line


@dataclass(frozen=True, slots=True)
class TranslatedStatement:
    """One SQLite statement of a translated migration, with the line its source starts on."""

    line: int
    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class _Source:
    """One statement of the migration text, as written."""

    line: int
    text: str
    tokens: tuple[Token, ...]


def translate_to_sqlite(sql: str, filename: str,
                        tables: ColumnTypes | None = None) -> list[TranslatedStatement]:
    """Translate a PostgreSQL migration into SQLite statements.

    ``tables`` gives the column types of tables created by earlier migrations,
    so that literal values can be converted to their stored forms; tables
    created in ``sql`` itself are added to a private copy. Raises
    ``TranslationError`` (file, line, construct) for what SQLite cannot express.
    """
    known = {table: dict(columns) for table, columns in (tables or {}).items()}
    translated: list[TranslatedStatement] = []
    for source in _split(sql, filename):
        translator = _StatementTranslator(filename, source, known)
        translated.extend(translator.translate())
    return translated


def canonical_type(data_type: exp.DataType) -> str | None:
    """PostgreSQL's canonical lower-case name of a type Ledgerbase stores on SQLite, or None."""
    kind = data_type.this
    if kind in _SIMPLE_TYPES:
        name = _SIMPLE_TYPES[kind]
        if kind in (exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMP) and data_type.expressions:
            return f"{name}({data_type.expressions[0].sql()})"
        return name
    if kind in _SIZED_TYPES:
        sizes = ",".join(param.sql() for param in data_type.expressions)
        return f"{_SIZED_TYPES[kind]}({sizes})" if sizes else _SIZED_TYPES[kind]
    return None


def _serial_base(data_type: exp.DataType) -> str | None:
    """``integer`` / ``bigint`` / ``smallint`` for serial types, else None."""
    return _SERIAL_TYPES.get(data_type.sql("postgres").lower())


# --- splitting -------------------------------------------------------------------------------

def _split(sql: str, filename: str) -> list[_Source]:
    """The statements of ``sql`` with their starting lines (comments and blank lines skipped)."""
    try:
        tokens = Postgres().tokenize(sql)
    except TokenError as error:
        raise TranslationError(filename, 1, f"cannot read the file: {error}") from None
    sources: list[_Source] = []
    current: list[Token] = []
    for token in [*tokens, None]:
        if token is not None and token.token_type is not TokenType.SEMICOLON:
            current.append(token)
            continue
        if current:
            start, end = current[0].start, current[-1].end + 1
            sources.append(_Source(line=sql.count("\n", 0, start) + 1, text=sql[start:end],
                                   tokens=tuple(current)))
        current = []
    return sources


def _words(tokens: tuple[Token, ...], count: int = 8) -> list[str]:
    return [token.text.upper() for token in tokens[:count]]


def _construct(words: list[str]) -> str:
    """The kind of statement, e.g. ``CREATE TABLE`` or ``CREATE UNIQUE INDEX``."""
    if words[:1] == ["CREATE"]:
        rest = words[1:]
        if rest[:2] == ["OR", "REPLACE"]:
            rest = rest[2:]
        if rest[:1] == ["UNIQUE"] and rest[1:2] == ["INDEX"]:
            return "CREATE UNIQUE INDEX"
        if rest[:1] in (["TEMP"], ["TEMPORARY"], ["UNLOGGED"], ["MATERIALIZED"]):
            return " ".join(["CREATE", *rest[:2]])
        if rest[:2] == ["EVENT", "TRIGGER"] or rest[:2] == ["CONSTRAINT", "TRIGGER"]:
            return "CREATE TRIGGER"
        return "CREATE " + (rest[0] if rest else "")
    if words[:1] == ["ALTER"]:
        if words[1:3] == ["DEFAULT", "PRIVILEGES"]:
            return "ALTER DEFAULT PRIVILEGES"
        if words[1:2] == ["TABLE"] and "ROW" in words and "SECURITY" in words:
            return "ALTER TABLE ROW LEVEL SECURITY"
        if words[1:2] == ["TABLE"] and "REPLICA" in words and "IDENTITY" in words:
            return "ALTER TABLE REPLICA IDENTITY"
        return " ".join(words[:2])
    if words[:1] in (["DROP"],):
        return " ".join(words[:2])
    return words[0] if words else ""


def _name_of(token: Token) -> str:
    """An identifier as PostgreSQL folds it: quoted kept, unquoted lower-cased."""
    return token.text if token.token_type is TokenType.IDENTIFIER else token.text.lower()


AUTH_HELPERS = frozenset({"uid", "role", "jwt", "email"})


def auth_helper(item: exp.Expr) -> str | None:
    """``uid`` for ``auth.uid()`` (likewise role, jwt, email); None for anything else."""
    if (isinstance(item, exp.Dot) and isinstance(item.this, exp.Identifier)
            and item.this.name.lower() == "auth" and isinstance(item.expression, exp.Anonymous)
            and not item.expression.expressions):
        name = str(item.expression.this).lower()
        return name if name in AUTH_HELPERS else None
    return None


def _select_sources(select: exp.Select) -> list[exp.Table]:
    """The tables a SELECT reads directly (its FROM and JOINs, not its sub-queries)."""
    found: list[exp.Table] = []
    for clause in (select.args.get("from_"), select.args.get("from"), *(select.args.get("joins") or [])):
        if clause is not None and isinstance(clause.this, exp.Table):
            found.append(clause.this)
    return found


def _qualified_name_at(tokens: tuple[Token, ...], index: int) -> tuple[str, str | None, int]:
    """Read ``[schema.]name`` at ``index``: (name, schema, index after it)."""
    name = _name_of(tokens[index])
    schema = None
    if index + 2 < len(tokens) and tokens[index + 1].token_type is TokenType.DOT:
        schema, name = name, _name_of(tokens[index + 2])
        index += 2
    return name, schema, index + 1


# --- statements ------------------------------------------------------------------------------

class _StatementTranslator:
    """Translates one source statement; ``tables`` is updated with the columns it declares."""

    def __init__(self, filename: str, source: _Source, tables: dict[str, dict[str, str]]) -> None:
        self.filename = filename
        self.source = source
        self.tables = tables

    def fail(self, what: str, line: int | None = None) -> TranslationError:
        return TranslationError(self.filename, line or self.source.line, what)

    def refuse(self, construct: str, why: str = "", line: int | None = None) -> TranslationError:
        return self.fail(f"cannot translate {construct} for SQLite" + (f" ({why})" if why else ""), line)

    def emit(self, sql: str, params: tuple[Any, ...] = ()) -> TranslatedStatement:
        return TranslatedStatement(line=self.source.line, sql=sql, params=params)

    def line_of(self, node: exp.Expr) -> int:
        """The file line of a parsed node, when sqlglot kept its position."""
        meta = node.meta if isinstance(node, exp.Identifier) else getattr(node.this, "meta", {})
        relative = meta.get("line") if isinstance(meta, dict) else None
        return self.source.line + int(relative) - 1 if relative else self.source.line

    def translate(self) -> list[TranslatedStatement]:
        construct = _construct(_words(self.source.tokens))
        handlers: dict[str, Callable[[], list[TranslatedStatement]]] = {
            "CREATE TABLE": self.create_table, "CREATE INDEX": self.create_index,
            "CREATE UNIQUE INDEX": self.create_index, "CREATE VIEW": self.create_view,
            "CREATE FUNCTION": self.create_function, "CREATE POLICY": self.create_policy,
            "ALTER TABLE ROW LEVEL SECURITY": self.row_level_security,
            "ALTER TABLE REPLICA IDENTITY": self.replica_identity,
            "ALTER TABLE": self.alter_table, "INSERT": self.dml, "UPDATE": self.dml,
            "DELETE": self.dml, "DROP TABLE": self.drop, "DROP VIEW": self.drop,
            "DROP INDEX": self.drop, "DROP FUNCTION": self.drop_function,
            "DROP POLICY": self.drop_policy,
        }
        if construct in _IGNORED:
            return []
        handler = handlers.get(construct)
        if handler is None:
            raise self.refuse(_describe_unsupported(construct, self.source.text))
        try:
            return handler()
        except IndexError:  # a statement cut short: the token readers ran off its end
            raise self.fail(f"cannot parse {construct}: the statement is incomplete") from None

    def parse(self, construct: str, text: str | None = None) -> exp.Expr:
        """Parse the statement with sqlglot; unknown syntax is refused."""
        try:
            parsed = sqlglot.parse_one(text or self.source.text, read="postgres")
        except (ParseError, TokenError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise self.fail(f"cannot parse {construct}: {first}") from None
        if isinstance(parsed, exp.Command):
            raise self.refuse(construct, "syntax not understood")
        return normalize_identifiers(parsed, dialect="postgres")

    def sqlite(self, node: exp.Expr) -> str:
        return node.sql(dialect="sqlite")

    # --- tables --------------------------------------------------------------------------

    def create_table(self) -> list[TranslatedStatement]:
        create = self.parse("CREATE TABLE")
        schema = create.this
        if not isinstance(create, exp.Create) or not isinstance(schema, exp.Schema):
            raise self.refuse("CREATE TABLE AS")
        if create.args.get("expression") is not None:
            raise self.refuse("CREATE TABLE AS")
        properties = create.args.get("properties")
        if properties is not None and properties.expressions:
            raise self.refuse("CREATE TABLE option " + properties.expressions[0].sql("postgres"))
        table = self.table_name(schema.this)
        table_pk = _table_primary_key(schema)
        columns: dict[str, str] = {}
        moved_pk = False
        for item in schema.expressions:
            if isinstance(item, exp.ColumnDef):
                is_pk = item.name in table_pk and len(table_pk) == 1
                columns[item.name] = self.column(item, table, table_pk_column=is_pk)
                moved_pk = moved_pk or (is_pk and self._is_rowid_alias(item))
            elif isinstance(item, _TABLE_CONSTRAINTS):
                self.transform_tree(item, lambda column: columns.get(column))
            else:
                raise self.refuse("CREATE TABLE with " + _first_words(item.sql("postgres"), 2))
        if moved_pk:
            schema.set("expressions", [item for item in schema.expressions
                                       if not isinstance(item, exp.PrimaryKey)])
        self.tables[table] = columns
        statements = [self.emit(self.sqlite(create))]
        statements += [
            self.emit("INSERT OR REPLACE INTO _ledgerbase_columns (table_name, column_name, pg_type) "
                      "VALUES (?, ?, ?)", (table, item.name, columns[item.name]))
            for item in schema.expressions
            if isinstance(item, exp.ColumnDef) and columns[item.name] != item.args["kind"].sql("sqlite").lower()
        ]
        return statements

    @staticmethod
    def _is_rowid_alias(column: exp.ColumnDef) -> bool:
        return any(isinstance(constraint.args.get("kind"), exp.PrimaryKeyColumnConstraint)
                   for constraint in column.constraints)

    def column(self, column: exp.ColumnDef, table: str, *, table_pk_column: bool = False,
               adding: bool = False) -> str:
        """Rewrite a column definition in place; returns its canonical PostgreSQL type."""
        line = self.line_of(column.this)
        data_type = column.args.get("kind")
        if not isinstance(data_type, exp.DataType):
            raise self.refuse(f"column {column.name} without a type", line=line)
        constraints = list(column.constraints)
        kinds = [constraint.args.get("kind") for constraint in constraints]
        identity = any(isinstance(kind, exp.GeneratedAsIdentityColumnConstraint)
                       and kind.args.get("this") is not None and not kind.expression for kind in kinds)
        serial = _serial_base(data_type)
        declared = serial or canonical_type(data_type)
        if declared is None:
            raise self.refuse(_describe_type(data_type), line=line)
        is_pk = table_pk_column or any(isinstance(kind, exp.PrimaryKeyColumnConstraint) for kind in kinds)
        if identity or serial:
            auto = "GENERATED AS IDENTITY" if identity else data_type.sql("postgres").lower()
            if not is_pk or adding or declared not in ("integer", "bigint", "smallint"):
                raise self.refuse(
                    f"{auto} on column {table}.{column.name}",
                    "only an integer primary key numbers rows itself on SQLite; "
                    "declare it PRIMARY KEY or use a plain integer column", line=line)
            kept = [constraint for constraint, kind in zip(constraints, kinds, strict=True)
                    if not isinstance(kind, exp.GeneratedAsIdentityColumnConstraint
                                      | exp.PrimaryKeyColumnConstraint | exp.NotNullColumnConstraint)]
            column.set("kind", _declared("integer"))
            # AUTOINCREMENT: a number is never given again once its row is deleted, as
            # PostgreSQL's sequences never give one twice (a plain rowid reuses the highest)
            column.set("constraints", [exp.ColumnConstraint(kind=exp.PrimaryKeyColumnConstraint()),
                                       exp.ColumnConstraint(kind=exp.AutoIncrementColumnConstraint()), *kept])
        else:
            column.set("kind", _declared(declared))
        pg_type = PgType.parse(declared)
        for constraint in column.constraints:
            kind = constraint.args.get("kind")
            if isinstance(kind, exp.DefaultColumnConstraint):
                kind.set("this", self.default(kind.this, pg_type, line))
            elif isinstance(kind, exp.GeneratedAsIdentityColumnConstraint | exp.ComputedColumnConstraint):
                raise self.refuse("generated column " + column.name, line=line)
            elif kind is not None:
                self.transform_tree(kind, lambda name: declared if name == column.name else None)
        return declared

    def default(self, value: exp.Expr, pg_type: PgType, line: int) -> exp.Expr:
        """A column default in the stored form of ``pg_type``."""
        if isinstance(value, exp.Paren):
            value = value.this
        if _is_now(value):
            return exp.Var(this=_now_sql(pg_type))
        if isinstance(value, exp.Literal | exp.Boolean | exp.Cast) or _is_negative_number(value):
            return self.value(value, pg_type, line)
        converted = self.transform_tree(value, lambda _name: None)
        return converted if isinstance(converted, exp.Var) else exp.Paren(this=converted)

    def value(self, value: exp.Expr, pg_type: PgType | None, line: int) -> exp.Expr:
        """A literal value converted to its stored form when its column type is known."""
        if isinstance(value, exp.Cast) and value.this.is_string:
            target = self.cast_type(value)
            return self.literal(value.this.this, target, line) if target else value
        if pg_type is not None and isinstance(value, exp.Literal) and value.is_string:
            return self.literal(value.this, pg_type, line)
        if isinstance(value, exp.Boolean):
            return exp.Literal.number(1 if value.this else 0)
        return self.transform_tree(value, lambda _name: None)

    def literal(self, text: str, pg_type: PgType, line: int) -> exp.Expr:
        """A string literal of ``pg_type`` in its stored form."""
        kind = pg_type.kind
        if kind in (TypeKind.TEXT, TypeKind.OTHER):
            return exp.Literal.string(text)
        if kind in (TypeKind.JSON, TypeKind.JSONB):
            try:
                return exp.Literal.string(orjson.dumps(orjson.loads(text)).decode())
            except orjson.JSONDecodeError:
                raise self.fail(f"invalid input syntax for type {kind.value}: {text[:40]!r}", line) from None
        try:
            stored = to_sqlite(pg_type, coerce_text(pg_type, text))
        except LedgerbaseError as error:
            raise self.fail(error.message, line) from None
        if isinstance(stored, bytes):
            return exp.Var(this=f"X'{stored.hex()}'")
        if isinstance(stored, int | float):
            return exp.Literal.number(stored)
        return exp.Literal.string(str(stored))

    def cast_type(self, cast: exp.Cast) -> PgType | None:
        name = canonical_type(cast.to)
        return PgType.parse(name) if name else None

    def table_name(self, table: exp.Expr) -> str:
        """The name of a table reference; only the ``public`` schema exists on SQLite.

        ``auth.<name>`` (Ledgerbase Auth's tables, as Supabase's) is ``_ledgerbase_auth_<name>``.
        """
        if not isinstance(table, exp.Table):
            raise self.refuse("a table reference " + table.sql("postgres"))
        if table.db == "auth":
            table.set("this", exp.to_identifier(AUTH_SQLITE_PREFIX + table.name))
        elif table.db and table.db != "public":
            raise self.refuse(f"schema-qualified name {table.db}.{table.name}",
                              "SQLite has one schema; use public or no schema")
        table.set("db", None)
        table.set("catalog", None)
        return table.name

    # --- expressions ---------------------------------------------------------------------

    def transform_tree(self, node: exp.Expr,
                       column_type: Callable[[str], str | None]) -> exp.Expr:
        """Rewrite PostgreSQL-only expressions for SQLite (in place where possible)."""

        def rewrite(item: exp.Expr) -> exp.Expr:
            helper = auth_helper(item)
            if helper is not None:
                # auth.uid() and friends: SQLite functions reading the claims of the request
                # whose transaction is running (column defaults); policies bind them instead
                return exp.Anonymous(this=f"lb_auth_{helper}", expressions=[])
            if isinstance(item, exp.Boolean):
                return exp.Literal.number(1 if item.this else 0)
            if _is_now(item):
                return exp.Var(this=_now_sql(PgType.parse(
                    "timestamp" if isinstance(item, exp.Localtimestamp) else "timestamptz")))
            if isinstance(item, exp.CurrentDate):
                return exp.Var(this=CURRENT_DATE)
            if isinstance(item, exp.Uuid) or (isinstance(item, exp.Anonymous)
                                              and str(item.this).lower() == "uuid_generate_v4"):
                return exp.Var(this=RANDOM_UUID)
            if isinstance(item, exp.Anonymous) and str(item.this).lower() in _SEQUENCE_FUNCTIONS:
                raise self.refuse(f"sequence function {str(item.this).lower()}()")
            if isinstance(item, exp.Cast | exp.TryCast):
                return self.cast(item)
            if isinstance(item, exp.Interval):
                raise self.refuse("interval " + item.sql("postgres"))
            if isinstance(item, exp.Table) and item.db:
                self.table_name(item)
            if isinstance(item, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
                self.compare(item, column_type)
            return item

        return node.transform(rewrite, copy=False)

    def compare(self, comparison: exp.Binary, column_type: Callable[[str], str | None]) -> None:
        """Convert the literal of ``column <op> 'literal'`` to the column's stored form."""
        for side, other in (("this", "expression"), ("expression", "this")):
            column, value = comparison.args.get(side), comparison.args.get(other)
            if isinstance(column, exp.Column) and isinstance(value, exp.Literal) and value.is_string:
                declared = column_type(column.name)
                if declared is not None:
                    comparison.set(other, self.literal(value.this, PgType.parse(declared),
                                                       self.source.line))

    def cast(self, cast: exp.Cast) -> exp.Expr:
        target = self.cast_type(cast)
        inner: exp.Expr = cast.this
        if target is None:
            raise self.refuse("cast to " + cast.to.sql("postgres").lower())
        if isinstance(inner, exp.Literal) and inner.is_string:
            return self.literal(inner.this, target, self.source.line)
        if isinstance(inner, exp.Null):
            return inner
        storage = {
            TypeKind.INTEGER: "INTEGER", TypeKind.BOOLEAN: "INTEGER", TypeKind.NUMERIC: "NUMERIC",
            TypeKind.FLOAT: "REAL", TypeKind.TEXT: "TEXT", TypeKind.BYTEA: "BLOB",
        }.get(target.kind)
        if storage is None:  # uuid, dates, times, json: already stored as text
            return inner
        return exp.Cast(this=inner, to=_declared(storage))

    # --- indexes, views ------------------------------------------------------------------

    def create_index(self) -> list[TranslatedStatement]:
        create = self.parse("CREATE INDEX")
        index = create.this
        if not isinstance(create, exp.Create) or not isinstance(index, exp.Index):
            raise self.refuse("CREATE INDEX")
        table = self.table_name(index.args["table"])
        params = index.args.get("params")
        if params is None:
            raise self.refuse("CREATE INDEX")
        if params.args.get("using") is not None and str(params.args["using"].name).lower() != "btree":
            raise self.refuse("CREATE INDEX USING " + params.args["using"].name)
        if params.args.get("include"):
            raise self.refuse("CREATE INDEX INCLUDE")
        types = self.tables.get(table, {})
        parts: list[str] = []
        for column in params.args.get("columns") or []:
            ordered = column if isinstance(column, exp.Ordered) else exp.Ordered(this=column)
            expression = self.transform_tree(ordered.this, types.get)
            parts.append(self.sqlite(expression) + (" DESC" if ordered.args.get("desc") else ""))
        if not parts:
            raise self.refuse("CREATE INDEX without columns")
        unique = "UNIQUE " if create.args.get("unique") else ""
        # PostgreSQL's name for an unnamed index: table_column..._idx
        name = index.name or "_".join([table, *(column.name for column in index.find_all(exp.Column)),
                                       "idx"])
        exists = "IF NOT EXISTS " if create.args.get("exists") else ""
        sql = f"CREATE {unique}INDEX {exists}{self.sqlite(exp.to_identifier(name))} " \
              f"ON {self.sqlite(exp.to_identifier(table))} ({', '.join(parts)})"
        where = params.args.get("where")
        if where is not None:
            sql += " " + self.sqlite(self.transform_tree(where, types.get))
        return [self.emit(sql)]

    def create_view(self) -> list[TranslatedStatement]:
        create = self.parse("CREATE VIEW")
        if not isinstance(create, exp.Create) or create.args.get("expression") is None:
            raise self.refuse("CREATE VIEW")
        name = self.table_name(create.this if isinstance(create.this, exp.Table) else create.this.this)
        self.transform_tree(create, lambda _name: None)
        statements = []
        if create.args.get("replace"):
            create.set("replace", False)
            statements.append(self.emit(f"DROP VIEW IF EXISTS {self.sqlite(exp.to_identifier(name))}"))
        statements.append(self.emit(self.sqlite(create)))
        self.tables.pop(name, None)
        return statements

    # --- ALTER TABLE, DROP, DML -----------------------------------------------------------

    def alter_table(self) -> list[TranslatedStatement]:
        alter = self.parse("ALTER TABLE")
        if not isinstance(alter, exp.Alter) or str(alter.args.get("kind", "")).upper() != "TABLE":
            raise self.refuse("ALTER TABLE")
        table = self.table_name(alter.this)
        quoted = self.sqlite(exp.to_identifier(table))
        statements = []
        for action in alter.args.get("actions") or []:
            if isinstance(action, exp.ColumnDef):
                declared = self.column(action, table, adding=True)
                self.tables.setdefault(table, {})[action.name] = declared
                statements.append(self.emit(f"ALTER TABLE {quoted} ADD COLUMN {self.sqlite(action)}"))
            elif isinstance(action, exp.RenameColumn):
                old, new = action.this.name, action.args["to"].name
                columns = self.tables.get(table, {})
                self.tables[table] = {new if key == old else key: value for key, value in columns.items()}
                statements.append(self.emit(f"ALTER TABLE {quoted} {self.sqlite(action)}"))
            elif isinstance(action, exp.AlterRename):
                new = action.this.name
                self.tables[new] = self.tables.pop(table, {})
                statements.append(self.emit(
                    f"ALTER TABLE {quoted} RENAME TO {self.sqlite(exp.to_identifier(new))}"))
                statements.append(self.emit(_RENAME_IDENTITY, (new, table)))
            elif isinstance(action, exp.Drop) and str(action.args.get("kind", "")).upper() == "COLUMN":
                name = action.this.name
                self.tables.get(table, {}).pop(name, None)
                statements.append(self.emit(
                    f"ALTER TABLE {quoted} DROP COLUMN {self.sqlite(exp.to_identifier(name))}"))
            else:
                raise self.refuse("ALTER TABLE " + _first_words(action.sql("postgres"), 3),
                                  "SQLite can only add, rename and drop columns or rename tables")
        if not statements:
            raise self.refuse("ALTER TABLE")
        return statements

    def drop(self) -> list[TranslatedStatement]:
        construct = _construct(_words(self.source.tokens))
        drop = self.parse(construct)
        if not isinstance(drop, exp.Drop):
            raise self.refuse(construct)
        kind = str(drop.args.get("kind", "")).upper()
        targets = drop.args.get("tables") or drop.expressions or [drop.this]
        statements = []
        for target in targets:
            name = self.table_name(target)
            exists = "IF EXISTS " if drop.args.get("exists") else ""
            statements.append(self.emit(f"DROP {kind} {exists}{self.sqlite(exp.to_identifier(name))}"))
            if kind == "TABLE":
                statements.append(self.emit(_DELETE_TABLE_POLICIES, (name,)))
                statements.append(self.emit(_DEFAULT_IDENTITY, (name,)))
            if kind in ("TABLE", "VIEW"):
                self.tables.pop(name, None)
        return statements

    def dml(self) -> list[TranslatedStatement]:
        construct = _construct(_words(self.source.tokens))
        statement = self.parse(construct)
        if not isinstance(statement, exp.Insert | exp.Update | exp.Delete):
            raise self.refuse(construct)
        target = statement.this
        if isinstance(target, exp.Schema):
            table = self.table_name(target.this)
            names = [identifier.name for identifier in target.expressions]
        else:
            table = self.table_name(target)
            names = list(self.tables.get(table, {}))
        types = self.tables.get(table, {})
        source = statement.args.get("expression")
        if isinstance(statement, exp.Insert) and isinstance(source, exp.Values):
            for row in source.expressions:
                values = row.expressions if isinstance(row, exp.Tuple) else [row]
                for position, value in enumerate(values):
                    declared = types.get(names[position]) if position < len(names) else None
                    converted = self.value(value, PgType.parse(declared) if declared else None,
                                           self.source.line)
                    if converted is not value:
                        value.replace(converted)
        if isinstance(statement, exp.Update):
            for assignment in statement.expressions:
                if isinstance(assignment, exp.EQ) and isinstance(assignment.this, exp.Column):
                    declared = types.get(assignment.this.name)
                    assignment.set("expression", self.value(
                        assignment.expression, PgType.parse(declared) if declared else None,
                        self.source.line))
        self.transform_tree(statement, types.get)
        return [self.emit(self.sqlite(statement))]

    # --- row-level security ---------------------------------------------------------------

    def create_policy(self) -> list[TranslatedStatement]:
        """Store the policy compiled for SQLite: its clauses, and USING / WITH CHECK as SQLite SQL."""
        tokens = self.source.tokens
        words = _words(tokens, len(tokens))
        if len(words) < 5 or "ON" not in words:
            raise self.refuse("CREATE POLICY", "expected CREATE POLICY name ON table")
        name = _name_of(tokens[2])
        table, schema, index = _qualified_name_at(tokens, words.index("ON") + 1)
        if schema not in (None, "public"):
            raise self.refuse(f"CREATE POLICY on {schema}.{table}")
        if table not in self.tables:
            raise self.fail(f'relation "{table}" does not exist')
        policy: dict[str, Any] = {"permissive": True, "command": "ALL", "roles": ["public"],
                                  "using": None, "check": None}
        while index < len(tokens):
            word = words[index]
            if word == "AS" and index + 1 < len(words) and words[index + 1] in ("PERMISSIVE", "RESTRICTIVE"):
                policy["permissive"] = words[index + 1] == "PERMISSIVE"
                index += 2
            elif word == "FOR" and index + 1 < len(words) and words[index + 1] in _POLICY_COMMANDS:
                policy["command"] = words[index + 1]
                index += 2
            elif word == "TO":
                roles: list[str] = []
                index += 1
                while index < len(tokens) and words[index] not in ("USING", "WITH"):
                    if tokens[index].token_type is not TokenType.COMMA:
                        roles.append(_name_of(tokens[index]))
                    index += 1
                policy["roles"] = roles
            elif word == "USING":
                policy["using"], index = self.policy_expression(table, index + 1)
            elif word == "WITH" and words[index + 1:index + 2] == ["CHECK"]:
                policy["check"], index = self.policy_expression(table, index + 2)
            else:
                raise self.refuse("CREATE POLICY", f"unexpected {tokens[index].text!r}")
        if policy["command"] == "SELECT" and policy["check"] is not None:
            raise self.fail("only WITH CHECK expression allowed for INSERT")
        if policy["command"] == "INSERT" and policy["using"] is not None:
            raise self.fail("only WITH CHECK expression allowed for INSERT")
        compiled = orjson.dumps(policy).decode()
        return [self.emit(_INSERT_POLICY, (table, name, self.source.text, compiled))]

    def policy_expression(self, table: str, index: int) -> tuple[str, int]:
        """The parenthesised expression at ``index`` as SQLite SQL; and the index after it.

        Columns of the policy's own table are qualified with ``POLICY_SELF``, so the
        expression can be applied to the table under any alias; columns of tables in
        sub-queries keep their own scope, as PostgreSQL resolves them.
        """
        tokens = self.source.tokens
        if tokens[index].token_type is not TokenType.L_PAREN:
            raise self.refuse("CREATE POLICY", "expected ( after USING / WITH CHECK")
        depth, close = 0, index
        for close in range(index, len(tokens)):
            kind = tokens[close].token_type
            depth += 1 if kind is TokenType.L_PAREN else -1 if kind is TokenType.R_PAREN else 0
            if depth == 0:
                break
        if depth != 0 or close == index + 1:
            raise self.fail("cannot parse CREATE POLICY: unbalanced or empty parentheses")
        base = tokens[0].start
        text = self.source.text[tokens[index + 1].start - base:tokens[close - 1].end + 1 - base]
        select = self.parse("CREATE POLICY", f"SELECT 1 FROM {quote_ident(table)} WHERE ({text})")
        where = select.args.get("where")
        if not isinstance(select, exp.Select) or where is None:
            raise self.refuse("CREATE POLICY", "the expression is not a condition")
        condition: exp.Expr = where.this
        own = self.tables[table]
        for column in list(condition.find_all(exp.Column)):
            self.qualify_policy_column(column, condition, table, own)
        condition = self.transform_tree(condition, own.get)
        return self.sqlite(condition), close + 1

    def qualify_policy_column(self, column: exp.Column, root: exp.Expr, table: str,
                              own: dict[str, str]) -> None:
        """Mark ``column`` as the policy table's when no enclosing sub-query supplies it."""
        qualifier = column.table
        node: exp.Expr | None = column.parent
        while node is not None and node is not root.parent:
            if isinstance(node, exp.Select):
                for source in _select_sources(node):
                    if qualifier and source.alias_or_name == qualifier:
                        return
                    stored = AUTH_SQLITE_PREFIX + source.name if source.db == "auth" else source.name
                    if not qualifier and column.name in self.tables.get(stored, {}):
                        return
            node = node.parent
        if qualifier and qualifier != table:
            raise self.fail(f'missing FROM-clause entry for table "{qualifier}" in CREATE POLICY')
        if column.name not in own:
            raise self.fail(f'column "{column.name}" does not exist in CREATE POLICY on {table}')
        column.set("table", exp.to_identifier(POLICY_SELF))

    def drop_policy(self) -> list[TranslatedStatement]:
        tokens = self.source.tokens
        words = _words(tokens, len(tokens))
        index = 2 + (2 if words[2:4] == ["IF", "EXISTS"] else 0)
        if "ON" not in words:
            raise self.refuse("DROP POLICY", "expected DROP POLICY name ON table")
        table, _schema, _ = _qualified_name_at(tokens, words.index("ON") + 1)
        return [self.emit(_DELETE_POLICY, (table, _name_of(tokens[index])))]

    def _altered_table(self) -> tuple[str, list[str]]:
        """The table of ``ALTER TABLE [IF EXISTS] [ONLY] name ...`` and the words after it."""
        tokens = self.source.tokens
        words = _words(tokens, len(tokens))
        index = 2
        while words[index] in ("IF", "EXISTS", "ONLY"):
            index += 1
        table, schema, after = _qualified_name_at(tokens, index)
        if schema not in (None, "public"):
            raise self.refuse(f"ALTER TABLE {schema}.{table}")
        return table, words[after:]

    def row_level_security(self) -> list[TranslatedStatement]:
        table, action = self._altered_table()
        if action[:1] == ["ENABLE"]:
            return [self.emit(_DELETE_RLS, (table,)),
                    self.emit(_INSERT_POLICY, (table, None, self.source.text, None))]
        if action[:1] == ["DISABLE"]:
            return [self.emit(_DELETE_RLS, (table,))]
        return []  # FORCE / NO FORCE: table owners never bypass policies on SQLite

    def replica_identity(self) -> list[TranslatedStatement]:
        """``ALTER TABLE t REPLICA IDENTITY FULL``: the table's updates and deletes keep the
        whole old row, for Realtime's ``old_record`` and the events; DEFAULT, NOTHING and
        USING INDEX keep the primary key only."""
        table, action = self._altered_table()
        if action[:2] != ["REPLICA", "IDENTITY"]:
            raise self.refuse("ALTER TABLE with REPLICA IDENTITY and other actions")
        return [self.emit(_FULL_IDENTITY if action[2:] == ["FULL"] else _DEFAULT_IDENTITY, (table,))]

    # --- functions ------------------------------------------------------------------------

    def create_function(self) -> list[TranslatedStatement]:
        header = _FunctionHeader.read(self)
        if header.language != "sql":
            raise self.refuse(f"CREATE FUNCTION ... LANGUAGE {header.language}",
                              "only LANGUAGE sql functions are translated")
        statements = [statement for statement in self.parse_body(header.body) if statement is not None]
        if len(statements) != 1 or not isinstance(statements[0], exp.Query):
            raise self.refuse(f"CREATE FUNCTION {header.name}",
                              "the body of a function must be a single SELECT on SQLite")
        body = normalize_identifiers(statements[0], dialect="postgres")
        self.bind_parameters(body, header)
        self.transform_tree(body, lambda _name: None)
        params = [{"name": name, "type": type_name, "has_default": default is not None}
                  for name, type_name, default in header.params]
        row = (header.name, orjson.dumps(params).decode(), header.return_type,
               1 if header.returns_set else 0, self.sqlite(body))
        return [self.emit(_REPLACE_FUNCTION if header.replace else _INSERT_FUNCTION, row)]

    def drop_function(self) -> list[TranslatedStatement]:
        tokens = self.source.tokens
        words = _words(tokens, len(tokens))
        index = 2 + (2 if words[2:4] == ["IF", "EXISTS"] else 0)
        statements = []
        while index < len(tokens):
            name, schema, index = _qualified_name_at(tokens, index)
            if schema not in (None, "public"):
                raise self.refuse(f"DROP FUNCTION {schema}.{name}")
            statements.append(self.emit(_DELETE_FUNCTION, (name,)))
            if index < len(tokens) and tokens[index].token_type is TokenType.L_PAREN:
                index = _matching_paren(tokens, index) + 1
            if index < len(tokens) and tokens[index].token_type is TokenType.COMMA:
                index += 1
                continue
            break
        return statements

    def parse_body(self, body: str) -> list[exp.Expr | None]:
        try:
            return sqlglot.parse(body, read="postgres")
        except (ParseError, TokenError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise self.fail(f"cannot parse the body of CREATE FUNCTION: {first}") from None

    def bind_parameters(self, body: exp.Expr, header: _FunctionHeader) -> None:
        """Replace argument references by ``:name`` placeholders (columns win, as in PostgreSQL)."""
        names = [name for name, _type, _default in header.params]
        defaults = {name: default for name, _type, default in header.params if default is not None}
        visible: set[str] = set()
        for table in body.find_all(exp.Table):
            visible.update(self.tables.get(table.name, {}))

        def placeholder(name: str) -> exp.Expr:
            bound: exp.Expr = exp.Placeholder(this=name)
            if name in defaults:
                bound = exp.Coalesce(this=bound, expressions=[self.transform_tree(
                    sqlglot.parse_one(defaults[name], read="postgres"), lambda _name: None)])
            return bound

        def rewrite(item: exp.Expr) -> exp.Expr:
            if isinstance(item, exp.Parameter):
                position = int(item.name) if item.name.isdigit() else 0
                if not 1 <= position <= len(names):
                    raise self.fail(f"CREATE FUNCTION {header.name}: ${item.name} is not an argument")
                return placeholder(names[position - 1])
            if isinstance(item, exp.Column) and item.name in names:
                if item.table == header.name or (not item.table and item.name not in visible):
                    return placeholder(item.name)
            return item

        body.transform(rewrite, copy=False)


@dataclass(frozen=True, slots=True)
class _FunctionHeader:
    """What ``CREATE FUNCTION`` declares around its body."""

    name: str
    replace: bool
    params: tuple[tuple[str, str, str | None], ...]  # (name, canonical type, default SQL)
    return_type: str
    returns_set: bool
    language: str
    body: str

    @classmethod
    def read(cls, statement: _StatementTranslator) -> _FunctionHeader:
        tokens = statement.source.tokens
        text = statement.source.text
        words = _words(tokens, len(tokens))
        replace = words[1:3] == ["OR", "REPLACE"]
        name, schema, index = _qualified_name_at(tokens, 4 if replace else 2)
        if schema not in (None, "public"):
            raise statement.refuse(f"CREATE FUNCTION {schema}.{name}")
        if index >= len(tokens) or tokens[index].token_type is not TokenType.L_PAREN:
            raise statement.fail(f"cannot parse CREATE FUNCTION {name}: expected its arguments")
        close = _matching_paren(tokens, index)
        start = tokens[0].start
        arguments = text[tokens[index].end + 1 - start:tokens[close].start - start]
        params = tuple(statement_param(statement, name, part)
                       for part in split_top_level(arguments, ",") if part.strip())
        return_type, returns_set, language, body = "void", False, "sql", None
        position = close + 1
        while position < len(tokens):
            word = words[position]
            if word == "RETURNS":
                position, return_type, returns_set = _read_returns(statement, tokens, words, position + 1)
                continue
            if word == "LANGUAGE" and position + 1 < len(tokens):
                language = tokens[position + 1].text.strip("'\"").lower()
                position += 2
                continue
            if word == "AS" and position + 1 < len(tokens):
                body = _string_body(tokens[position + 1], text[tokens[position + 1].start - start:
                                                               tokens[position + 1].end + 1 - start])
                position += 2
                continue
            if word in ("BEGIN", "RETURN"):
                raise statement.refuse(f"CREATE FUNCTION {name} with a SQL-standard body",
                                       "write the body as AS $$ ... $$")
            position += 1
        if body is None:
            raise statement.fail(f"cannot parse CREATE FUNCTION {name}: no AS $$ ... $$ body")
        return cls(name=name, replace=replace, params=params, return_type=return_type,
                   returns_set=returns_set, language=language, body=body)


def statement_param(statement: _StatementTranslator, function: str,
                    text: str) -> tuple[str, str, str | None]:
    """One declared argument: (name, canonical type, default SQL or None)."""
    cleaned = text.strip()
    if re.match(r"^(OUT|INOUT|VARIADIC)\s", cleaned, re.IGNORECASE):
        raise statement.refuse(f"CREATE FUNCTION {function} with {cleaned.split()[0].upper()} arguments")
    match = _ARGUMENT.match(cleaned)
    if match is None:
        raise statement.refuse(f"CREATE FUNCTION {function} with an unnamed argument",
                               "name every argument so it can be called by name")
    raw_name, type_text, default = match.groups()
    name = raw_name[1:-1].replace('""', '"') if raw_name.startswith('"') else raw_name.lower()
    declared = _parse_type(type_text)
    if declared is None:
        raise statement.refuse(f"argument type {type_text.strip().lower()} of CREATE FUNCTION {function}")
    return name, declared, default.strip() if default else None


def _parse_type(text: str) -> str | None:
    try:
        data_type = exp.DataType.build(text.strip(), dialect="postgres", udt=True)
    except (ParseError, TokenError, ValueError):
        return None
    return _serial_base(data_type) or canonical_type(data_type)


def _read_returns(statement: _StatementTranslator, tokens: tuple[Token, ...], words: list[str],
                  position: int) -> tuple[int, str, bool]:
    """Read the RETURNS clause: (next position, return type, returns a set)."""
    returns_set = False
    if words[position] == "SETOF":
        returns_set = True
        position += 1
    if words[position] == "TABLE" and position + 1 < len(tokens) \
            and tokens[position + 1].token_type is TokenType.L_PAREN:
        return _matching_paren(tokens, position + 1) + 1, "record", True
    end = position
    while end < len(tokens) and words[end] not in _FUNCTION_OPTIONS:
        end += 1
    text = statement.source.text
    start = tokens[0].start
    type_text = text[tokens[position].start - start:tokens[end - 1].end + 1 - start]
    declared = _parse_type(type_text)
    if declared is None:
        lowered = type_text.strip().lower()
        if lowered in ("void", "record") or re.fullmatch(r"[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)?", lowered):
            declared = lowered.removeprefix("public.")  # a table's row type, or void
        else:
            raise statement.refuse(f"return type {lowered}")
        if declared == "record" and not returns_set:
            raise statement.refuse("RETURNS record")
    return end, declared, returns_set


def _matching_paren(tokens: tuple[Token, ...], index: int) -> int:
    depth = 0
    for position in range(index, len(tokens)):
        if tokens[position].token_type is TokenType.L_PAREN:
            depth += 1
        elif tokens[position].token_type is TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return position
    return len(tokens) - 1


def _string_body(token: Token, raw: str) -> str | None:
    """The text of a ``$$...$$`` or ``'...'`` function body."""
    match = _DOLLAR_QUOTED.match(raw)
    if match is not None:
        return match.group(2)
    if token.token_type is TokenType.STRING and raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    return None


# --- small helpers ------------------------------------------------------------------------------

def _declared(name: str) -> exp.DataType:
    """A data type printed exactly as ``name`` (sqlglot would otherwise rename it for SQLite)."""
    return exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=exp.Var(this=name))


def _table_primary_key(schema: exp.Schema) -> list[str]:
    for item in schema.expressions:
        if isinstance(item, exp.PrimaryKey):
            return [part.name for part in item.expressions]
    return []


def _is_now(node: exp.Expr) -> bool:
    return isinstance(node, exp.CurrentTimestamp | exp.Localtimestamp) or (
        isinstance(node, exp.Anonymous) and str(node.this).lower() in _NOW_FUNCTIONS)


def _now_sql(pg_type: PgType) -> str:
    if pg_type.kind is TypeKind.TIMESTAMP:
        return TIMESTAMP_NOW
    if pg_type.kind is TypeKind.DATE:
        return CURRENT_DATE
    return TIMESTAMPTZ_NOW


def _is_negative_number(node: exp.Expr) -> bool:
    return isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string


def _describe_type(data_type: exp.DataType) -> str:
    name = data_type.sql("postgres").lower()
    if data_type.this is exp.DataType.Type.ARRAY or name.endswith("[]"):
        return f"array column type {name}"
    return f"column type {name}"


def _first_words(text: str, count: int) -> str:
    return " ".join(text.split()[:count])


def _describe_unsupported(construct: str, text: str) -> str:
    """A name for a statement kind the translator refuses."""
    if construct == "SELECT" and re.search(r"\b(setval|nextval)\s*\(", text, re.IGNORECASE):
        return "SELECT setval/nextval (sequences are PostgreSQL-only: put it in a NAME.postgres.sql file)"
    if construct == "DO":
        return "DO block"
    return construct or _first_words(text, 2)
