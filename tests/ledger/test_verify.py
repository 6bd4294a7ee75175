"""``ledgerbase ledger verify``: a log audited from the outside (--url) and from its database
(--database, with drift detection), on real servers over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from ledgerbase.cli import app
from ledgerbase.ledger import merkle, tiles
from ledgerbase.ledger.checkpoint import Checkpoint
from ledgerbase.ledger.entry import make_entry, row_digest
from ledgerbase.ledger.note import Signer
from ledgerbase.ledger.verify import VerifyError, audit_tree
from tests.conftest import RunningServer

MIGRATIONS = Path(__file__).resolve().parents[1] / "fixtures" / "ledger"


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(MIGRATIONS, ledger_interval_seconds=0.05)


def cli(*args: str) -> tuple[int, str]:
    """Run ``ledgerbase ledger ...``; returns (exit code, stdout and stderr)."""
    result = CliRunner().invoke(app, ["ledger", *args])
    return result.exit_code, result.output


def run_sql(server: RunningServer, statement: str, *params: Any) -> list[Sequence[Any]]:
    """A plain SQL statement on the server's database, behind Ledgerbase's back (``?`` placeholders)."""
    if server.dialect == "sqlite":
        connection = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return connection.execute(statement, params).fetchall()
        finally:
            connection.close()
    numbered = statement
    for index in range(1, len(params) + 1):
        numbered = numbered.replace("?", f"${index}", 1)

    async def run() -> list[Sequence[Any]]:
        connection = await asyncpg.connect(server.database_url)
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *params)]
        finally:
            await connection.close()

    return asyncio.run(run())


def ledger_table(server: RunningServer, name: str) -> str:
    return f"ledgerbase.ledger_{name}" if server.dialect == "postgres" else f"_ledgerbase_ledger_{name}"


def wait_for_size(server: RunningServer, at_least: int) -> int:
    """Wait until the published checkpoint has ``at_least`` entries; returns its size."""
    deadline = time.monotonic() + 20
    while True:
        size = int(httpx.get(f"{server.url}/ledger/v1/checkpoint").text.split("\n")[1])
        if size >= at_least:
            return size
        assert time.monotonic() < deadline, f"the checkpoint stayed at {size} entries"
        time.sleep(0.05)


def insert(server: RunningServer, count: int) -> list[int]:
    reply = httpx.post(f"{server.rest_url}/accounts", json=[{"owner": f"o{i}"} for i in range(count)],
                       headers={**server.headers(), "Prefer": "return=representation"}, timeout=30)
    assert reply.status_code == 201, reply.text
    return [row["id"] for row in reply.json()]


def test_a_healthy_log_verifies_at_every_size_and_stays_consistent(server: RunningServer, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    size = wait_for_size(server, 1)
    code, out = cli("verify", "--url", server.url, "--state", str(state))
    assert code == 0, out
    assert f"size {size} " in out
    # exactly one full tile, then across it, then a second full level-0 tile and a partial one
    for target in (256, 300, 513):
        insert(server, target - size)
        size = wait_for_size(server, target)
        assert size == target
        earlier = json.loads(state.read_text())["checkpoint"].split("\n")[1]
        code, out = cli("verify", "--url", server.url, "--state", str(state))
        assert code == 0, out
        assert f"size {target} " in out and f"consistent with the checkpoint of size {earlier}" in out
    assert json.loads(state.read_text())["checkpoint"].split("\n")[1] == "513"
    # the key remembered is the one checked: another key is refused
    other = Signer.generate("someone-else").verifier().key()
    code, out = cli("verify", "--url", server.url, "--state", str(state), "--key", other)
    assert code == 1 and "not the one the state file trusts" in out


@pytest.mark.parametrize("what", ["tile", "bundle", "entry", "level1"])
def test_an_altered_tile_or_bundle_fails(server: RunningServer, what: str) -> None:
    size = wait_for_size(server, 513)  # after the test above: full tiles exist
    code, out = cli("verify", "--url", server.url)
    assert code == 0, out
    table, where, expect = {
        "tile": ("tiles", "level = 0 AND idx = 1", "tile/0/001: hash 7 is not the leaf hash of entry 263"),
        "bundle": ("bundles", "idx = 0", "tile/0/000: hash 7 is not the leaf hash of entry 7 in tile/entries/000"),
        "entry": ("bundles", "idx = 1", "entry 300 (tile/entries/001): entry is not in canonical form"),
        "level1": ("tiles", "level = 1 AND idx = 0", "tile/1/000.p/2 does not match the tiles below it"),
    }[what]
    (original,) = run_sql(server, f"SELECT data FROM {ledger_table(server, table)} WHERE {where}")[0]
    data = bytearray(original)
    if what in ("bundle", "entry"):
        entries = tiles.decode_bundle(bytes(data))
        if what == "bundle":  # entry 7's actor changes: still canonical, another leaf hash
            entries[7] = entries[7].replace(b'"actor":"', b'"actor":"x', 1)
        else:  # entry 300 gains a space
            entries[44] = entries[44].replace(b'"op":', b'"op": ', 1)
        data = bytearray(tiles.encode_bundle(entries))
    else:
        data[(1 if what == "level1" else 7) * 32] ^= 1
    run_sql(server, f"UPDATE {ledger_table(server, table)} SET data = ? WHERE {where}", bytes(data))
    try:
        code, out = cli("verify", "--url", server.url)
        assert code == 1
        assert expect in " ".join(out.split()), out
        assert size == wait_for_size(server, size)
    finally:
        run_sql(server, f"UPDATE {ledger_table(server, table)} SET data = ? WHERE {where}", bytes(original))
    assert cli("verify", "--url", server.url)[0] == 0


def test_another_history_under_the_same_key_is_inconsistent(
        server_factory: Callable[..., RunningServer], tmp_path: Path) -> None:
    key = Signer.generate("test.example/ledger").key()
    first = server_factory(MIGRATIONS, ledger_interval_seconds=0.05, ledger_key=key,
                           ledger_origin="test.example/ledger")
    second = server_factory(MIGRATIONS, ledger_interval_seconds=0.05, ledger_key=key,
                            ledger_origin="test.example/ledger")
    insert(first, 3)
    insert(second, 9)  # a different, longer history, signed by the same key
    first_size = wait_for_size(first, 4)
    wait_for_size(second, 10)
    state = tmp_path / "state.json"
    assert cli("verify", "--url", first.url, "--state", str(state))[0] == 0
    kept = state.read_text()
    code, out = cli("verify", "--url", second.url, "--state", str(state))
    assert code == 1
    assert f"is not consistent with the earlier one of size {first_size}" in " ".join(out.split())
    assert state.read_text() == kept  # a failed audit does not move the state on
    # a server with another key is refused outright
    third = server_factory(MIGRATIONS, ledger_interval_seconds=0.05)
    wait_for_size(third, 1)
    code, out = cli("verify", "--url", third.url, "--state", str(state))
    assert code == 1 and "the log's key changed" in out


def test_drift_behind_ledgerbases_back_is_reported(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(MIGRATIONS, ledger_interval_seconds=0.05)
    headers = server.headers()
    ids = insert(server, 4)
    with httpx.Client(base_url=server.rest_url, headers=headers) as client:
        assert client.patch(f"/accounts?id=eq.{ids[0]}", json={"balance": "7.25"}).status_code == 204
        assert client.delete(f"/accounts?id=eq.{ids[1]}").status_code == 204
    wait_for_size(server, 7)
    code, out = cli("verify", "--database", server.database_url)
    assert code == 0, out
    assert "rows ok: 4 live rows match the ledger" in out
    # not integrated yet: the digest comes from the change itself
    with httpx.Client(base_url=server.rest_url, headers=headers) as client:
        assert client.patch(f"/accounts?id=eq.{ids[2]}", json={"owner": "renamed"}).status_code == 204
    assert cli("verify", "--database", server.database_url)[0] == 0

    run_sql(server, "INSERT INTO accounts (id, owner) VALUES (?, ?)", 9001, "sneaky")
    run_sql(server, "UPDATE accounts SET balance = 99 WHERE id = ?", ids[0])
    run_sql(server, "DELETE FROM accounts WHERE id = ?", ids[3])
    code, out = cli("verify", "--database", server.database_url)
    assert code == 1
    assert 'drift: inserted accounts {"id":9001}' in out
    assert f'drift: changed accounts {{"id":{ids[0]}}}' in out
    assert f'drift: deleted accounts {{"id":{ids[3]}}}' in out
    assert "3 of 4 rows changed behind Ledgerbase's back" in " ".join(out.split())


def test_verify_database_checks_the_ledger_tables(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(MIGRATIONS, ledger_interval_seconds=0.05)
    insert(server, 2)
    wait_for_size(server, 3)
    key = httpx.get(f"{server.url}/ledger/v1/key").text.strip()
    code, out = cli("verify", "--database", server.database_url, "--key", key)
    assert code == 0, out
    run_sql(server, f"UPDATE {ledger_table(server, 'tiles')} SET data = ? WHERE level = 0 AND idx = 0",
            b"\x00" * 96)
    code, out = cli("verify", "--database", server.database_url)
    assert code == 1 and "tile/0/000.p/3" in out


# --- the audit on its own: every shape of tree, including level-2 tiles -------------------


class MemorySource:
    """A log in memory, served as tiles and bundles."""

    def __init__(self, size: int) -> None:
        digest = row_digest(b"salt", {"id": 1})
        first = make_entry(0, "2026-01-02T03:04:05.000000Z", "t", "insert", {"id": 0}, digest, "a")
        # make_entry's bytes with other numbers: canonical as long as the numbers are plain integers
        template = first.replace(b'"id":0', b'"id":%d').replace(b'"seq":0', b'"seq":%d')
        self.entries = [template % (seq, seq) for seq in range(size)]
        self.built = tiles.build_tiles([merkle.leaf_hash(entry) for entry in self.entries])
        self.tiles = {(tile.level, tile.index): data for tile, data in self.built.tiles.items()}

    async def read(self, item: tiles.Tile | tiles.EntryBundle) -> bytes:
        if isinstance(item, tiles.Tile):
            return self.tiles[(item.level, item.index)][:item.width * 32]
        first = item.index * 256
        return tiles.encode_bundle(self.entries[first:first + item.width])


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 256 * 256 + 257])
def test_audit_tree_of_any_size(size: int) -> None:
    source = MemorySource(size)
    checkpoint = Checkpoint("o", size, source.built.root)
    earlier = Checkpoint("o", size // 3, merkle.root([merkle.leaf_hash(e) for e in source.entries[:size // 3]]))
    audit = asyncio.run(audit_tree(source, checkpoint, earlier=earlier if earlier.size else None,
                                   wanted=[size - 1] if size else []))
    assert audit.bundles == -(-size // 256)
    assert audit.tiles == audit.bundles + sum(-(-(size >> (8 * level)) // 256) for level in (1, 2))
    if size:
        assert audit.entries[size - 1].seq == size - 1
    if size > 300:
        return  # the failures below need no level-2 tiles
    wrong = Checkpoint("o", size, merkle.EMPTY_ROOT if size else b"\x01" * 32)
    with pytest.raises(VerifyError, match="the tiles hash to root"):
        asyncio.run(audit_tree(source, wrong))
    if size > 2:
        forked = Checkpoint("o", 2, merkle.EMPTY_ROOT)
        with pytest.raises(VerifyError, match="inconsistent history: the first 2 entries"):
            asyncio.run(audit_tree(source, checkpoint, earlier=forked))
