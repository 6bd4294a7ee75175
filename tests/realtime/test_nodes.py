"""Two servers on one database: a row written through either reaches the subscribers of both
(each server follows the shared, commit-ordered changes of the ledger), and a broadcast sent
to one reaches the clients of the other (through Redis), on both databases."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from realtime.types import RealtimeSubscribeStates

from tests.conftest import RunningServer
from tests.events.support import REDIS_URL, broker_url
from tests.realtime.support import eventually, realtime_client, rest, write_schema


@pytest.fixture(scope="module")
def nodes(server_factory: Callable[..., RunningServer],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, RunningServer]]:
    redis_url = broker_url("LEDGERBASE_TEST_REDIS_URL", REDIS_URL)
    key = f"lbtest:{secrets.token_hex(4)}:changes"  # the outbox publishes to Redis too
    relay = {"redis_url": redis_url, "realtime_relay_channel": f"lbtest:{secrets.token_hex(4)}:realtime",
             "events_redis_key": key}
    first = server_factory(write_schema(tmp_path_factory.mktemp("nodes")), **relay)
    yield first, server_factory(None, database_url=first.database_url, **relay)
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(key, f"{key}:seq")
    finally:
        client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_write_through_either_server_reaches_the_subscribers_of_both(
        nodes: tuple[RunningServer, RunningServer]) -> None:
    first, second = nodes
    async with realtime_client(first) as on_first, realtime_client(second) as on_second:
        received: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}
        for name, client in (("first", on_first), ("second", on_second)):
            states: list[Any] = []
            channel = client.channel(f"items-{name}")
            channel.on_postgres_changes("INSERT", received[name].append, table="items")
            await channel.subscribe(lambda state, error, seen=states: seen.append(state))
            await eventually(lambda seen=states: RealtimeSubscribeStates.SUBSCRIBED in seen)
        await rest(first, "POST", "/items", json={"name": "through the first"})
        await rest(second, "POST", "/items", json={"name": "through the second"})
        for name in received:
            await eventually(lambda name=name: len(received[name]) == 2)
            assert [p["data"]["record"]["name"] for p in received[name]] == ["through the first",
                                                                              "through the second"]


@pytest.mark.anyio
async def test_a_broadcast_reaches_the_clients_of_the_other_server(nodes: tuple[RunningServer, RunningServer]) -> None:
    first, second = nodes
    async with realtime_client(first) as alice, realtime_client(second) as bob:
        heard: list[dict[str, Any]] = []
        elsewhere: list[dict[str, Any]] = []
        a = alice.channel("chat")
        await a.subscribe()
        b = bob.channel("chat")
        b.on_broadcast("message", heard.append)
        await b.subscribe()
        other = bob.channel("other-room")
        other.on_broadcast("message", elsewhere.append)
        await other.subscribe()
        await a.send_broadcast("message", {"text": "across servers"})
        await eventually(lambda: len(heard) == 1)
        assert heard[0]["payload"] == {"text": "across servers"} and elsewhere == []
