"""PostgreSQL: databases made by earlier versions are converted on start (their numbered changes
kept, their capture triggers moved to COMMIT), and a write is on disk when it is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledgerbase.db.engine import PostgresDatabase, Transaction
from ledgerbase.db.migrate import migrate
from tests.conftest import create_scratch_database, drop_scratch_database

# What an earlier version left: a table captured by a plain AFTER trigger, and its changes.
_TABLE = """
CREATE SCHEMA IF NOT EXISTS ledgerbase;
CREATE FUNCTION ledgerbase.capture() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TABLE notes (id bigint PRIMARY KEY, body text);
CREATE TRIGGER ledgerbase_capture AFTER INSERT OR UPDATE OR DELETE ON notes
  FOR EACH ROW EXECUTE FUNCTION ledgerbase.capture('id');
INSERT INTO notes VALUES (1, 'a'), (2, 'b');
"""
# Changes written with their transaction and position, numbered by commit rows: transaction 5
# numbered 0, transaction 7 numbered 1 and 2, transaction 9 not numbered (it never committed).
_COMMIT_ROWS = _TABLE + """
CREATE TABLE ledgerbase.ledger_changes (
  txid xid8 NOT NULL, pos int NOT NULL, table_name text NOT NULL, op text NOT NULL, pk jsonb NOT NULL,
  row_data jsonb, salt bytea, actor text NOT NULL, PRIMARY KEY (txid, pos));
CREATE TABLE ledgerbase.ledger_commits (
  last_seq bigint PRIMARY KEY, first_seq bigint NOT NULL, txid xid8 NOT NULL, first_pos int NOT NULL,
  time timestamptz NOT NULL);
CREATE FUNCTION ledgerbase.sequence_changes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER sequence_changes AFTER INSERT ON ledgerbase.ledger_changes
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledgerbase.sequence_changes();
CREATE VIEW ledgerbase.ledger_log AS SELECT c.first_seq + (ch.pos - c.first_pos) AS seq, c.time, ch.txid
  FROM ledgerbase.ledger_commits AS c JOIN ledgerbase.ledger_changes AS ch ON ch.txid = c.txid;
INSERT INTO ledgerbase.ledger_changes VALUES
  ('5', 0, 'notes', 'insert', '{"id": 1}', '{"id": 1, "body": "a"}', '\\x01', 'ledgerbase'),
  ('7', 0, 'notes', 'insert', '{"id": 2}', '{"id": 2, "body": "b"}', '\\x02', 'user-1'),
  ('7', 1, 'notes', 'update', '{"id": 1}', '{"id": 1, "body": "a"}', '\\x03', 'user-1'),
  ('9', 0, 'notes', 'delete', '{"id": 2}', NULL, '\\x04', 'user-2');
INSERT INTO ledgerbase.ledger_commits VALUES
  (0, 0, '5', 0, '2026-01-01T00:00:00Z'), (2, 1, '7', 0, '2026-01-01T00:00:01Z');
"""
# Changes numbered in place: a sequence number (NULL until numbered) beside an id.
_NUMBERED_IN_PLACE = _TABLE + """
CREATE TABLE ledgerbase.ledger_changes (
  id bigserial PRIMARY KEY, txid xid8 NOT NULL DEFAULT pg_current_xact_id(), seq bigint UNIQUE,
  time timestamptz, table_name text NOT NULL, op text NOT NULL, pk jsonb NOT NULL, row_data jsonb,
  salt bytea, actor text NOT NULL);
INSERT INTO ledgerbase.ledger_changes (txid, seq, time, table_name, op, pk, row_data, salt, actor) VALUES
  ('5', 0, '2026-01-01T00:00:00Z', 'notes', 'insert', '{"id": 1}', '{"id": 1, "body": "a"}', '\\x01', 'ledgerbase'),
  ('7', 1, '2026-01-01T00:00:01Z', 'notes', 'insert', '{"id": 2}', '{"id": 2, "body": "b"}', '\\x02', 'user-1'),
  ('7', 2, '2026-01-01T00:00:01Z', 'notes', 'update', '{"id": 1}', '{"id": 1, "body": "a"}', '\\x03', 'user-1'),
  ('9', NULL, NULL, 'notes', 'delete', '{"id": 2}', NULL, '\\x04', 'user-2');
"""
# The same, made after full old rows were kept: the update of transaction 7 kept its old row.
_COMMIT_ROWS_OLD_DATA = _COMMIT_ROWS.replace("actor text NOT NULL,", "actor text NOT NULL, old_data jsonb,") + """
UPDATE ledgerbase.ledger_changes SET old_data = '{"id": 1, "body": "z"}' WHERE txid = '7' AND pos = 1;
"""
_KEPT = [(0, "5", "insert", '{"id": 1}', "\\x01", "ledgerbase"),
         (1, "7", "insert", '{"id": 2}', "\\x02", "user-1"),
         (2, "7", "update", '{"id": 1}', "\\x03", "user-1")]


@pytest.fixture
def database_url(postgres_ok: bool) -> Iterator[str]:
    if not postgres_ok:
        pytest.skip("PostgreSQL not reachable: set LEDGERBASE_TEST_POSTGRES_URL")
    url = create_scratch_database("lb_layout")
    try:
        yield url
    finally:
        drop_scratch_database(url)


async def _fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    connection = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def _execute(url: str, sql: str) -> None:
    """Run ``sql`` (one or more statements) on a connection of its own."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _insert_note(url: str, note_id: int) -> None:
    database = PostgresDatabase(url, pool_size=1)
    try:
        async def work(tx: Transaction) -> None:
            await tx.fetch_all("INSERT INTO notes (id, body) VALUES ($1, 'c')", (note_id,))

        await database.write(work)
    finally:
        await database.close()


@pytest.mark.parametrize("earlier", [_COMMIT_ROWS, _COMMIT_ROWS_OLD_DATA, _NUMBERED_IN_PLACE],
                         ids=["commit rows", "commit rows with old rows", "numbered in place"])
def test_an_earlier_layout_is_converted_keeping_its_numbered_changes(database_url: str, earlier: str) -> None:
    async def run() -> None:
        await _execute(database_url, earlier)
        await migrate(database_url, None)
        log = await _fetch(database_url, "SELECT seq, txid::text, op, pk::text, salt::text, actor "
                                         "FROM ledgerbase.ledger_log ORDER BY seq")
        assert log == _KEPT  # the change that was never numbered is gone
        old_rows = await _fetch(database_url, "SELECT seq, old_data::text FROM ledgerbase.ledger_log "
                                              "WHERE old_data IS NOT NULL")
        assert old_rows == ([(2, '{"id": 1, "body": "z"}')] if "old_data" in earlier else [])
        assert await _fetch(database_url, "SELECT to_regclass('ledgerbase.ledger_commits'), "
                                          "to_regprocedure('ledgerbase.sequence_changes()')") == [(None, None)]
        # the table's trigger now runs at COMMIT, and numbering goes on after the kept changes
        assert await _fetch(database_url, "SELECT tgconstraint <> 0, tgdeferrable, tginitdeferred FROM pg_trigger "
                                          "WHERE tgname = 'ledgerbase_capture' AND tgrelid = 'notes'::regclass"
                            ) == [(True, True, True)]
        await _insert_note(database_url, 3)
        assert await _fetch(database_url, "SELECT seq, op, pk::text, row_data::text FROM ledgerbase.ledger_log "
                                          "WHERE seq > 2") == [(3, "insert", '{"id": 3}', '{"id": 3, "body": "c"}')]
        await migrate(database_url, None)  # a second start changes nothing
        assert len(await _fetch(database_url, "SELECT 1 FROM ledgerbase.ledger_log")) == 4

    asyncio.run(run())


def test_a_migration_may_alter_a_table_after_writing_to_it(database_url: str, tmp_path: Path) -> None:
    """Changes are written at COMMIT, where PostgreSQL refuses to alter a table with trigger
    events pending; migrations capture each statement's changes when it ends instead."""
    (tmp_path / "001_notes.sql").write_text("create table notes (id bigint primary key, body text);\n"
                                           "insert into notes values (1, 'a');\n")
    (tmp_path / "002_backfill.sql").write_text("alter table notes add column tag text;\n"
                                               "update notes set tag = 'x';\n"
                                               "alter table notes alter column tag set not null;\n")
    asyncio.run(migrate(database_url, tmp_path))
    log = asyncio.run(_fetch(database_url, "SELECT seq, op, row_data::text FROM ledgerbase.ledger_log "
                                           "WHERE table_name = 'notes' ORDER BY seq"))
    assert [(op, row) for _, op, row in log] == [("insert", '{"id": 1, "body": "a"}'),
                                                 ("update", '{"id": 1, "tag": "x", "body": "a"}')]


def test_a_write_is_on_disk_when_it_is_answered(database_url: str) -> None:
    """The numbered transaction commits without waiting for its flush; the flush transaction the
    write then waits for must cover it (a transaction that only takes an id does not wait)."""
    async def run() -> None:
        database = await _notes_database(database_url, pool_size=1)
        try:
            for note_id in range(10, 30):
                assert await _on_disk(database, await _write_note(database, note_id))
        finally:
            await database.close()

    asyncio.run(run())


def test_concurrent_writes_share_flushes_and_each_is_on_disk_when_answered(database_url: str) -> None:
    """Writes that commit while a flush runs wait for the next one, which serves them all: each is
    on disk when answered, and PostgreSQL runs fewer flush transactions than there are writes."""
    async def run() -> None:
        database = await _notes_database(database_url, pool_size=8)
        try:
            async def write(note_id: int) -> bool:
                return await _on_disk(database, await _write_note(database, note_id))

            before = database._flusher.flushes
            answers = await asyncio.gather(*(write(note_id) for note_id in range(100, 164)))
            assert all(answers)
            assert 1 <= database._flusher.flushes - before < len(answers)
            log = await _fetch(database_url, "SELECT seq, pk ->> 'id' FROM ledgerbase.ledger_log ORDER BY seq")
            assert [seq for seq, _ in log] == list(range(len(log)))  # gapless
            assert sorted(int(note) for _, note in log) == list(range(100, 164))
        finally:
            await database.close()

    asyncio.run(run())


def test_the_flush_reconnects_when_its_connection_is_lost(database_url: str) -> None:
    """A flush whose connection was closed by the server (a restart, an administrator) runs again
    on a new one: the write is answered, on disk."""
    async def run() -> None:
        database = await _notes_database(database_url, pool_size=1)
        try:
            await _write_note(database, 40)
            flusher = database._flusher._connection
            assert flusher is not None
            # from another session, waiting until it is gone
            await _fetch(database_url, f"SELECT pg_terminate_backend({flusher.get_server_pid()}, 5000)")
            assert await _on_disk(database, await _write_note(database, 41))
            assert database._flusher._connection is not flusher
        finally:
            await database.close()

    asyncio.run(run())


async def _notes_database(url: str, pool_size: int) -> PostgresDatabase:
    """The notes table made and captured, and a database to write to it."""
    await _execute(url, _TABLE)
    await migrate(url, None)
    return PostgresDatabase(url, pool_size=pool_size)


async def _write_note(database: PostgresDatabase, note_id: int) -> str:
    """Insert a note; the WAL position its commit record comes after."""
    async def work(tx: Transaction) -> Any:
        await tx.fetch_all("INSERT INTO notes (id, body) VALUES ($1, 'f')", (note_id,))
        return (await tx.fetch_all("SELECT pg_current_wal_insert_lsn()::text", ()))[0][0]

    written: str = await database.write(work)
    return written


async def _on_disk(database: PostgresDatabase, written: str) -> bool:
    """Whether the WAL is flushed past ``written`` (so the commit after it is on disk)."""
    return await database.fetch_one("SELECT pg_current_wal_flush_lsn() > $1::text::pg_lsn",
                                    (written,)) == (True,)
