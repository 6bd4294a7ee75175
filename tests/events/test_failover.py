"""Two `ledgerbase serve` processes on one database: exactly one publishes the outbox, and when it
is killed (SIGKILL) the other takes over after the lease, without loss, duplicates or reordering."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledgerbase.auth.keys import make_api_key
from tests.conftest import migrated_database
from tests.events.support import (
    NATS_URL,
    REDIS_URL,
    Names,
    broker_url,
    cleanup,
    nats_messages,
    redis_events,
    wait_for,
    write_schema,
)
from tests.ledger.test_crash import Server


@pytest.fixture
def brokers() -> Iterator[tuple[str, str, Names]]:
    nats_url = broker_url("LEDGERBASE_TEST_NATS_URL", NATS_URL)
    redis_url = broker_url("LEDGERBASE_TEST_REDIS_URL", REDIS_URL)
    names = Names.fresh()
    yield nats_url, redis_url, names
    cleanup(nats_url, redis_url, names)


@pytest.fixture
def database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    yield from migrated_database(dialect, tmp_path, write_schema(tmp_path), "lb_nodes")


def _publishing(server: Server, sink: str) -> bool:
    for line in httpx.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(f'ledgerbase_events_publishing{{sink="{sink}"}}'):
            return float(line.rsplit(" ", 1)[1]) == 1
    return False


def test_killing_the_publishing_node_loses_and_reorders_nothing(database_url: str, tmp_path: Path,
                                                                brokers: tuple[str, str, Names]) -> None:
    nats_url, redis_url, names = brokers
    secret = secrets.token_urlsafe(32)
    key = make_api_key(secret, "service_role")
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    settings = {"nats_url": nats_url, "redis_url": redis_url, "events_nats_stream": names.stream,
                "events_nats_subject_prefix": names.prefix, "events_redis_key": names.redis_key,
                "events_lease_seconds": "2", "events_retry_max_seconds": "0.3"}
    nodes = [Server(database_url, tmp_path / f"node{i}", secret, **settings) for i in range(2)]
    try:
        for number in range(20):  # writes through both nodes
            reply = httpx.post(f"{nodes[number % 2].url}/rest/v1/items", json={"name": f"n{number}"},
                               headers=headers, timeout=10)
            assert reply.status_code == 201
        wait_for(lambda: len(redis_events(redis_url, names.redis_key)) == 20, what="20 events in Redis")
        sink = f"redis:{names.redis_key}"
        publishers = [node for node in nodes if _publishing(node, sink)]
        assert len(publishers) == 1
        survivor = nodes[1 - nodes.index(publishers[0])]
        publishers[0].kill()
        for number in range(20, 40):
            reply = httpx.post(f"{survivor.url}/rest/v1/items", json={"name": f"n{number}"}, headers=headers,
                               timeout=10)
            assert reply.status_code == 201
        wait_for(lambda: len(redis_events(redis_url, names.redis_key)) >= 40, what="40 events in Redis")
        wait_for(lambda: len(nats_messages(nats_url, names.stream)) >= 40, what="40 messages in NATS")
        assert _publishing(survivor, sink)
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.kill()
    events = redis_events(redis_url, names.redis_key)
    assert [event["ledger_seq"] for event in events] == list(range(40))
    assert [event["record"]["name"] for event in events] == [f"n{n}" for n in range(40)]
    assert [message.event["ledger_seq"] for message in nats_messages(nats_url, names.stream)] == list(range(40))
