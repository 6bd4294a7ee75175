"""Committed changes reach NATS JetStream and Redis Streams, in commit order, at least once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ledgerbase.db.migrate import migrate
from tests.conftest import RunningServer, create_scratch_database, drop_scratch_database
from tests.events.support import (
    NATS_URL,
    REDIS_URL,
    Names,
    StoppableServer,
    broker_url,
    cleanup,
    insert,
    metric,
    nats_messages,
    redis_events,
    wait_for,
    with_port,
    write_schema,
)
from tests.test_outage import Proxy


@pytest.fixture
def nats_url() -> str:
    return broker_url("LEDGERBASE_TEST_NATS_URL", NATS_URL)


@pytest.fixture
def redis_url() -> str:
    return broker_url("LEDGERBASE_TEST_REDIS_URL", REDIS_URL)


@pytest.fixture
def names(nats_url: str, redis_url: str) -> Iterator[Names]:
    fresh = Names.fresh()
    yield fresh
    cleanup(nats_url, redis_url, fresh)


@pytest.fixture(scope="module")
def migrations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_schema(tmp_path_factory.mktemp("events-schema"))


def _both(nats_url: str, redis_url: str, names: Names, count: int) -> tuple[list[dict[str, object]], list[object]]:
    """Wait until both brokers hold ``count`` events; returns (Redis events, NATS messages)."""
    wait_for(lambda: len(redis_events(redis_url, names.redis_key)) >= count, what=f"{count} events in Redis")
    wait_for(lambda: len(nats_messages(nats_url, names.stream)) >= count, what=f"{count} messages in NATS")
    return redis_events(redis_url, names.redis_key), list(nats_messages(nats_url, names.stream))


def test_api_writes_reach_both_brokers_in_commit_order(
        server_factory: Callable[..., RunningServer], migrations: Path, nats_url: str, redis_url: str,
        names: Names) -> None:
    server = server_factory(migrations, **names.settings(nats_url, redis_url))
    headers = server.headers()
    created = insert(server, [{"name": "a", "qty": 1}, {"name": "b", "qty": 2}])
    assert created.status_code == 201, created.text
    first, second = created.json()
    # rolled back: asked for, and failed half-way through a bulk insert; neither is published
    assert insert(server, [{"name": "never"}], Prefer="return=representation,tx=rollback").status_code == 201
    clash = insert(server, [{"id": 900, "name": "x"}, {"id": 900, "name": "x again"}])
    assert clash.status_code == 409
    patched = httpx.patch(f"{server.rest_url}/items?id=eq.{first['id']}", json={"qty": 10}, timeout=10,
                          headers={**headers, "Prefer": "return=representation"})
    assert patched.status_code == 200, patched.text
    deleted = httpx.delete(f"{server.rest_url}/items?id=eq.{second['id']}", headers=headers, timeout=10)
    assert deleted.status_code == 204, deleted.text

    events, messages = _both(nats_url, redis_url, names, 4)
    assert len(events) == 4 and len(messages) == 4
    assert [event["op"] for event in events] == ["INSERT", "INSERT", "UPDATE", "DELETE"]
    assert [event["ledger_seq"] for event in events] == [0, 1, 2, 3]
    assert events[0] == {"table": "items", "op": "INSERT", "pk": {"id": first["id"]}, "record": first,
                         "old_record": None, "commit_timestamp": events[0]["commit_timestamp"], "ledger_seq": 0}
    assert events[2]["record"] == {**first, "qty": 10}
    assert events[2]["old_record"] == {"id": first["id"]}
    assert events[3]["record"] is None and events[3]["old_record"] == {"id": second["id"]}
    assert all(str(event["commit_timestamp"]).endswith("Z") for event in events)
    assert all("never" not in str(event) and "x again" not in str(event) for event in events)
    assert [message.event for message in messages] == events
    assert [message.subject for message in messages] == [
        f"{names.prefix}.items.insert", f"{names.prefix}.items.insert", f"{names.prefix}.items.update",
        f"{names.prefix}.items.delete"]
    assert [message.msg_id for message in messages] == ["0", "1", "2", "3"]
    wait_for(lambda: metric(server, "ledgerbase_events_lag", f"redis:{names.redis_key}") == 0, what="no lag")
    assert metric(server, "ledgerbase_events_lag", f"nats:{names.stream}") == 0
    assert metric(server, "ledgerbase_events_cursor", f"nats:{names.stream}") == 3


@pytest.fixture
def proxies(nats_url: str, redis_url: str) -> Iterator[tuple[Proxy, Proxy]]:
    running = (Proxy(urlsplit(nats_url).port or 4222), Proxy(urlsplit(redis_url).port or 6379))
    yield running
    for proxy in running:
        proxy.stop()
        proxy.loop.call_soon_threadsafe(proxy.loop.stop)
        proxy.thread.join(10)
        proxy.loop.close()


def test_brokers_down_at_first_are_caught_up_in_order(
        server_factory: Callable[..., RunningServer], migrations: Path, nats_url: str, redis_url: str,
        names: Names, proxies: tuple[Proxy, Proxy]) -> None:
    nats_proxy, redis_proxy = proxies  # not started: their ports refuse connections
    server = server_factory(migrations, **names.settings(with_port(nats_url, nats_proxy.port),
                                                         with_port(redis_url, redis_proxy.port)))
    for number in range(5):
        assert insert(server, [{"name": f"down {number}"}]).status_code == 201
    wait_for(lambda: metric(server, "ledgerbase_events_lag", f"redis:{names.redis_key}") == 5, what="lag 5")
    wait_for(lambda: metric(server, "ledgerbase_events_lag", f"nats:{names.stream}") == 5, what="lag 5")
    assert redis_events(redis_url, names.redis_key) == []

    nats_proxy.start()
    redis_proxy.start()
    _both(nats_url, redis_url, names, 5)
    # a second outage in the middle of the stream: cut, write, restore
    nats_proxy.stop()
    redis_proxy.stop()
    for number in range(5, 10):
        assert insert(server, [{"name": f"down {number}"}]).status_code == 201
    nats_proxy.start()
    redis_proxy.start()
    events, messages = _both(nats_url, redis_url, names, 10)
    expected = [f"down {number}" for number in range(10)]
    assert [event["record"]["name"] for event in events] == expected  # type: ignore[index]
    assert [event["ledger_seq"] for event in events] == list(range(10))
    assert [message.event["ledger_seq"] for message in messages] == list(range(10))  # type: ignore[attr-defined]
    wait_for(lambda: metric(server, "ledgerbase_events_lag", f"nats:{names.stream}") == 0, what="no lag")


@pytest.fixture
def database_url(dialect: str, tmp_path: Path, migrations: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'events.db'}" if dialect == "sqlite" else create_scratch_database()
    asyncio.run(migrate(url, migrations))
    yield url
    if dialect == "postgres":
        drop_scratch_database(url)


def test_restart_resumes_from_the_cursor(database_url: str, tmp_path: Path, nats_url: str, redis_url: str,
                                         names: Names) -> None:
    settings = names.settings(nats_url, redis_url)
    first = StoppableServer(database_url, tmp_path, **settings)
    try:
        for number in range(3):
            assert insert(first.server, [{"name": f"before {number}"}]).status_code == 201
        _both(nats_url, redis_url, names, 3)
    finally:
        first.stop()
    second = StoppableServer(database_url, tmp_path, **settings)
    try:
        for number in range(2):
            assert insert(second.server, [{"name": f"after {number}"}]).status_code == 201
        events, messages = _both(nats_url, redis_url, names, 5)
        wait_for(lambda: metric(second.server, "ledgerbase_events_lag", f"redis:{names.redis_key}") == 0,
                 what="no lag")
    finally:
        second.stop()
    events = redis_events(redis_url, names.redis_key)
    assert [event["ledger_seq"] for event in events] == [0, 1, 2, 3, 4]
    assert [event["record"]["name"] for event in events] == [  # type: ignore[index]
        "before 0", "before 1", "before 2", "after 0", "after 1"]
    assert len(nats_messages(nats_url, names.stream)) == 5


def test_docs_redis_example_reads_the_stream(database_url: str, tmp_path: Path, nats_url: str, redis_url: str,
                                             names: Names, capsys: pytest.CaptureFixture[str]) -> None:
    server = StoppableServer(database_url, tmp_path, **names.settings("", redis_url))
    try:
        assert insert(server.server, [{"name": "docs"}]).status_code == 201
        wait_for(lambda: redis_events(redis_url, names.redis_key), what="the event in Redis")
    finally:
        server.stop()
    guide = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    example = guide.split("```python\n", 1)[1].split("```", 1)[0]
    capsys.readouterr()
    exec(example.replace("ledgerbase:changes", names.redis_key)  # the guide's own example, run as written
         .replace("redis://127.0.0.1:6379/0", redis_url), {})
    assert capsys.readouterr().out == "0 items INSERT\n"


def test_one_server_publishes_and_another_takes_over(database_url: str, tmp_path: Path, nats_url: str,
                                                     redis_url: str, names: Names) -> None:
    settings = names.settings(nats_url, redis_url)
    first = StoppableServer(database_url, tmp_path / "first", **settings)
    second = StoppableServer(database_url, tmp_path / "second", **settings)
    try:
        for number in range(3):
            assert insert(second.server, [{"name": f"one {number}"}]).status_code == 201
        _both(nats_url, redis_url, names, 3)
        for sink in (f"nats:{names.stream}", f"redis:{names.redis_key}"):
            assert metric(first.server, "ledgerbase_events_publishing", sink) == 1
            assert metric(second.server, "ledgerbase_events_publishing", sink) == 0
        first.stop()
        for number in range(3, 5):
            assert insert(second.server, [{"name": f"one {number}"}]).status_code == 201
        _both(nats_url, redis_url, names, 5)
        assert metric(second.server, "ledgerbase_events_publishing", f"redis:{names.redis_key}") == 1
    finally:
        first.stop()
        second.stop()
    events = redis_events(redis_url, names.redis_key)
    assert [event["ledger_seq"] for event in events] == list(range(5))
    assert [event["record"]["name"] for event in events] == [f"one {n}" for n in range(5)]  # type: ignore[index]
    assert [message.event["ledger_seq"] for message in nats_messages(nats_url, names.stream)] == list(range(5))


def test_a_redis_that_lost_the_stream_is_reported(redis_url: str, names: Names) -> None:
    import redis as sync_redis
    from structlog.testing import capture_logs

    from ledgerbase.events.sinks import RedisSink
    from ledgerbase.realtime.changes import Change

    def change(seq: int) -> Change:
        return Change(seq=seq, commit_timestamp="2025-01-01T00:00:00.000Z", table="items", op="INSERT",
                      pk={"id": seq}, record={"id": seq})

    async def scenario() -> list[dict[str, object]]:
        sink = RedisSink(redis_url, key=names.redis_key)
        try:
            await sink.publish([change(0), change(1)])
            with sync_redis.from_url(redis_url) as client:  # as a Redis restarted without its data
                client.delete(names.redis_key, f"{names.redis_key}:seq")
            await sink.close()  # (the restart broke the connection)
            with capture_logs() as logs:
                await sink.publish([change(2), change(3)])  # the next batch
            return logs
        finally:
            await sink.close()

    logs = asyncio.run(scenario())
    assert [(entry["event"], entry["held"], entry["now_holds"]) for entry in logs] == [("redis_stream_lost", 1, -1)]
    assert [event["ledger_seq"] for event in redis_events(redis_url, names.redis_key)] == [2, 3]
