"""SQLite's writer: its connection never checkpoints; a thread of its own copies the WAL back
into the database file soon after each commit."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

from ledgerbase.db.engine import SqliteDatabase, Transaction


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
