"""The lean WebSocket protocol (ledgerbase/realtime/transport.py): its receive queue and
write gate on their own, then through a real server: no permessage-deflate, a socket
whose client stops reading resumes in order, a socket opened and joined with one token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ledgerbase.realtime.transport import Inbox, WriteGate
from tests.conftest import RunningServer
from tests.realtime.support import user_token, write_schema


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    return server_factory(write_schema(tmp_path_factory.mktemp("transport")))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def socket_url(server: RunningServer, key: str) -> str:
    return server.url.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={key}&vsn=1.0.0"


async def send(ws: ClientConnection, topic: str, event: str, payload: object, ref: str | None = None) -> None:
    await ws.send(orjson.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref,
                                "join_ref": ref}).decode())


async def next_frame(ws: ClientConnection, timeout: float = 5) -> dict[str, object]:
    frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    assert isinstance(frame, dict)
    return frame


@pytest.mark.anyio
async def test_the_inbox_hands_messages_over_in_order() -> None:
    inbox = Inbox()
    assert inbox.empty()
    inbox.put_nowait({"n": 1})
    inbox.put_nowait({"n": 2})
    assert not inbox.empty()
    assert await inbox.get() == {"n": 1}
    assert await inbox.get() == {"n": 2}
    assert inbox.empty()
    waiting = asyncio.ensure_future(inbox.get())  # a reader waiting gets the next message
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait({"n": 3})
    inbox.put_nowait({"n": 4})
    assert await waiting == {"n": 3}
    assert await inbox.get() == {"n": 4}
    cancelled = inbox.get()  # a reader that gave up takes nothing
    cancelled.cancel()
    inbox.put_nowait({"n": 5})
    assert await inbox.get() == {"n": 5}
    assert inbox.empty()


@pytest.mark.anyio
async def test_the_write_gate_holds_sends_while_writing_is_paused() -> None:
    gate = WriteGate()
    assert gate.is_set() and await gate.wait()
    gate.clear()
    first, second = asyncio.ensure_future(gate.wait()), asyncio.ensure_future(gate.wait())
    given_up = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    given_up.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await first and await second
    assert given_up.cancelled()
    assert await asyncio.wait_for(gate.wait(), 1)


@pytest.mark.anyio
async def test_permessage_deflate_is_declined(server: RunningServer) -> None:
    # browsers offer it; each socket taking it would keep a zlib pair of about 40 KiB
    async with connect(socket_url(server, server.anon_key), compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await send(ws, "phoenix", "heartbeat", {}, "1")
        assert (await next_frame(ws))["payload"] == {"status": "ok", "response": {}}


@pytest.mark.anyio
async def test_a_client_that_stops_reading_gets_everything_in_order_afterwards(server: RunningServer) -> None:
    # the listener reads nothing while about 25 MB are broadcast to it: the kernel's buffers
    # fill, the server's transport pauses writing, and the frames wait for it to resume
    body = "x" * 65_536
    count = 400
    async with connect(socket_url(server, server.anon_key), max_queue=1, max_size=None) as listener, \
            connect(socket_url(server, server.anon_key)) as talker:
        await send(listener, "realtime:flood", "phx_join", {"config": {}}, "1")
        assert (await next_frame(listener))["event"] == "phx_reply"
        await send(talker, "realtime:flood", "phx_join", {"config": {}}, "1")
        assert (await next_frame(talker))["event"] == "phx_reply"
        for number in range(count):
            await send(talker, "realtime:flood", "broadcast",
                       {"type": "broadcast", "event": "chunk", "payload": {"n": number, "body": body}})
        await send(talker, "phoenix", "heartbeat", {}, "2")
        assert (await next_frame(talker, 30))["ref"] == "2"  # the server has handled every broadcast
        received = [await next_frame(listener, 30) for _ in range(count)]
        assert [frame["payload"]["payload"]["n"] for frame in received] == list(range(count))  # type: ignore[index]
        await send(listener, "phoenix", "heartbeat", {}, "3")
        assert (await next_frame(listener))["ref"] == "3"


@pytest.mark.anyio
async def test_a_socket_opened_and_joined_with_one_token_keeps_its_expiry(server: RunningServer) -> None:
    token = user_token(server, lifetime=2)
    async with connect(socket_url(server, token)) as ws:
        await send(ws, "realtime:mine", "phx_join", {"config": {}, "access_token": token}, "1")
        assert (await next_frame(ws))["payload"] == {"status": "ok", "response": {"postgres_changes": []}}
        await send(ws, "realtime:mine", "access_token", {"access_token": token}, "2")  # the same: nothing
        system = await next_frame(ws, 8)
        assert system["event"] == "system"
        assert system["payload"] == {"channel": "mine", "extension": "system", "status": "error",
                                     "message": "Token has expired 0 seconds ago"}
        assert (await next_frame(ws))["event"] == "phx_close"
