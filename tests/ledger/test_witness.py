"""Witnessing: ``ledgerbase ledger witness`` cosigns only checkpoints that extend the last one it
saw, the log takes cosignatures only from its configured witnesses and serves them with its
checkpoint, and the log never publishes a tree that does not extend its last checkpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from ledgerbase.app import create_app
from ledgerbase.auth.keys import make_api_key
from ledgerbase.config import Settings
from ledgerbase.db.migrate import migrate
from ledgerbase.ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from ledgerbase.ledger.note import CosignatureSigner, Signer, open_note, parse_verifier_key
from ledgerbase.ledger.verify import LogState
from ledgerbase.ledger.witness import load_or_create_witness_key
from tests.conftest import RunningServer, _ServerThread, drop_scratch_database, free_port, fresh_database_url
from tests.ledger.test_verify import MIGRATIONS, cli, insert, ledger_table, run_sql, wait_for_size

ORIGIN = "witnessed.example/ledger"
LOG_KEY = Signer.generate(ORIGIN)


@pytest.fixture(scope="module")
def witness_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("witness") / "witness.key"
    load_or_create_witness_key(path, "witness.example/w1")
    return path


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer], witness_key: Path) -> RunningServer:
    witness, _ = load_or_create_witness_key(witness_key)
    return server_factory(MIGRATIONS, ledger_interval_seconds=0.05, ledger_key=LOG_KEY.key(),
                          ledger_origin=ORIGIN, ledger_witnesses=f" {witness.verifier().key()} ,")


def checkpoint(server: RunningServer) -> str:
    return httpx.get(f"{server.url}/ledger/v1/checkpoint").text


def test_the_witness_key_is_private_and_stable(witness_key: Path) -> None:
    assert witness_key.stat().st_mode & 0o777 == 0o600
    first, created = load_or_create_witness_key(witness_key)
    again, _ = load_or_create_witness_key(witness_key)
    assert not created and first.verifier() == again.verifier()
    assert parse_verifier_key(first.verifier().key()) == first.verifier()


def test_a_witness_cosigns_and_the_checkpoint_carries_it(server: RunningServer, witness_key: Path,
                                                         tmp_path: Path) -> None:
    state = tmp_path / "witness.json"
    witness, _ = load_or_create_witness_key(witness_key)
    size = wait_for_size(server, 1)
    code, out = cli("witness", "--url", server.url, "--state", str(state), "--key", str(witness_key))
    assert code == 0, out
    assert witness.verifier().key() in out and f"cosigned {ORIGIN} size {size}" in out
    assert "the log took the cosignature" in out
    note = open_note(checkpoint(server), [LOG_KEY.verifier(), witness.verifier()])
    assert [s.name for s in note.signatures] == [ORIGIN, "witness.example/w1"]
    # the next checkpoint: cosigned after a consistency proof from the last one
    insert(server, 300)
    bigger = wait_for_size(server, size + 300)
    code, out = cli("witness", "--url", server.url, "--state", str(state), "--key", str(witness_key))
    assert code == 0, out
    assert f"size {bigger} (consistent with size {size})" in out
    note = open_note(checkpoint(server), [LOG_KEY.verifier(), witness.verifier()])
    assert len(note.signatures) == 2 and parse_checkpoint(note.text).size == bigger
    assert json.loads(state.read_text())["checkpoint"].split("\n")[1] == str(bigger)
    # auditors that do not know the witness still verify the cosigned checkpoint
    code, out = cli("verify", "--url", server.url)
    assert code == 0, out


def test_the_witness_refuses_a_smaller_or_forked_tree(server: RunningServer, witness_key: Path,
                                                      tmp_path: Path) -> None:
    size = wait_for_size(server, 3)
    state = tmp_path / "witness.json"
    for claimed, refusal in [(Checkpoint(ORIGIN, size + 100, os.urandom(32)), f"tree shrank from {size + 100}"),
                             (Checkpoint(ORIGIN, 2, os.urandom(32)), "consistency proof does not lead"),
                             (Checkpoint("other.example/log", 1, os.urandom(32)), "checkpoint of 'witnessed")]:
        kept = LogState(LOG_KEY.verifier().key(), sign_checkpoint(claimed, LOG_KEY))
        kept.save(state)
        code, out = cli("witness", "--url", server.url, "--state", str(state), "--key", str(witness_key))
        assert code == 1 and refusal in " ".join(out.split()), out
        assert LogState.load(state) == kept


def test_the_log_refuses_unknown_and_forged_cosignatures(server: RunningServer, witness_key: Path,
                                                         tmp_path: Path) -> None:
    witness, _ = load_or_create_witness_key(witness_key)
    stranger = tmp_path / "stranger.key"
    code, out = cli("witness", "--url", server.url, "--state", str(tmp_path / "s.json"), "--key", str(stranger))
    assert code == 1 and "not a configured witness" in out
    current = checkpoint(server)
    body = current.partition("\n\n")[0] + "\n"
    now = int(time.time())
    good = witness.cosign(body, now)
    forged = base64.b64encode(base64.b64decode(good.base64)[:12] + os.urandom(64)).decode()
    post = f"{server.url}/ledger/v1/cosignature"
    reply = httpx.post(post, content=f"\u2014 {good.name} {forged}\n".encode())
    assert reply.status_code == 403 and "invalid signature" in reply.json()["message"]
    stranger_signer, _ = load_or_create_witness_key(stranger)
    reply = httpx.post(post, content=stranger_signer.cosign(body, now).line().encode())
    assert reply.status_code == 403 and "not a configured witness" in reply.json()["message"]
    # a checkpoint this log did not sign is refused, even cosigned by a configured witness
    other = Signer.generate(ORIGIN)
    fake = sign_checkpoint(Checkpoint(ORIGIN, 5, os.urandom(32)), other)
    fake_body = fake.partition("\n\n")[0] + "\n"
    reply = httpx.post(post, content=(fake + witness.cosign(fake_body, now).line()).encode())
    assert reply.status_code == 403 and "not signed by this log" in reply.json()["message"]
    assert httpx.post(post, content=b"hello").status_code == 400
    assert httpx.get(post).status_code == 405
    # the cosignature lines alone, for the current checkpoint, are taken
    reply = httpx.post(post, content=good.line().encode())
    assert reply.status_code == 200 and reply.json()["witnesses"] == [f"{witness.name}+{witness.key_id:08x}"]


def test_a_log_without_witnesses_takes_no_cosignature(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(MIGRATIONS, ledger_interval_seconds=0.05)
    wait_for_size(server, 1)
    body = checkpoint(server).partition("\n\n")[0] + "\n"
    line = CosignatureSigner.generate("w").cosign(body, int(time.time())).line()
    reply = httpx.post(f"{server.url}/ledger/v1/cosignature", content=line.encode())
    assert reply.status_code == 403 and "no witness keys are configured" in reply.json()["message"]


# --- the log never publishes a tree that does not extend its last checkpoint -------------------


@pytest.fixture
def restartable(dialect: str, tmp_path: Path) -> Iterator[Callable[[], RunningServer]]:
    """Start servers one after another on the same database and data directory."""
    url = fresh_database_url(dialect, tmp_path)
    asyncio.run(migrate(url, MIGRATIONS))
    secret = secrets.token_urlsafe(32)
    running: list[_ServerThread] = []

    def start() -> RunningServer:
        for thread in running:
            thread.stop()
        app = create_app(Settings(data_dir=tmp_path, database_url=url, jwt_secret=secret,
                                  ledger_interval_seconds=0.05))
        port = free_port()
        thread = _ServerThread(app, port)
        thread.start()
        running.append(thread)
        key = make_api_key(secret, "service_role")
        return RunningServer(url=f"http://127.0.0.1:{port}", anon_key=key, service_key=key, dialect=dialect,
                             database_url=url, jwt_secret=secret, data_dir=tmp_path)

    yield start
    for thread in running:
        thread.stop()
    if dialect == "postgres":
        drop_scratch_database(url)


def test_a_corrupted_stored_tile_stops_publication(restartable: Callable[[], RunningServer]) -> None:
    server = restartable()
    insert(server, 4)
    size = wait_for_size(server, 5)
    published = checkpoint(server)
    restarted = restartable()  # reads the tree's edge from storage again
    run_sql(restarted, f"UPDATE {ledger_table(restarted, 'tiles')} SET data = ? WHERE level = 0 AND idx = 0",
            os.urandom(32 * size))
    with capture_logs() as logs:
        insert(restarted, 2)
        time.sleep(0.5)
    assert checkpoint(restarted) == published
    assert any(entry["event"] == "ledger_integration_failed" and "refusing to publish" in entry["error"]
               for entry in logs)
    code, out = cli("verify", "--url", restarted.url)
    assert code == 1 and f"tile/0/000.p/{size}" in out
