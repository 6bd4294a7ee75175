"""Capture: every row a Ledgerbase connection writes becomes a change, in the same transaction.

Triggers record each inserted, updated or deleted row of the exposed tables (and of
``auth.users``) into a changes table, so a write and its change commit or roll back
together, whatever wrote it through Ledgerbase: the data API, an RPC function, Auth.
Writes made by other connections (plain SQL behind Ledgerbase's back) are not
captured: ``ledgerbase ledger verify --database`` reports them as drift.

- PostgreSQL: a ``SECURITY DEFINER`` trigger function, a deferred constraint trigger on
  each table (queued only in sessions that set ``ledgerbase.capture``, as Ledgerbase's pool
  does), writes each change once at COMMIT with its sequence number, under a lock held to
  the end of the transaction, so numbers are gapless and in commit order across any number
  of API processes (docs/ledger.md).
- SQLite: ``TEMP`` triggers, which exist only on Ledgerbase's writer connection;
  the one writer numbers changes in commit order by itself.

The recorded row is its JSON as the data API returns it (the digest commits to what
clients see); the integrator (``ledgerbase.ledger.log``) turns changes into entries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence, Set
from typing import Any

from ledgerbase.auth.schema import SQLITE_PREFIX as AUTH_SQLITE_PREFIX
from ledgerbase.db.dialect import SQLITE, quote_ident
from ledgerbase.db.engine import Database, SqliteDatabase, Transaction
from ledgerbase.db.introspect import sqlite_table
from ledgerbase.db.schema import Column, Table
from ledgerbase.ledger.store import POSTGRES_TABLES, SQLITE_TABLES
from ledgerbase.rest.compile import ReadCompiler
from ledgerbase.rest.plan import ColumnOut, ReadNode

CAPTURE_SETTING = "ledgerbase.capture"

# --- PostgreSQL ----------------------------------------------------------------------------

# Set on the server's own connections: it flushes the WAL after each COMMIT itself
# (``PostgresDatabase.write``), so a numbered transaction may commit without waiting for the
# flush, and the numbering lock is held for microseconds instead of a disk flush.
FLUSH_SETTING = "ledgerbase.flush_after_commit"

# Held by the transaction numbering its changes until it ends (one key per database).
_NUMBERING_LOCK = 0x4C42_5351  # "LBSQ"

# A change's number, for a transaction holding the numbering lock: one more than the last
# number committed or given earlier in this transaction (a read of the index's right end).
_NEXT_SEQ = "(SELECT coalesce(max(n.seq) + 1, 0) FROM ledgerbase.ledger_changes AS n)"

# One row per change, written once, numbered. Its row JSON is set to NULL 10,000 entries
# later (ledgerbase.ledger.log): pages kept 30% free take that smaller version on the same
# page (a HOT update, no index entry), 3.5 instead of 11 µs per change.
_CHANGES_STORAGE = "WITH (fillfactor = 70)"
_CHANGES_COLUMNS = """
  seq bigint PRIMARY KEY,
  time timestamptz NOT NULL,
  txid xid8 NOT NULL,
  table_name text NOT NULL,
  op text NOT NULL,
  pk jsonb NOT NULL,
  row_data jsonb,
  salt bytea,
  actor text NOT NULL,
  old_data jsonb  -- the row before an update or delete, for tables with REPLICA IDENTITY FULL (off the ledger)
"""

def _capture_function(name: str, *, old_rows: bool) -> str:
    """The trigger function ``ledgerbase.<name>()``; with ``old_rows`` (for the tables with
    REPLICA IDENTITY FULL) an update or delete also keeps the whole row before it."""
    keep_old_row = """
  IF TG_OP <> 'INSERT' THEN
    old_row := to_jsonb(OLD);
  END IF;""" if old_rows else ""
    return f"""CREATE OR REPLACE FUNCTION ledgerbase.{name}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  new_row jsonb;
  key_row jsonb;
  old_row jsonb;
  pk jsonb;
  claims jsonb;
  actor text;
  salt bytea;
  name text;
  setting text;
BEGIN
  IF TG_OP = 'DELETE' THEN
    key_row := to_jsonb(OLD);
  ELSE
    new_row := to_jsonb(NEW);
    key_row := new_row;
  END IF;{keep_old_row}
  IF TG_NARGS = 1 THEN
    pk := jsonb_build_object(TG_ARGV[0], key_row -> TG_ARGV[0]);
  ELSIF TG_NARGS = 0 THEN
    pk := key_row;  -- no primary key: the whole row identifies it
  ELSE
    pk := (SELECT jsonb_object_agg(k, key_row -> k) FROM unnest(TG_ARGV) AS k);
  END IF;
  claims := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  actor := coalesce(claims ->> 'sub', claims ->> 'role', 'ledgerbase');
  -- a random salt without pgcrypto: a version-4 UUID, 122 random bits
  salt := uuid_send(gen_random_uuid());
  IF TG_TABLE_SCHEMA = 'public' THEN
    name := TG_TABLE_NAME;
  ELSE
    name := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  END IF;
  IF current_setting('{FLUSH_SETTING}', true) = 'on' AND current_setting('synchronous_commit') <> 'off' THEN
    -- the client flushes after COMMIT: do not hold the lock through the flush
    setting := set_config('synchronous_commit', 'off', true);
  END IF;
  IF NOT pg_try_advisory_xact_lock({_NUMBERING_LOCK}) THEN
    PERFORM pg_advisory_xact_lock({_NUMBERING_LOCK});
  END IF;
  INSERT INTO ledgerbase.ledger_changes (seq, time, txid, table_name, op, pk, row_data, salt, actor, old_data)
  VALUES ({_NEXT_SEQ}, clock_timestamp(), pg_current_xact_id(), name, lower(TG_OP), pk, new_row, salt, actor,
          old_row);
  RETURN NULL;
END
$$"""


POSTGRES_SETUP = (
    *POSTGRES_TABLES,
    # Databases made by earlier versions: changes with a position in their transaction and a
    # commit row numbering them (``pos``), or numbered in place after a first write (``id``).
    # Their numbered changes move to the table below; nothing else changes for readers.
    f"""DO $lb$
DECLARE
  layout text;
BEGIN
  SELECT CASE WHEN bool_or(column_name = 'pos') THEN 'commit rows'
              WHEN bool_or(column_name = 'id') THEN 'numbered in place' END
    INTO layout FROM information_schema.columns
    WHERE table_schema = 'ledgerbase' AND table_name = 'ledger_changes';
  IF layout IS NULL THEN
    RETURN;
  END IF;
  DROP VIEW IF EXISTS ledgerbase.ledger_log;
  DROP TRIGGER IF EXISTS sequence_changes ON ledgerbase.ledger_changes;
  ALTER TABLE ledgerbase.ledger_changes RENAME TO ledger_changes_before;
  ALTER INDEX ledgerbase.ledger_changes_pkey RENAME TO ledger_changes_before_pkey;
  ALTER TABLE ledgerbase.ledger_changes_before ADD COLUMN IF NOT EXISTS old_data jsonb;
  CREATE TABLE ledgerbase.ledger_changes ({_CHANGES_COLUMNS}) {_CHANGES_STORAGE};
  IF layout = 'commit rows' THEN
    INSERT INTO ledgerbase.ledger_changes (seq, time, txid, table_name, op, pk, row_data, salt, actor, old_data)
      SELECT c.first_seq + (ch.pos - c.first_pos), c.time, ch.txid, ch.table_name, ch.op, ch.pk,
             ch.row_data, ch.salt, ch.actor, ch.old_data
      FROM ledgerbase.ledger_commits AS c
      JOIN ledgerbase.ledger_changes_before AS ch ON ch.txid = c.txid
        AND ch.pos BETWEEN c.first_pos AND c.first_pos + (c.last_seq - c.first_seq);
    DROP TABLE ledgerbase.ledger_commits;
  ELSE
    INSERT INTO ledgerbase.ledger_changes (seq, time, txid, table_name, op, pk, row_data, salt, actor, old_data)
      SELECT seq, time, txid, table_name, op, pk, row_data, salt, actor, old_data
      FROM ledgerbase.ledger_changes_before WHERE seq IS NOT NULL;
  END IF;
  DROP TABLE ledgerbase.ledger_changes_before;
END $lb$""",
    f"CREATE TABLE IF NOT EXISTS ledgerbase.ledger_changes ({_CHANGES_COLUMNS}) {_CHANGES_STORAGE}",
    # made by this layout before old rows were kept
    "ALTER TABLE ledgerbase.ledger_changes ADD COLUMN IF NOT EXISTS old_data jsonb",
    "DROP TABLE IF EXISTS ledgerbase.ledger_head",  # the numbers' count, before commit rows had it
    # a function made before old rows were kept returns fewer columns: replace it
    """DO $lb$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_proc WHERE oid = to_regprocedure('ledgerbase.ledger_changes_from(bigint, int)')
             AND pg_get_function_result(oid) NOT LIKE '%old_data%') THEN
    DROP FUNCTION ledgerbase.ledger_changes_from(bigint, int);
  END IF;
END $lb$""",
    # Numbered changes in order, for a range read (inlined by the planner: an index range scan).
    """CREATE OR REPLACE FUNCTION ledgerbase.ledger_changes_from(first bigint, max_count int)
RETURNS TABLE (seq bigint, "time" timestamptz, table_name text, op text, pk jsonb, row_data jsonb,
               salt bytea, actor text, old_data jsonb)
LANGUAGE sql STABLE AS $$
  SELECT c.seq, c.time, c.table_name, c.op, c.pk, c.row_data, c.salt, c.actor, c.old_data
  FROM ledgerbase.ledger_changes AS c
  WHERE c.seq >= first
  ORDER BY c.seq
  LIMIT max_count
$$""",
    # Every change with its number, for reads by table or key.
    """CREATE OR REPLACE VIEW ledgerbase.ledger_log AS
  SELECT seq, time, txid, table_name, op, pk, row_data, salt, actor, old_data FROM ledgerbase.ledger_changes""",
    # Two trigger functions for every table (TG_ARGV holds the primary key's columns), run at
    # COMMIT once per change, in the order the rows were written: the row as it was written is
    # made into JSON first, then the numbering lock is taken (the first change of a transaction
    # waits there for the transactions committing before it) and the change is written with the
    # next number. The lock is held until the transaction ends, so numbers follow commit order
    # and the next holder's read of the last number sees this commit. A rollback takes its
    # changes with it, and frees their numbers.
    # (A lock, not an UPDATE of a counter row: thousands of updates a second of one row grew it
    # to hundreds of pages of dead versions that every writer and reader walked. Changes written
    # when the row was, with a commit row numbering them at COMMIT, cost a second row and a
    # second trigger call per transaction: 30% more of the database's time per write.)
    # Every value but the number is computed by an expression PL/pgSQL evaluates without the
    # executor; the one statement is the INSERT. Whether a table keeps old rows is decided when
    # its trigger is made (``adopt_postgres``), not looked up for every change.
    _capture_function("capture", old_rows=False),
    _capture_function("capture_full", old_rows=True),
    # the commit rows' numbering, replaced by the above (a database converted above has none)
    "DROP FUNCTION IF EXISTS ledgerbase.sequence_changes()",
)

# For ``ledgerbase migrate``: capture each statement's changes when it ends, not at COMMIT. A
# migration may alter a table after writing to it, which PostgreSQL refuses while the table
# has trigger events pending (the numbering lock is then held until the migration commits).
POSTGRES_CAPTURE_AT_STATEMENT_END = """DO $lb$
DECLARE
  names text;
BEGIN
  SELECT string_agg(DISTINCT quote_ident(n.nspname) || '.ledgerbase_capture', ', ') INTO names
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.conname = 'ledgerbase_capture';
  IF names IS NOT NULL THEN
    EXECUTE 'SET CONSTRAINTS ' || names || ' IMMEDIATE';
  END IF;
END $lb$"""

# Which tables to capture and their keys (base tables of public, and auth.users).
POSTGRES_CAPTURED_TABLES = """
SELECT n.nspname, c.relname,
       coalesce((SELECT array_agg(a.attname ORDER BY k.i) FROM pg_constraint p
                 CROSS JOIN unnest(p.conkey) WITH ORDINALITY AS k(attnum, i)
                 JOIN pg_attribute a ON a.attrelid = p.conrelid AND a.attnum = k.attnum
                 WHERE p.conrelid = c.oid AND p.contype = 'p'), ARRAY[]::name[])
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND (n.nspname = 'public' OR (n.nspname = 'auth' AND c.relname = 'users'))
ORDER BY 1, 2
"""


def postgres_trigger(schema: str, table: str, key: Sequence[str], *, old_rows: bool = False) -> str:
    """The capture trigger of one table (names come from the catalog, quoted): run at COMMIT,
    queued only for the writes of sessions that set ``ledgerbase.capture``; ``old_rows`` for a
    table with REPLICA IDENTITY FULL."""
    args = ", ".join("'" + column.replace("'", "''") + "'" for column in key)
    function = "capture_full" if old_rows else "capture"
    return (f"CREATE CONSTRAINT TRIGGER ledgerbase_capture AFTER INSERT OR UPDATE OR DELETE ON "
            f"{quote_ident(schema)}.{quote_ident(table)} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            f"WHEN (current_setting('{CAPTURE_SETTING}', true) = 'on') EXECUTE FUNCTION ledgerbase.{function}({args})")


# --- SQLite --------------------------------------------------------------------------------

SQLITE_CHANGES = "_ledgerbase_ledger_changes"
SQLITE_SETUP: tuple[str, ...] = (
    *SQLITE_TABLES,
    "CREATE TABLE IF NOT EXISTS _ledgerbase_ledger_tables (name text PRIMARY KEY)",
    # seq = rowid - 1: the one writer inserts in commit order and a rollback frees the numbers
    f"""CREATE TABLE IF NOT EXISTS {SQLITE_CHANGES} (
  id INTEGER PRIMARY KEY,
  time text NOT NULL,
  table_name text NOT NULL,
  op text NOT NULL,
  pk text NOT NULL,
  row_data text,
  salt blob,
  actor text NOT NULL,
  old_data text
)""",
    # the tables whose updates and deletes keep the whole old row (ALTER TABLE ... REPLICA
    # IDENTITY FULL in a migration, as on PostgreSQL)
    "CREATE TABLE IF NOT EXISTS _ledgerbase_replica_identity (table_name text PRIMARY KEY)",
)


def sqlite_upgrade(connection: sqlite3.Connection) -> None:
    """Bring a changes table made by an earlier release to the current layout."""
    if not connection.execute(f"SELECT 1 FROM pragma_table_info('{SQLITE_CHANGES}') "
                              "WHERE name = 'old_data'").fetchone():
        connection.execute(f"ALTER TABLE {SQLITE_CHANGES} ADD COLUMN old_data text")


def sqlite_full_identity(connection: sqlite3.Connection) -> set[str]:
    """The tables set to REPLICA IDENTITY FULL by the migrations."""
    return {str(row[0]) for row in connection.execute("SELECT table_name FROM _ledgerbase_replica_identity")}


_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _row_json(table: Table, alias: str) -> str:
    """``json_object(...)`` of one row as the data API renders it, keys inlined (no parameters:
    a trigger has none; names come from the schema)."""
    compiler = ReadCompiler(SQLITE)
    node = ReadNode(table=table, path=(), outputs=tuple(ColumnOut(key=c.name, column=c) for c in table.columns))
    sql = compiler.json_object(alias, node)
    for index in range(len(compiler.binder.params), 0, -1):  # ?10 before ?1
        value = compiler.binder.params[index - 1].const
        sql = sql.replace(f"?{index}", _literal(str(value)))
    return sql


def sqlite_triggers(table: Table, captured_name: str | None = None, full_identity: bool = False) -> list[str]:
    """``TEMP`` triggers capturing the writes to ``table`` (on the writer connection only);
    with ``full_identity`` updates and deletes also keep the whole old row."""
    name = captured_name or table.name
    key = table.primary_key or tuple(c.name for c in table.columns)
    statements = []
    for op, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")):
        trigger = quote_ident(f"_lb_capture_{table.name}_{op}")
        keys = "json_object(" + ", ".join(f"{_literal(c)}, {row}.{quote_ident(c)}" for c in key) + ")"
        data = _row_json(table, row) if op != "delete" else "NULL"
        old = _row_json(table, "OLD") if full_identity and op != "insert" else "NULL"
        statements.append(f"DROP TRIGGER IF EXISTS temp.{trigger}")
        statements.append(
            f"CREATE TEMP TRIGGER {trigger} AFTER {op.upper()} ON main.{quote_ident(table.name)} BEGIN "
            f"INSERT INTO {SQLITE_CHANGES} (time, table_name, op, pk, row_data, salt, actor, old_data) VALUES "
            f"({_NOW}, {_literal(name)}, '{op}', {keys}, {data}, randomblob(16), lb_ledger_actor(), {old}); END")
    return statements


AUTH_USERS_SQLITE = AUTH_SQLITE_PREFIX + "users"


def auth_users_table(columns: Sequence[Column]) -> Table:
    """``auth.users`` as a Table, for capturing sign-ups and profile changes on SQLite."""
    return Table(name=AUTH_USERS_SQLITE, schema="auth", columns=tuple(columns), primary_key=("id",))


# --- adopting tables -----------------------------------------------------------------------
# A table enters the ledger when it is first captured: its rows at that moment become
# "insert" changes (seed rows of a migration, rows that existed before Ledgerbase), so
# the ledger covers every live row and `ledger verify --database` starts clean.

# The captured tables, whether they keep old rows (REPLICA IDENTITY FULL), and whether their
# capture trigger is as that asks (NULL: none yet). Earlier versions ran the trigger when the
# row was written, and looked the replica identity up in the catalog for every update.
_POSTGRES_CAPTURE_STATE = POSTGRES_CAPTURED_TABLES.replace(
    "ARRAY[]::name[])\nFROM", "ARRAY[]::name[]),\n"
    "       c.relreplident = 'f',\n"
    "       (SELECT t.tgconstraint <> 0 AND t.tgfoid = to_regproc(CASE WHEN c.relreplident = 'f' "
    "THEN 'ledgerbase.capture_full' ELSE 'ledgerbase.capture' END)\n"
    "        FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'ledgerbase_capture')\nFROM")


def postgres_adoption(schema: str, table: str, key: Sequence[str], *, old_rows: bool = False) -> tuple[str, str]:
    """The trigger of a newly captured table and the statements recording its current rows
    (numbered at once: they take the numbering lock, held until the transaction ends)."""
    name = table if schema == "public" else f"{schema}.{table}"
    quoted = f"{quote_ident(schema)}.{quote_ident(table)}"
    pk = ("to_jsonb(_r)" if not key else
          "jsonb_build_object(" + ", ".join(f"{_literal(c)}, to_jsonb(_r) -> {_literal(c)}" for c in key) + ")")
    # two statements: the second one's snapshot is taken once the lock is held
    adopt = (f"SELECT pg_advisory_xact_lock({_NUMBERING_LOCK}); "
             f"INSERT INTO ledgerbase.ledger_changes (seq, time, txid, table_name, op, pk, row_data, salt, actor) "
             f"SELECT {_NEXT_SEQ} + row_number() OVER () - 1, clock_timestamp(), pg_current_xact_id(), "
             f"{_literal(name)}, 'insert', {pk}, to_jsonb(_r), uuid_send(gen_random_uuid()), 'ledgerbase' "
             f"FROM {quoted} AS _r")
    return postgres_trigger(schema, table, key, old_rows=old_rows), adopt


async def adopt_postgres(execute: Callable[[str], Awaitable[object]],
                         fetch: Callable[[str], Awaitable[list[Any]]]) -> None:
    """Capture every table of ``public`` (and ``auth.users``) not captured yet, recording its rows,
    and remake the triggers that do not match their table's replica identity (or were made by
    an earlier version). Run by every migration, so ``ALTER TABLE ... REPLICA IDENTITY`` in a
    migration takes effect with it."""
    for schema, table, key, old_rows, current in await fetch(_POSTGRES_CAPTURE_STATE):
        if current is None:
            trigger, adopt = postgres_adoption(schema, table, list(key), old_rows=old_rows)
            await execute(adopt)
            await execute(trigger)
        elif not current:
            await execute(f"DROP TRIGGER ledgerbase_capture ON {quote_ident(schema)}.{quote_ident(table)}")
            await execute(postgres_trigger(schema, table, list(key), old_rows=old_rows))


SQLITE_ADOPTED = "_ledgerbase_ledger_tables"


def sqlite_adoption(table: Table, captured_name: str) -> str:
    """The statement recording the current rows of a newly captured table."""
    key = table.primary_key or tuple(c.name for c in table.columns)
    keys = "json_object(" + ", ".join(f"{_literal(c)}, \"_r\".{quote_ident(c)}" for c in key) + ")"
    return (f"INSERT INTO {SQLITE_CHANGES} (time, table_name, op, pk, row_data, salt, actor) "
            f"SELECT {_NOW}, {_literal(captured_name)}, 'insert', {keys}, {_row_json(table, '_r')}, "
            f"randomblob(16), 'ledgerbase' FROM main.{quote_ident(table.name)} AS \"_r\" "
            f"WHERE NOT EXISTS (SELECT 1 FROM {SQLITE_ADOPTED} WHERE name = {_literal(captured_name)}) "
            f"ORDER BY \"_r\".rowid")


def captured_name(table: Table) -> str:
    """The name a table has in ledger entries: ``auth.users`` for Auth's users on SQLite too."""
    return "auth.users" if table.name == AUTH_USERS_SQLITE else table.name


def sqlite_captured_tables(connection: sqlite3.Connection) -> list[Table]:
    """The tables SQLite captures: every exposed base table, and Auth's users."""
    names = [row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND (name = ? OR "
        "(name NOT LIKE '\\_ledgerbase%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\')) ORDER BY name",
        (AUTH_USERS_SQLITE,)).fetchall()]
    return [sqlite_table(connection, name) for name in names]


def sqlite_capture(tables: Sequence[Table], full_identity: Set[str] = frozenset()) -> list[str]:
    """Statements for a SQLite connection: adopt the tables not adopted yet (idempotent), then
    (re)create the TEMP triggers that capture the writes of this connection; the tables named
    in ``full_identity`` keep whole old rows."""
    statements = []
    for table in tables:
        name = captured_name(table)
        statements.append(sqlite_adoption(table, name))
        statements.append(f"INSERT OR IGNORE INTO {SQLITE_ADOPTED} (name) VALUES ({_literal(name)})")
    for table in tables:
        statements.extend(sqlite_triggers(table, captured_name(table), table.name in full_identity))
    return statements


def sqlite_capture_statements(connection: sqlite3.Connection) -> list[str]:
    """``sqlite_capture`` for the tables this connection's database has."""
    return sqlite_capture(sqlite_captured_tables(connection), sqlite_full_identity(connection))


async def capture_sqlite_writes(database: SqliteDatabase) -> None:
    """Capture the writes of the server's SQLite writer (after every schema change)."""
    statements = database.run_sync(sqlite_capture_statements)

    async def work(tx: Transaction) -> None:
        for statement in statements:
            await tx.fetch_all(statement, ())

    await database.write(work)


# Ledger-Seq looks for a transaction's changes among this many latest changes at most.
_MARK_WINDOW = 100_000


class LedgerMark:
    """Finds the sequence number of the last change a write transaction made (``Ledger-Seq``).

    SQLite numbers changes as they are written: the highest id after the work, if it grew.
    PostgreSQL numbers them at COMMIT: the transaction's id is noted, and its highest
    number read once it has committed.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.postgres = database.dialect.name == "postgres"

    async def before(self, tx: Transaction) -> Any:
        """Called in the transaction before the write."""
        if self.postgres:
            return None
        return (await tx.fetch_all(f"SELECT coalesce(max(id), 0) FROM {SQLITE_CHANGES}", ()))[0][0]

    async def after(self, tx: Transaction, before: Any) -> Any:
        """Called in the transaction after the write: what ``committed`` needs."""
        if self.postgres:
            # none when the transaction wrote nothing (so it numbered nothing)
            return (await tx.fetch_all("SELECT pg_current_xact_id_if_assigned()::text", ()))[0][0]
        last = (await tx.fetch_all(f"SELECT coalesce(max(id), 0) FROM {SQLITE_CHANGES}", ()))[0][0]
        return int(last) - 1 if int(last) > int(before) else None

    async def committed(self, noted: Any) -> int | None:
        """The sequence number, after the commit."""
        if not self.postgres or noted is None:
            return int(noted) if noted is not None else None
        # from the newest change back: this one was committed a moment ago (and a transaction
        # that wrote no captured row is not looked for in the whole log)
        row = await self.database.fetch_one(
            "SELECT seq FROM ledgerbase.ledger_changes WHERE txid = $1::text::xid8 "
            f"AND seq > (SELECT max(seq) FROM ledgerbase.ledger_changes) - {_MARK_WINDOW} "
            "ORDER BY seq DESC LIMIT 1", (noted,))
        return int(row[0]) if row is not None and row[0] is not None else None
