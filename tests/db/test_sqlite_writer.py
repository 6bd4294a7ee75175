"""SQLite's writer: its connection never checkpoints; a thread of its own copies the WAL back
into the database file soon after each commit."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ledgerbase.db.engine import SqliteDatabase, Transaction, connect_sqlite, sqlite_error
from ledgerbase.db.sqlite_threads import RolledBack, Writer
from ledgerbase.errors import LedgerbaseError, UnavailableError


def _rows_in_file_alone(path: Path, copy: Path) -> int:
    """The rows of ``t`` in the database file without its WAL: what checkpoints have written there."""
    shutil.copyfile(path, copy)
    connection = sqlite3.connect(copy)
    try:
        return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        connection.close()


def test_commits_reach_the_database_file_without_the_writer_checkpointing(tmp_path: Path) -> None:
    path = tmp_path / "data.db"

    async def run() -> None:
        database = SqliteDatabase(f"sqlite:///{path}")
        await database.start()
        try:
            async def setup(tx: Transaction) -> list[tuple[object, ...]]:
                await tx.fetch_all("CREATE TABLE t (id integer PRIMARY KEY, body text)", ())
                return await tx.fetch_all("PRAGMA wal_autocheckpoint", ())

            assert await database.write(setup) == [(0,)]
            for n in range(200):
                async def insert(tx: Transaction, n: int = n) -> None:
                    await tx.fetch_all("INSERT INTO t (body) VALUES (?)", ("x" * 3000 + str(n),))

                await database.write(insert)
            deadline = time.monotonic() + 10
            while _rows_in_file_alone(path, tmp_path / "copy.db") != 200:
                assert time.monotonic() < deadline, "the WAL was not checkpointed into the database file"
                await asyncio.sleep(0.05)
        finally:
            await database.close()

    asyncio.run(run())


# --- group commit: the writes queued together share a transaction, a savepoint each --------

def _writer(path: Path) -> tuple[Writer, sqlite3.Connection]:
    connection = connect_sqlite(path)
    connection.execute("CREATE TABLE IF NOT EXISTS t (id integer PRIMARY KEY, v text UNIQUE)")
    return Writer(path, connect_sqlite, sqlite_error), connection


def _insert(*values: str, then: Callable[[sqlite3.Connection], object] | None = None
            ) -> Callable[[sqlite3.Connection], object]:
    def work(connection: sqlite3.Connection) -> object:
        for value in values:
            connection.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return then(connection) if then is not None else len(values)
    return work


def _stored(connection: sqlite3.Connection) -> list[str]:
    return [row[0] for row in connection.execute("SELECT v FROM t ORDER BY id")]


def _rolled_back(connection: sqlite3.Connection) -> object:
    raise RolledBack("kept out")


def _duplicate(connection: sqlite3.Connection) -> object:
    return connection.execute("INSERT INTO t (v) VALUES ('a1')")


def test_a_group_keeps_each_write_all_or_nothing(tmp_path: Path) -> None:
    writer, connection = _writer(tmp_path / "data.db")
    jobs = [
        _insert("a1", "a2"),
        _insert("b1", "b2", then=_duplicate),  # fails on its second statement's successor
        _insert("c1", then=_rolled_back),  # done, answered, not kept
        _insert("d1", "d2"),
    ]
    outcomes = writer._run_group(connection, [(work, index) for index, work in enumerate(jobs)])  # type: ignore[misc]
    assert [(future, result) for future, result, _ in outcomes if _ is None] == [(2, "kept out"), (0, 2), (3, 2)]
    failed = [(future, error) for future, _, error in outcomes if error is not None]
    assert len(failed) == 1 and failed[0][0] == 1
    assert isinstance(failed[0][1], LedgerbaseError) and failed[0][1].code == "23505"
    assert not connection.in_transaction  # committed
    assert _stored(connection) == ["a1", "a2", "d1", "d2"]


def test_writes_undone_with_their_group_are_answered_503(tmp_path: Path) -> None:
    """When SQLite ends the whole transaction (I/O error, interrupt), the writes before the
    failing one went with it: they are answered 503 (send again), never as written."""
    writer, connection = _writer(tmp_path / "data.db")

    def ends_the_transaction(connection: sqlite3.Connection) -> object:
        connection.execute("ROLLBACK")  # as SQLite does itself on such errors
        raise sqlite3.OperationalError("disk I/O error")

    jobs = [_insert("a1"), _insert("b1", then=ends_the_transaction), _insert("c1")]
    outcomes = {future: (result, error) for future, result, error in
                writer._run_group(connection, [(work, index) for index, work in enumerate(jobs)])}  # type: ignore[misc]
    assert isinstance(outcomes[0][1], UnavailableError) and outcomes[0][1].status == 503
    assert isinstance(outcomes[1][1], LedgerbaseError)
    assert outcomes[2] == (1, None)
    assert _stored(connection) == ["c1"]


def test_deferred_constraints_commit_one_write_at_a_time(tmp_path: Path) -> None:
    """SQLite checks a deferred foreign key at COMMIT: while the schema has one, writes are not
    grouped, so one write's violation fails that write alone."""
    path = tmp_path / "data.db"
    writer, connection = _writer(path)
    assert writer._may_group(connection)
    connection.execute("CREATE TABLE parent (id integer PRIMARY KEY)")
    connection.execute("CREATE TABLE child (id integer PRIMARY KEY, parent_id integer "
                       "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    assert not writer._may_group(connection)

    async def run() -> None:
        database = SqliteDatabase(f"sqlite:///{path}")
        await database.start()
        try:
            async def child(tx: Transaction, parent: int) -> None:
                await tx.fetch_all("INSERT INTO child (parent_id) VALUES (?)", (parent,))

            await database.write(lambda tx: tx.fetch_all("INSERT INTO parent (id) VALUES (1)", ()))
            outcomes = await asyncio.gather(*(database.write(lambda tx, n=n: child(tx, 1 if n % 3 else 99))
                                              for n in range(30)), return_exceptions=True)
            failed = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
            assert failed == list(range(0, 30, 3))
            assert all(isinstance(outcomes[n], LedgerbaseError) and outcomes[n].code == "23503"  # type: ignore[union-attr]
                       for n in failed)
            rows = await database.fetch_all("SELECT count(*) FROM child", ())
            assert rows[0][0] == 20
        finally:
            await database.close()

    asyncio.run(run())


def test_concurrent_writes_each_get_their_own_outcome(tmp_path: Path) -> None:
    """Many writes at once (grouped by the writer): failures, rollbacks and successes each
    answered as if alone, and only the successes stored."""
    path = tmp_path / "data.db"

    async def run() -> None:
        database = SqliteDatabase(f"sqlite:///{path}")
        await database.start()
        try:
            await database.write(lambda tx: tx.fetch_all(
                "CREATE TABLE t (id integer PRIMARY KEY, v text UNIQUE)", ()))

            def second(n: int) -> str:
                # every fifth write collides with the one before it on its second row
                return f"{n - 1}-second" if n % 5 == 0 and n else f"{n}-second"

            async def pair(tx: Transaction, n: int) -> int:
                await tx.fetch_all("INSERT INTO t (v) VALUES (?)", (f"{n}-first",))
                await tx.fetch_all("INSERT INTO t (v) VALUES (?)", (second(n),))
                return n

            for _ in range(3):
                await database.write(lambda tx: tx.fetch_all("DELETE FROM t", ()))
                outcomes = await asyncio.gather(
                    *(database.write(lambda tx, n=n: pair(tx, n), rollback=n % 7 == 3) for n in range(200)),
                    return_exceptions=True)
                for n, outcome in enumerate(outcomes):
                    if n % 5 == 0 and n and (n - 1) % 7 != 3:
                        assert isinstance(outcome, LedgerbaseError) and outcome.code == "23505", (n, outcome)
                    else:
                        assert outcome == n
                stored = {row[0] for row in await database.fetch_all("SELECT v FROM t", ())}
                expected = {value for n in range(200) for value in (f"{n}-first", second(n))
                            if n % 7 != 3 and not (n % 5 == 0 and n and (n - 1) % 7 != 3)}
                assert stored == expected
        finally:
            await database.close()

    asyncio.run(run())
