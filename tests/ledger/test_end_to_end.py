"""The ledger through real servers: writes become entries in commit order, proofs verify
against signed checkpoints, and the tiles served are the tree, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from ledgerbase.ledger import merkle, tiles
from ledgerbase.ledger.checkpoint import open_checkpoint
from ledgerbase.ledger.entry import row_digest
from ledgerbase.ledger.note import parse_verifier_key
from tests.conftest import RunningServer

MIGRATIONS = Path(__file__).resolve().parents[1] / "fixtures" / "ledger"


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(MIGRATIONS, ledger_interval_seconds=0.05)


def _checkpoint(client: httpx.Client, at_least: int) -> tuple[int, bytes, str]:
    """Wait for a checkpoint of ``at_least`` entries; returns (size, root, signed text)."""
    verifier = parse_verifier_key(client.get("/ledger/v1/key").text.strip())
    deadline = time.monotonic() + 15
    while True:
        signed = client.get("/ledger/v1/checkpoint").text
        checkpoint, _note = open_checkpoint(signed, [verifier])
        if checkpoint.size >= at_least or time.monotonic() > deadline:
            return checkpoint.size, checkpoint.root, signed
        time.sleep(0.05)


def _entries(client: httpx.Client, size: int) -> list[dict[str, object]]:
    return [orjson.loads(client.get(f"/ledger/v1/entries/{i}").content) for i in range(size)]


def test_writes_become_entries_in_order_and_rollbacks_do_not(server: RunningServer) -> None:
    headers = server.headers("service_role")
    with httpx.Client(base_url=server.url, headers=headers) as client:
        start, _, _ = _checkpoint(client, 1)  # the seeded row was adopted: one entry
        assert start >= 1 and _entries(client, 1)[0]["table"] == "accounts"
        created = client.post("/rest/v1/accounts", json=[{"owner": "ana"}, {"owner": "bo"}],
                              headers={"Prefer": "return=representation"})
        assert created.status_code == 201
        ana, bo = (row["id"] for row in created.json())
        assert client.patch(f"/rest/v1/accounts?id=eq.{ana}", json={"balance": "5.50"}).status_code == 204
        # rolled back: neither a failed constraint nor tx=rollback leaves an entry
        assert client.patch(f"/rest/v1/accounts?id=eq.{ana}", json={"balance": -1}).status_code == 400
        assert client.post("/rest/v1/accounts", json={"owner": "ghost"},
                           headers={"Prefer": "tx=rollback"}).status_code == 201
        assert client.delete(f"/rest/v1/accounts?id=eq.{bo}").status_code == 204
        size, root, _ = _checkpoint(client, start + 4)
        assert size == start + 4
        entries = _entries(client, size)
        assert [(e["seq"], e["table"], e["op"], e["pk"]) for e in entries[start:]] == [
            (start, "accounts", "insert", {"id": ana}), (start + 1, "accounts", "insert", {"id": bo}),
            (start + 2, "accounts", "update", {"id": ana}), (start + 3, "accounts", "delete", {"id": bo}),
        ]
        assert {e["actor"] for e in entries[start:]} == {"service_role"}
        # every entry is included under the signed root, by the proofs served
        for index in range(size):
            proof = client.get("/ledger/v1/proof/inclusion", params={"index": index, "size": size}).json()
            leaf = merkle.leaf_hash(client.get(f"/ledger/v1/entries/{index}").content)
            assert base64.b64decode(proof["leaf_hash"]) == leaf
            merkle.verify_inclusion(leaf, index, size, [base64.b64decode(h) for h in proof["hashes"]], root)
        # the tiles served are the tree: level-0 tile hashes are the leaves, the root follows
        bundle = client.get("/ledger/v1/" + tiles.EntryBundle(0, size).path()).content
        leaves = [merkle.leaf_hash(entry) for entry in tiles.decode_bundle(bundle)]
        tile = client.get("/ledger/v1/" + tiles.Tile(0, 0, size).path())
        assert tile.content == b"".join(leaves) and merkle.root(leaves) == root
        assert "immutable" not in tile.headers["cache-control"]


def test_consistency_between_every_checkpoint(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers("service_role")) as client:
        first, first_root, _ = _checkpoint(client, 1)
        client.post("/rest/v1/accounts", json=[{"owner": f"o{i}"} for i in range(300)])
        second, second_root, _ = _checkpoint(client, first + 300)
        proof = client.get("/ledger/v1/proof/consistency", params={"from": first, "to": second}).json()
        merkle.verify_consistency(first, second, [base64.b64decode(h) for h in proof["hashes"]],
                                  first_root, second_root)
        # a full tile now exists: immutable, 256 hashes
        full = client.get("/ledger/v1/tile/0/000")
        assert len(full.content) == 256 * 32 and "immutable" in full.headers["cache-control"]


def test_a_row_history_proves_the_row_a_client_holds(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers("service_role")) as client:
        created = client.post("/rest/v1/accounts", json={"owner": "cy", "balance": 3},
                              headers={"Prefer": "return=representation"})
        row = created.json()[0]
        patched = client.patch(f"/rest/v1/accounts?id=eq.{row['id']}", json={"balance": 4},
                               headers={"Prefer": "return=representation"})
        changed = patched.json()[0]
        # a write that returns its rows says which entry it made
        assert int(patched.headers["ledger-seq"]) == int(created.headers["ledger-seq"]) + 1
        start, _, _ = _checkpoint(client, 1)
        _checkpoint(client, start + 0)
        deadline = time.monotonic() + 15
        while True:
            history = client.get(f"/ledger/v1/rows/accounts?id=eq.{row['id']}").json()
            if len(history["versions"]) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        first, last = history["versions"]
        assert (first["entry"]["op"], last["entry"]["op"]) == ("insert", "update")
        assert (first["seq"], last["seq"]) == (int(created.headers["ledger-seq"]), int(patched.headers["ledger-seq"]))
        # what the client holds, with the salt, gives the digest the log committed to
        assert last["entry"]["digest"] == row_digest(base64.b64decode(last["salt"]), changed)
        assert first["entry"]["digest"] == row_digest(base64.b64decode(first["salt"]), row)
        size = history["tree_size"]
        _, root, _ = _checkpoint(client, size)
        checkpoint_root = base64.b64decode(history["checkpoint"].split("\n")[2])
        merkle.verify_inclusion(base64.b64decode(last["leaf_hash"]), last["seq"], size,
                                [base64.b64decode(h) for h in last["inclusion"]], checkpoint_root)
        # the anon key may not read the history of a row it cannot read... here it can (no RLS)
        anon = client.get(f"/ledger/v1/rows/accounts?id=eq.{row['id']}", headers=server.headers("anon"))
        assert anon.status_code == 200
        assert client.get("/ledger/v1/rows/accounts?owner=eq.cy").status_code == 400
        assert client.get("/ledger/v1/rows/nope?id=eq.1").status_code == 404


@pytest.mark.parametrize("path", ["tile/0/x001", "tile/0/000.p/0", "entries/99999999", "proof/inclusion?index=a",
                                  "proof/consistency?from=5&to=2", "nothing"])
def test_bad_ledger_requests_are_json_errors(server: RunningServer, path: str) -> None:
    reply = httpx.get(f"{server.url}/ledger/v1/{path}")
    assert 400 <= reply.status_code < 500
    assert {"code", "message"} <= set(reply.json())


def test_metrics_show_the_ledger(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers("service_role")) as client:
        size, _, _ = _checkpoint(client, 1)
        deadline = time.monotonic() + 10
        while True:
            text = client.get("/metrics").text
            values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                      if line.startswith("ledgerbase_ledger_")}
            if values.get("ledgerbase_ledger_entries", 0) >= size or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert values["ledgerbase_ledger_entries"] >= size
        assert values["ledgerbase_ledger_last_checkpoint_timestamp_seconds"] > time.time() - 600
        assert "ledgerbase_ledger_integration_lag_seconds" in values and "ledgerbase_ledger_pending_changes" in values


def test_a_bad_signing_key_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    from ledgerbase.app import create_app
    from ledgerbase.config import Settings
    from ledgerbase.ledger.log import LedgerError

    (tmp_path / "ledger-key").write_text("not a key\n")
    with pytest.raises(LedgerError, match="not a valid note signer key") as refused:
        create_app(Settings(data_dir=tmp_path, jwt_secret="s" * 32))
    assert "ledger-key" in (refused.value.hint or "")
    (tmp_path / "ledger-key").unlink()
    (tmp_path / "ledger-key").mkdir()  # not a file: cannot be read
    with pytest.raises(LedgerError, match="cannot read or create the ledger signing key"):
        create_app(Settings(data_dir=tmp_path, jwt_secret="s" * 32))
