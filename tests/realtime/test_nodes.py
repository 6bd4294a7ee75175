"""Two servers on one database: a row written through either reaches the subscribers of both
(each server follows the shared, commit-ordered changes of the ledger), on both databases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from realtime.types import RealtimeSubscribeStates

from tests.conftest import RunningServer
from tests.realtime.support import eventually, realtime_client, rest, write_schema


@pytest.fixture(scope="module")
def nodes(server_factory: Callable[..., RunningServer],
          tmp_path_factory: pytest.TempPathFactory) -> tuple[RunningServer, RunningServer]:
    first = server_factory(write_schema(tmp_path_factory.mktemp("nodes")))
    return first, server_factory(None, database_url=first.database_url)


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
