"""``ledgerbase events tail`` prints the changes committed from now on, one JSON line each."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from ledgerbase.db.migrate import migrate
from tests.conftest import create_scratch_database, drop_scratch_database
from tests.events.support import StoppableServer, insert, write_schema


@pytest.fixture
def database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'tail.db'}" if dialect == "sqlite" else create_scratch_database()
    asyncio.run(migrate(url, write_schema(tmp_path)))
    yield url
    if dialect == "postgres":
        drop_scratch_database(url)


def test_tail_follows_changes_of_one_table(database_url: str, tmp_path: Path) -> None:
    server = StoppableServer(database_url, tmp_path)
    assert insert(server.server, [{"name": "before tail"}]).status_code == 201
    process = subprocess.Popen(
        [sys.executable, "-c", "from ledgerbase.cli import app; app()", "events", "tail", "--table", "items",
         "--database", database_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True)
    reader.start()
    try:
        # the tail starts at the head it sees when it starts: write until it has seen one
        number = 0
        while True:
            assert insert(server.server, [{"name": f"tailed {number}"}]).status_code == 201
            try:
                first = orjson.loads(lines.get(timeout=0.5))
                break
            except queue.Empty:
                number += 1
                assert number < 40, "ledgerbase events tail printed nothing"
        for extra in range(3):
            assert insert(server.server, [{"name": f"more {extra}"}]).status_code == 201
        seen = [first] + [orjson.loads(lines.get(timeout=10)) for _ in range(number + 4 - first["ledger_seq"])]
    finally:
        process.terminate()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()
        server.stop()
    assert all(event["table"] == "items" and event["op"] == "INSERT" for event in seen)
    assert [event["ledger_seq"] for event in seen] == list(range(first["ledger_seq"], first["ledger_seq"] + len(seen)))
    assert "before tail" not in str(seen)
    assert seen[-1]["record"]["name"] == "more 2"
