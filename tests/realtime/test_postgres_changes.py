"""postgres_changes: rows written through the data API reach supabase-py's realtime client,
filtered by the bindings and by the subscriber's row-level policies, on both databases."""

from __future__ import annotations

import asyncio
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from realtime.types import RealtimeSubscribeStates

from tests.conftest import RunningServer
from tests.realtime.support import eventually, realtime_client, rest, subject_of, user_token, write_schema


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    return server_factory(write_schema(tmp_path_factory.mktemp("changes")))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def summary(payloads: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    """(type, record, old_record) of each payload a callback got."""
    return [(p["data"]["type"], p["data"].get("record"), p["data"].get("old_record")) for p in payloads]


@pytest.mark.anyio
async def test_insert_update_and_delete_reach_the_subscriber(server: RunningServer) -> None:
    async with realtime_client(server) as client:
        every: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        states: list[Any] = []
        channel = client.channel("items-feed")
        channel.on_postgres_changes("*", every.append, table="items")
        channel.on_postgres_changes("INSERT", inserts.append, table="items", schema="public")
        channel.on_postgres_changes("DELETE", deletes.append, table="items")
        await channel.subscribe(lambda state, error: states.append(state))
        assert states == [RealtimeSubscribeStates.SUBSCRIBED]

        [row] = await rest(server, "POST", "/items", json={"name": "pen", "qty": 1})
        await rest(server, "PATCH", f"/items?id=eq.{row['id']}", json={"qty": 2})
        await rest(server, "DELETE", f"/items?id=eq.{row['id']}")
        await eventually(lambda: len(every) == 3)
        assert summary(every) == [
            ("INSERT", {"id": row["id"], "name": "pen", "qty": 1}, None),
            ("UPDATE", {"id": row["id"], "name": "pen", "qty": 2}, {"id": row["id"]}),
            ("DELETE", None, {"id": row["id"]}),
        ]
        assert summary(inserts) == summary(every)[:1] and summary(deletes) == summary(every)[2:]
        data = every[0]["data"]
        assert (data["schema"], data["table"], data["errors"]) == ("public", "items", None)
        assert data["commit_timestamp"].endswith("Z") and len(data["commit_timestamp"]) == 24
        assert [c["name"] for c in data["columns"]] == ["id", "name", "qty"]
        assert data["columns"][0]["type"] == "int8"

        # a transaction's rows arrive in commit order, nothing rolled back arrives
        await rest(server, "POST", "/items", json=[{"name": f"n{i}"} for i in range(5)])
        await eventually(lambda: len(inserts) == 6)
        assert [p["data"]["record"]["name"] for p in inserts[1:]] == [f"n{i}" for i in range(5)]


@pytest.mark.anyio
async def test_filters_choose_the_rows(server: RunningServer) -> None:
    [first, second, third] = await rest(server, "POST", "/items",
                                        json=[{"name": "a", "qty": 1}, {"name": "b", "qty": 7},
                                              {"name": "c", "qty": 9}])
    async with realtime_client(server) as client:
        by_id: list[dict[str, Any]] = []
        many: list[dict[str, Any]] = []
        listed: list[dict[str, Any]] = []
        channel = client.channel("filtered")
        channel.on_postgres_changes("*", by_id.append, table="items", filter=f"id=eq.{second['id']}")
        channel.on_postgres_changes("UPDATE", many.append, table="items", filter="qty=gt.5")
        channel.on_postgres_changes("UPDATE", listed.append, table="items",
                                    filter=f"id=in.({first['id']},{third['id']})")
        await channel.subscribe()
        for row in (first, second, third):
            await rest(server, "PATCH", f"/items?id=eq.{row['id']}", json={"qty": row["qty"] + 1})
        await rest(server, "DELETE", f"/items?id=eq.{second['id']}")
        await eventually(lambda: len(by_id) == 2 and len(many) == 2 and len(listed) == 2)
        await asyncio.sleep(0.3)  # nothing else arrives
        assert summary(by_id) == [("UPDATE", {"id": second["id"], "name": "b", "qty": 8}, {"id": second["id"]}),
                                  ("DELETE", None, {"id": second["id"]})]
        assert [p["data"]["record"]["name"] for p in many] == ["b", "c"]
        assert [p["data"]["record"]["name"] for p in listed] == ["a", "c"]


@pytest.mark.anyio
async def test_each_user_receives_only_the_rows_its_policies_let_it_read(server: RunningServer) -> None:
    ana, bo = user_token(server), user_token(server)
    async with realtime_client(server, ana) as ana_client, realtime_client(server, bo) as bo_client, \
            realtime_client(server) as anon_client, realtime_client(server, server.service_key) as admin_client:
        got: dict[str, list[dict[str, Any]]] = {"ana": [], "bo": [], "anon": [], "admin": []}
        for name, client in (("ana", ana_client), ("bo", bo_client), ("anon", anon_client),
                             ("admin", admin_client)):
            channel = client.channel("todos")
            channel.on_postgres_changes("*", got[name].append, table="todos")
            await channel.subscribe()

        [ana_row] = await rest(server, "POST", "/todos", ana, json={"title": "ana's"})
        [bo_row] = await rest(server, "POST", "/todos", bo, json={"title": "bo's"})
        await rest(server, "PATCH", f"/todos?id=eq.{ana_row['id']}", ana, json={"done": True})
        await eventually(lambda: len(got["admin"]) == 3 and len(got["ana"]) == 2 and len(got["bo"]) == 1)
        await asyncio.sleep(0.3)
        assert [(p["data"]["type"], p["data"]["record"]["title"]) for p in got["ana"]] == [
            ("INSERT", "ana's"), ("UPDATE", "ana's")]
        assert got["ana"][0]["data"]["record"]["user_id"] == subject_of(ana)
        assert [(p["data"]["type"], p["data"]["record"]["title"]) for p in got["bo"]] == [("INSERT", "bo's")]
        assert got["anon"] == []
        assert [p["data"]["record"]["title"] for p in got["admin"]] == ["ana's", "bo's", "ana's"]

        # a row moved out of a user's sight (by the service) stops reaching them
        await rest(server, "PATCH", f"/todos?id=eq.{bo_row['id']}", json={"user_id": subject_of(ana)})
        await eventually(lambda: len(got["ana"]) == 3 and len(got["admin"]) == 4)
        await asyncio.sleep(0.3)
        assert len(got["bo"]) == 1

        # deletes carry only the primary key and go to every subscriber of the table, as in
        # Supabase Realtime (the row is gone: no policy can be checked against it)
        await rest(server, "DELETE", f"/todos?id=eq.{ana_row['id']}", ana)
        await eventually(lambda: all(got[name] and got[name][-1]["data"]["type"] == "DELETE"
                                     for name in ("ana", "bo", "anon", "admin")))
        assert got["bo"][-1]["data"]["old_record"] == {"id": ana_row["id"]}
        assert "record" not in got["bo"][-1]["data"]


@pytest.mark.anyio
async def test_signing_in_on_a_joined_channel_changes_what_it_receives(server: RunningServer) -> None:
    cy = user_token(server)
    async with realtime_client(server) as client:
        got: list[dict[str, Any]] = []
        channel = client.channel("todos-cy")
        channel.on_postgres_changes("INSERT", got.append, table="todos")
        await channel.subscribe()
        await rest(server, "POST", "/todos", cy, json={"title": "unseen"})
        await asyncio.sleep(0.4)
        assert got == []  # anon reads no todos
        await client.realtime.set_auth(cy)  # the access_token push re-checks the channel
        await asyncio.sleep(0.2)
        await rest(server, "POST", "/todos", cy, json={"title": "seen"})
        await eventually(lambda: len(got) == 1)
        assert got[0]["data"]["record"]["title"] == "seen"


DOCS = Path(__file__).resolve().parents[2] / "docs" / "realtime.md"


@pytest.mark.anyio
async def test_the_example_of_the_docs_runs(server: RunningServer) -> None:
    code = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)[0]
    setup, _, teardown = code.partition("# ... later\n")
    token = user_token(server)
    namespace: dict[str, Any] = {"URL": server.url, "ANON_KEY": server.anon_key, "access_token": token}
    exec("async def _setup():\n" + textwrap.indent(setup, "    ")
         + "\n    return client, received\n", namespace)
    client, received = await namespace["_setup"]()
    try:
        [row] = await rest(server, "POST", "/todos", token, json={"title": "milk"})
        await rest(server, "PATCH", f"/todos?id=eq.{row['id']}", token, json={"title": "oat milk"})
        await rest(server, "PATCH", f"/todos?id=eq.{row['id']}", token, json={"done": True})
        await eventually(lambda: len(received) == 2)
        assert [(p["data"]["type"], p["data"]["record"]["title"]) for p in received] == [
            ("INSERT", "milk"), ("UPDATE", "oat milk")]
        assert received[1]["data"]["record"]["done"] is True  # the filter let the first update pass by
    finally:
        namespace["client"] = client
        exec("async def _teardown():\n" + textwrap.indent(teardown, "    "), namespace)
        await namespace["_teardown"]()
        await client.auth.close()
