"""/realtime/v1/websocket with supabase-py's realtime client and raw Phoenix frames:
connecting, heartbeats, joins, broadcast, presence and tokens, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from realtime.types import RealtimeSubscribeStates
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RunningServer
from tests.realtime.support import eventually, realtime_client, user_token, write_schema


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    return server_factory(write_schema(tmp_path_factory.mktemp("realtime")))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def socket_url(server: RunningServer, key: str, vsn: str = "1.0.0") -> str:
    return server.url.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={key}&vsn={vsn}"


async def next_frame(ws: ClientConnection, event: str | None = None) -> Any:
    """The next frame (as sent: object or array), skipping others than ``event``."""
    while True:
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        name = frame[3] if isinstance(frame, list) else frame["event"]
        if event is None or name == event:
            return frame


@pytest.mark.anyio
async def test_a_bad_api_key_is_refused_at_the_handshake(server: RunningServer) -> None:
    for key in ("", "not-a-jwt", user_token(server, lifetime=-10)):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(socket_url(server, key)):
                pass
        assert refused.value.response.status_code == 403


@pytest.mark.anyio
async def test_heartbeat_join_and_leave_in_raw_frames(server: RunningServer) -> None:
    async with connect(socket_url(server, server.anon_key)) as ws:
        await ws.send(orjson.dumps({"topic": "phoenix", "event": "heartbeat", "payload": {},
                                    "ref": None, "join_ref": None}).decode())
        assert await next_frame(ws) == {"topic": "phoenix", "event": "phx_reply", "ref": None,
                                        "join_ref": None, "payload": {"status": "ok", "response": {}}}
        bindings = [{"event": "INSERT", "schema": "public", "table": "items"},
                    {"event": "*", "schema": "public", "table": "items", "filter": "id=eq.5"}]
        await ws.send(orjson.dumps({"topic": "realtime:r", "event": "phx_join", "ref": "1", "join_ref": "1",
                                    "payload": {"config": {"postgres_changes": bindings}}}).decode())
        joined = await next_frame(ws)
        assert joined["event"] == "phx_reply" and joined["ref"] == "1"
        answered = joined["payload"]["response"]["postgres_changes"]
        assert [{k: v for k, v in b.items() if k != "id"} for b in answered] == bindings
        assert all(isinstance(b["id"], int) and b["id"] for b in answered)
        assert (await next_frame(ws))["payload"] == {
            "channel": "r", "extension": "postgres_changes", "message": "Subscribed to PostgreSQL",
            "status": "ok"}
        # pushes to a topic not joined are answered with an error
        await ws.send(orjson.dumps({"topic": "realtime:other", "event": "broadcast", "ref": "2",
                                    "payload": {"type": "broadcast", "event": "x", "payload": {}}}).decode())
        assert (await next_frame(ws))["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}
        await ws.send(orjson.dumps({"topic": "realtime:r", "event": "phx_leave", "ref": "3", "join_ref": "1",
                                    "payload": {}}).decode())
        left = await next_frame(ws)
        assert (left["event"], left["ref"], left["payload"]["status"]) == ("phx_reply", "3", "ok")


@pytest.mark.anyio
async def test_the_array_serializer_of_vsn_2(server: RunningServer) -> None:
    async with connect(socket_url(server, server.anon_key, "2.0.0")) as ws:
        await ws.send(orjson.dumps(["1", "1", "realtime:v2", "phx_join",
                                    {"config": {"broadcast": {"self": True, "ack": True}}}]).decode())
        assert await next_frame(ws) == ["1", "1", "realtime:v2", "phx_reply",
                                        {"status": "ok", "response": {"postgres_changes": []}}]
        await ws.send(orjson.dumps(["1", "2", "realtime:v2", "broadcast",
                                    {"type": "broadcast", "event": "hi", "payload": {"n": 1}}]).decode())
        frames = [await next_frame(ws), await next_frame(ws)]
        assert [None, None, "realtime:v2", "broadcast",
                {"type": "broadcast", "event": "hi", "payload": {"n": 1}}] in frames
        assert ["1", "2", "realtime:v2", "phx_reply", {"status": "ok", "response": {}}] in frames


@pytest.mark.anyio
async def test_bad_bindings_and_tokens_put_the_channel_in_error(server: RunningServer) -> None:
    async with realtime_client(server) as client:
        errors: list[Any] = []
        channel = client.channel("bad")
        channel.on_postgres_changes("*", lambda payload: None, table="no_such_table")
        await channel.subscribe(lambda state, error: errors.append((state, error)))
        await eventually(lambda: any(s == RealtimeSubscribeStates.CHANNEL_ERROR for s, _ in errors))
        assert "no_such_table" in str(errors[-1][1])
    async with realtime_client(server, user_token(server, lifetime=-5)) as client:
        states: list[Any] = []
        await client.channel("expired").subscribe(lambda state, error: states.append((state, error)))
        assert states[0][0] == RealtimeSubscribeStates.CHANNEL_ERROR
        assert "InvalidJWTToken: Token has expired" in str(states[0][1])


@pytest.mark.anyio
async def test_broadcast_between_two_clients_with_self_and_ack(server: RunningServer) -> None:
    async with realtime_client(server) as alice, realtime_client(server) as bob:
        heard_by_alice: list[dict[str, Any]] = []
        heard_by_bob: list[dict[str, Any]] = []
        a = alice.channel("chat", {"config": {"broadcast": {"self": True, "ack": True},
                                              "presence": {"key": "", "enabled": False}, "private": False}})
        a.on_broadcast("message", heard_by_alice.append)
        await a.subscribe()
        b = bob.channel("chat")
        b.on_broadcast("*", heard_by_bob.append)
        await b.subscribe()
        other = bob.channel("elsewhere")
        await other.subscribe()
        await a.send_broadcast("message", {"text": "hello"})
        await eventually(lambda: len(heard_by_bob) == 1 and len(heard_by_alice) == 1)
        assert heard_by_bob[0]["event"] == "message" and heard_by_bob[0]["payload"] == {"text": "hello"}
        assert heard_by_alice[0]["payload"] == {"text": "hello"}  # self: true
        # ack: true: the push is acknowledged
        await eventually(lambda: not a.messages_waiting_for_ack)
        # bob's channel does not hear itself (self: false), and without ack nothing is acknowledged
        await b.send_broadcast("other", {"n": 2})
        await asyncio.sleep(0.3)
        assert len(heard_by_bob) == 1 and len(heard_by_alice) == 1  # alice listens to "message" only
        assert len(b.messages_waiting_for_ack) == 1


@pytest.mark.anyio
async def test_presence_sync_join_and_leave_between_two_clients(server: RunningServer) -> None:
    async with realtime_client(server) as alice, realtime_client(server) as bob:
        joins: list[tuple[str, Any]] = []
        leaves: list[tuple[str, Any]] = []
        syncs: list[int] = []
        a = alice.channel("lobby", {"config": {"presence": {"key": "alice", "enabled": True},
                                               "broadcast": {"self": False, "ack": False}, "private": False}})
        a.on_presence_sync(lambda: syncs.append(1))
        a.on_presence_join(lambda key, current, new: joins.append((key, new)))
        a.on_presence_leave(lambda key, current, left: leaves.append((key, left)))
        await a.subscribe()
        await a.track({"status": "online"})
        await eventually(lambda: "alice" in a.presence_state())

        b = bob.channel("lobby", {"config": {"presence": {"key": "bob", "enabled": True},
                                             "broadcast": {"self": False, "ack": False}, "private": False}})
        b.on_presence_sync(lambda: None)
        await b.subscribe()
        await eventually(lambda: "alice" in b.presence_state())  # presence_state on join
        assert b.presence_state()["alice"][0]["status"] == "online"
        await b.track({"status": "busy"})
        await eventually(lambda: "bob" in a.presence_state())
        assert a.presence_state()["bob"][0]["status"] == "busy"
        assert a.presence_state()["bob"][0]["presence_ref"]
        assert [key for key, _ in joins] == ["alice", "bob"] and syncs

        await b.track({"status": "away"})  # an update replaces the meta
        await eventually(lambda: a.presence_state().get("bob", [{}])[0].get("status") == "away")
        assert len(a.presence_state()["bob"]) == 1

        await b.untrack()
        await eventually(lambda: "bob" not in a.presence_state())
        assert [key for key, _ in leaves][-1] == "bob"

        await b.track({"status": "back"})
        await eventually(lambda: "bob" in a.presence_state())
        await bob.remove_all_channels()  # leaving the channel leaves presence
        await eventually(lambda: "bob" not in a.presence_state())


@pytest.mark.anyio
async def test_an_expired_token_closes_the_channel(server: RunningServer) -> None:
    async with realtime_client(server, user_token(server, lifetime=2)) as client:
        states: list[Any] = []
        channel = client.channel("short")
        await channel.subscribe(lambda state, error: states.append((state, error)))
        assert states[0][0] == RealtimeSubscribeStates.SUBSCRIBED
        # the token's exp passes: the server sends a system error, then phx_close
        await eventually(lambda: states[-1][0] == RealtimeSubscribeStates.CLOSED, timeout=8)
        assert any(s == RealtimeSubscribeStates.CHANNEL_ERROR and "Token has expired" in str(e)
                   for s, e in states)
        assert "realtime:short" not in client.realtime.channels

    async with realtime_client(server, user_token(server)) as client:
        states = []
        channel = client.channel("refreshed")
        await channel.subscribe(lambda state, error: states.append((state, error)))
        await client.realtime.set_auth(user_token(server))  # a fresh valid token: still joined
        await asyncio.sleep(0.3)
        assert states[-1][0] == RealtimeSubscribeStates.SUBSCRIBED
        await client.realtime.set_auth(user_token(server, lifetime=-60))  # an expired one: closed
        await eventually(lambda: states[-1][0] == RealtimeSubscribeStates.CLOSED)
        assert "Token has expired" in str([e for s, e in states if s == RealtimeSubscribeStates.CHANNEL_ERROR])


@pytest.mark.anyio
async def test_private_channels_need_a_signed_in_user(server: RunningServer) -> None:
    private = {"config": {"private": True, "broadcast": {"self": True, "ack": False},
                          "presence": {"key": "", "enabled": False}}}
    async with realtime_client(server) as anon:
        states: list[Any] = []
        await anon.channel("vault", private).subscribe(lambda state, error: states.append((state, error)))
        assert states[0][0] == RealtimeSubscribeStates.CHANNEL_ERROR and "Unauthorized" in str(states[0][1])
    async with realtime_client(server, user_token(server)) as user:
        states = []
        await user.channel("vault", private).subscribe(lambda state, error: states.append((state, error)))
        assert states[0][0] == RealtimeSubscribeStates.SUBSCRIBED
