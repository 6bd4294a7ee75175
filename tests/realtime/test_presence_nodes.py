"""Presence across two `ledgerbase serve` processes on one database, through Redis (both databases).

A server started late asks the others for their presences; a track, an update, an untrack
and a disconnect on one server reach the members of the same topic (and only of the same
topic and privacy) on the other; a server killed with SIGKILL has its members leave from
the other after ``LEDGERBASE_REALTIME_PRESENCE_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from realtime import AsyncRealtimeChannel
from supabase import AsyncClient
from websockets.asyncio.client import ClientConnection, connect

from ledgerbase.auth.keys import make_api_key
from tests.conftest import RunningServer, migrated_database
from tests.events.support import REDIS_URL, broker_url
from tests.ledger.test_crash import Server
from tests.realtime.support import eventually, realtime_client, user_token, write_schema

TIMEOUT = 3  # LEDGERBASE_REALTIME_PRESENCE_TIMEOUT_SECONDS: heartbeats every second


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    yield from migrated_database(dialect, tmp_path, write_schema(tmp_path), "lb_presence")


async def _serve(database_url: str, data_dir: Path, secret: str, settings: dict[str, str]
                 ) -> tuple[Server, RunningServer]:
    server = await asyncio.to_thread(Server, database_url, data_dir, secret, **settings)
    return server, RunningServer(
        url=server.url, anon_key=make_api_key(secret, "anon"), service_key=make_api_key(secret, "service_role"),
        dialect="", database_url=database_url, jwt_secret=secret, data_dir=data_dir)


async def _lobby(client: AsyncClient, key: str, private: bool = False) -> AsyncRealtimeChannel:
    channel = client.channel("lobby", {"config": {"presence": {"key": key, "enabled": True},
                                                  "broadcast": {"self": False, "ack": False}, "private": private}})
    channel.on_presence_sync(lambda: None)
    await channel.subscribe()
    return channel


async def _next(ws: ClientConnection, event: str) -> Any:
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["event"] == event:
            return frame


@contextlib.asynccontextmanager
async def _raw_member(server: RunningServer, key: str, track: bool = True) -> Any:
    """A raw socket joined to the public lobby under ``key`` (tracking ``{"name": key}``)."""
    url = server.url.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={server.anon_key}&vsn=1.0.0"
    async with connect(url) as ws:
        await ws.send(orjson.dumps({"topic": "realtime:lobby", "event": "phx_join", "ref": "1", "join_ref": "1",
                                    "payload": {"config": {"presence": {"key": key, "enabled": True}}}}).decode())
        state = await _next(ws, "presence_state")
        if track:
            await ws.send(orjson.dumps({"topic": "realtime:lobby", "event": "presence", "ref": "2",
                                        "join_ref": "1", "payload": {"event": "track",
                                                                     "payload": {"name": key}}}).decode())
        yield ws, state["payload"]


@pytest.mark.anyio
async def test_presence_is_shared_between_servers(database_url: str, tmp_path: Path) -> None:
    settings = {"redis_url": broker_url("LEDGERBASE_TEST_REDIS_URL", REDIS_URL),
                "realtime_relay_channel": f"lbtest:{secrets.token_hex(4)}:realtime",
                "realtime_presence_timeout_seconds": str(TIMEOUT), "events_enabled": "false"}
    secret = secrets.token_urlsafe(32)
    processes: list[Server] = []
    try:
        first, a = await _serve(database_url, tmp_path / "a", secret, settings)
        processes.append(first)
        async with contextlib.AsyncExitStack() as on_second:
            async with realtime_client(a) as alice_client:
                alice = await _lobby(alice_client, "alice")
                await alice.track({"status": "online"})
                await eventually(lambda: "alice" in alice.presence_state())

                # started after alice tracked: it asks the first server for its presences
                second, b = await _serve(database_url, tmp_path / "b", secret, settings)
                processes.append(second)
                bob = await _lobby(await on_second.enter_async_context(realtime_client(b)), "bob")
                await eventually(lambda: "alice" in bob.presence_state(), timeout=20)
                assert bob.presence_state()["alice"][0]["status"] == "online"
                async with _raw_member(b, "dave", track=False) as (_, state):  # the state on join has her
                    assert list(state) == ["alice"] and state["alice"]["metas"][0]["status"] == "online"
                    assert state["alice"]["metas"][0]["phx_ref"]

                await bob.track({"status": "busy"})
                await eventually(lambda: "bob" in alice.presence_state(), timeout=20)
                assert alice.presence_state()["bob"][0]["status"] == "busy"
                await bob.track({"status": "away"})  # an update replaces the meta, there too
                await eventually(lambda: alice.presence_state().get("bob", [{}])[0].get("status") == "away",
                                 timeout=20)
                assert len(alice.presence_state()["bob"]) == 1

                # the private lobby is another room, on every server
                async with realtime_client(a, user_token(a)) as on_a, realtime_client(b, user_token(b)) as on_b:
                    frank = await _lobby(on_a, "frank", private=True)
                    erin = await _lobby(on_b, "erin", private=True)
                    await erin.track({"status": "hidden"})
                    await eventually(lambda: "erin" in frank.presence_state(), timeout=20)
                    await bob.track({"status": "after erin"})  # reaches the first server after erin's
                    await eventually(lambda: alice.presence_state().get("bob", [{}])[0].get("status")
                                     == "after erin", timeout=20)
                    assert "erin" not in alice.presence_state() and "bob" not in frank.presence_state()

                await alice.untrack()
                await eventually(lambda: "alice" not in bob.presence_state(), timeout=20)
                await alice.track({"status": "back"})
                await eventually(lambda: "alice" in bob.presence_state(), timeout=20)
            await eventually(lambda: "alice" not in bob.presence_state(), timeout=20)  # her client has gone

            async with _raw_member(a, "carol"):
                await eventually(lambda: "carol" in bob.presence_state(), timeout=20)
            await eventually(lambda: "carol" not in bob.presence_state(), timeout=20)  # her socket closed

            async with _raw_member(a, "gina"):
                await eventually(lambda: "gina" in bob.presence_state(), timeout=20)
                first.kill()  # no goodbye: the second server stops hearing its heartbeats
                await eventually(lambda: "gina" not in bob.presence_state(), timeout=TIMEOUT + 30)
            assert list(bob.presence_state()) == ["bob"]
    finally:
        for process in processes:
            if process.process.poll() is None:
                process.kill()
