"""SIGKILL in the middle of a write burst: no acknowledged write is lost, and the log after the
restart verifies and extends every checkpoint published before the crash (both databases)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from ledgerbase.auth.keys import make_api_key
from ledgerbase.ledger import merkle, tiles
from ledgerbase.ledger.checkpoint import open_checkpoint
from ledgerbase.ledger.note import parse_verifier_key
from tests.conftest import free_port

MIGRATIONS = Path(__file__).resolve().parents[1] / "fixtures" / "ledger"


class Server:
    """``ledgerbase serve`` in its own process."""

    def __init__(self, database_url: str, data_dir: Path, secret: str, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LEDGERBASE_DATA_DIR": str(data_dir), "LEDGERBASE_JWT_SECRET": secret,
               "LEDGERBASE_LEDGER_INTERVAL_SECONDS": "0.05", "LEDGERBASE_LOG_LEVEL": "warning",
               **{f"LEDGERBASE_{name.upper()}": value for name, value in settings.items()}}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ledgerbase.cli", "serve", "--port", str(self.port), "--database", database_url],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _checkpoint(client: httpx.Client) -> tuple[int, bytes]:
    verifier = parse_verifier_key(client.get("/ledger/v1/key").text.strip())
    checkpoint, _ = open_checkpoint(client.get("/ledger/v1/checkpoint").text, [verifier])
    return checkpoint.size, checkpoint.root


def test_sigkill_during_a_write_burst_loses_nothing_acknowledged(empty_database_url: str,
                                                                  tmp_path: Path) -> None:
    import asyncio

    from ledgerbase.db.migrate import migrate

    database_url = empty_database_url
    asyncio.run(migrate(database_url, MIGRATIONS))
    secret = secrets.token_urlsafe(32)
    headers = {"apikey": make_api_key(secret, "service_role"),
               "Authorization": f"Bearer {make_api_key(secret, 'service_role')}"}
    server = Server(database_url, tmp_path / "data", secret)
    acknowledged: list[int] = []
    seen: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def writer(name: str) -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=5) as client:
            while not stop.is_set():
                try:
                    reply = client.post("/rest/v1/accounts", json={"owner": name},
                                        headers={"Prefer": "return=representation"})
                except httpx.TransportError:
                    return
                if reply.status_code == 201:
                    acknowledged.append(reply.json()[0]["id"])

    def watcher() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not stop.is_set():
                try:
                    seen.append(_checkpoint(client))
                except (httpx.TransportError, ValueError):
                    return
                time.sleep(0.03)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(4)]
    threads.append(threading.Thread(target=watcher))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while (len(acknowledged) < 150 or len({size for size, _ in seen}) < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(acknowledged) >= 150 and seen

    server = Server(database_url, tmp_path / "data", secret)
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            # every acknowledged row survived
            found = {row["id"] for row in client.get("/rest/v1/accounts", params={"select": "id"}).json()}
            assert set(acknowledged) <= found
            # the integrator resumes and covers every row written
            deadline = time.monotonic() + 30
            while (size_root := _checkpoint(client))[0] < len(found) and time.monotonic() < deadline:
                time.sleep(0.1)
            size, root = size_root
            assert size >= len(found)
            # the whole log verifies: entries -> leaves -> the signed root
            leaves = []
            for index in range(0, size, tiles.TILE_WIDTH):
                bundle = tiles.bundle_for(index, size)
                data = client.get("/ledger/v1/" + bundle.path()).content
                leaves.extend(merkle.leaf_hash(entry) for entry in tiles.decode_bundle(data))
            assert merkle.root(leaves) == root
            # and extends every checkpoint published before the crash
            for old_size, old_root in sorted(set(seen)):
                if old_size == 0:
                    continue
                assert merkle.root(leaves[:old_size]) == old_root
                proof = client.get("/ledger/v1/proof/consistency", params={"from": old_size, "to": size}).json()
                merkle.verify_consistency(old_size, size, [base64.b64decode(h) for h in proof["hashes"]],
                                          old_root, root)
    finally:
        server.kill()
