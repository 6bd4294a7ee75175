"""Server-Sent Events at /realtime/v1/sse: the same changes and policies, resumable with
Last-Event-ID, through a real HTTP client against a real server, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import RunningServer
from tests.realtime.support import rest, user_token, write_schema


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    return server_factory(write_schema(tmp_path_factory.mktemp("sse")))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Events:
    """The events of one open stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        event: dict[str, Any] = {}
        while True:
            line = await asyncio.wait_for(anext(self.lines), timeout)
            if line == "":
                if "data" in event:
                    return event
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = orjson.loads(value) if name == "data" else value


@asynccontextmanager
async def stream(server: RunningServer, query: str, token: str, last_event_id: int | None = None
                 ) -> AsyncIterator[Events]:
    headers = {"apikey": server.anon_key, "Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http, \
            http.stream("GET", f"/realtime/v1/sse?{query}", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


@pytest.mark.anyio
async def test_a_user_streams_their_own_changes_and_resumes_without_loss(server: RunningServer) -> None:
    ana, bo = user_token(server), user_token(server)
    async with stream(server, "table=todos", ana) as events:
        await asyncio.sleep(0.2)
        [first] = await rest(server, "POST", "/todos", ana, json={"title": "one"})
        await rest(server, "POST", "/todos", bo, json={"title": "bo's"})  # not ana's to see
        await rest(server, "PATCH", f"/todos?id=eq.{first['id']}", ana, json={"done": True})
        inserted, updated = await events.next(), await events.next()
        assert (inserted["event"], inserted["data"]["record"]["title"]) == ("INSERT", "one")
        assert (updated["event"], updated["data"]["record"]["done"]) == ("UPDATE", True)
        assert int(updated["id"]) > int(inserted["id"]) + 1  # ids are ledger numbers: bo's row between
        last = int(updated["id"])

    # disconnected: these are missed, then replayed on reconnection before live events
    await rest(server, "POST", "/todos", ana, json=[{"title": "two"}, {"title": "three"}])
    await rest(server, "POST", "/todos", bo, json={"title": "bo again"})
    async with stream(server, "table=todos&event=INSERT", ana, last_event_id=last) as events:
        replayed = [await events.next(), await events.next()]
        assert [e["data"]["record"]["title"] for e in replayed] == ["two", "three"]
        await rest(server, "POST", "/todos", ana, json={"title": "four"})
        live = await events.next()
        assert live["data"]["record"]["title"] == "four" and int(live["id"]) > int(replayed[1]["id"])


@pytest.mark.anyio
async def test_filters_and_refusals(server: RunningServer) -> None:
    async with stream(server, "table=items&filter=qty=gte.10&select=id,name", server.anon_key) as events:
        await asyncio.sleep(0.2)
        await rest(server, "POST", "/items", json=[{"name": "few", "qty": 1}, {"name": "many", "qty": 10}])
        event = await events.next()
        assert event["data"]["record"] == {"id": event["data"]["record"]["id"], "name": "many"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        for query, token, status in (("table=nope", server.anon_key, 400), ("", server.anon_key, 400),
                                     ("table=items&filter=qty=between.1", server.anon_key, 400),
                                     ("table=items", "not-a-jwt", 401),
                                     ("table=items", user_token(server, lifetime=-5), 401)):
            response = await http.get(f"/realtime/v1/sse?{query}", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == status, (query, response.text)
            assert "message" in response.json()
