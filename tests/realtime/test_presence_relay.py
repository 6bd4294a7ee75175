"""The presence replica (pure), and the relay between two hubs in one process over real Redis:
a server started later asks for the others' state, one stopping says goodbye, and presence
changes lost while Redis was away are made good when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledgerbase.auth.keys import TokenVerifier, make_api_key
from ledgerbase.realtime.channels import Channel, Hub
from ledgerbase.realtime.presence import Peers, Presence, RoomDiff
from ledgerbase.realtime.protocol import Frame
from ledgerbase.realtime.relay import RedisRelay
from tests.conftest import free_port
from tests.events.support import REDIS_URL, broker_url
from tests.events.test_broker_restart import REDIS_SERVER, PrivateBroker
from tests.realtime.support import eventually

LOBBY = ("realtime:lobby", False)
SECRET = secrets.token_urlsafe(32)
CLAIMS = TokenVerifier(SECRET).verify(make_api_key(SECRET, "anon"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _meta(ref: str, **state: Any) -> dict[str, Any]:
    return {"phx_ref": ref, **state}


def test_the_replica_applies_changes_in_order_and_asks_for_the_state_otherwise() -> None:
    peers = Peers()
    peers.heard("x", 100.0)
    assert peers.change("x", 1, LOBBY, {"alice": [_meta("a1")]}, {}) is None  # no state yet
    assert not peers.in_step("x", 1)
    assert peers.replace("x", 1, [Presence("realtime:lobby", False, "alice", _meta("a1"))]) == [
        RoomDiff(LOBBY, {"alice": [_meta("a1")]}, {})]
    assert peers.in_step("x", 1)
    assert peers.change("x", 1, LOBBY, {"alice": [_meta("a1")]}, {}) == RoomDiff(LOBBY, {}, {})  # had it
    assert peers.change("x", 2, LOBBY, {"alice": [_meta("a2", s=2)]}, {"alice": [_meta("a1")]}) == RoomDiff(
        LOBBY, {"alice": [_meta("a2", s=2)]}, {"alice": [_meta("a1")]})
    assert peers.change("x", 4, LOBBY, {"bob": [_meta("b1")]}, {}) is None  # change 3 was lost
    assert peers.entries(LOBBY) == {"alice": [_meta("a2", s=2)]} and peers.entries(("realtime:lobby", True)) == {}
    # the whole state replaces the replica: only the difference is shown
    private = Presence("realtime:lobby", True, "carol", _meta("c1"))
    assert sorted(peers.replace("x", 4, [Presence("realtime:lobby", False, "bob", _meta("b1")), private]),
                  key=lambda diff: diff.room) == [
        RoomDiff(LOBBY, {"bob": [_meta("b1")]}, {"alice": [_meta("a2", s=2)]}),
        RoomDiff(("realtime:lobby", True), {"carol": [_meta("c1")]}, {})]
    assert peers.in_step("x", 4)
    peers.heard("y", 104.0)
    assert peers.silent(105.0, 3.0) == ["x"]
    assert sorted(peers.drop("x"), key=lambda diff: diff.room) == [
        RoomDiff(LOBBY, {}, {"bob": [_meta("b1")]}), RoomDiff(("realtime:lobby", True), {}, {"carol": [_meta("c1")]})]
    assert peers.drop("x") == [] and peers.entries(LOBBY) == {}


def _member(hub: Hub, key: str) -> tuple[Channel, list[Frame]]:
    frames: list[Frame] = []
    channel = Channel(topic=LOBBY[0], join_ref="1", push=frames.append, claims=CLAIMS, token="",
                      presence_enabled=True, presence_key=key)
    hub.join(channel)
    return channel, frames


@contextlib.asynccontextmanager
async def _server(url: str, channel: str, timeout: float) -> AsyncIterator[tuple[Hub, RedisRelay]]:
    hub = Hub()
    relay = RedisRelay(url, channel, hub, timeout)
    hub.relay = relay
    relay.start()
    try:
        yield hub, relay
    finally:
        await relay.stop()


def _diffs(frames: list[Frame]) -> list[tuple[list[str], list[str]]]:
    return [(list(frame.payload["joins"]), list(frame.payload["leaves"]))
            for frame in frames if frame.event == "presence_diff"]


@pytest.mark.anyio
async def test_a_server_started_later_asks_for_the_state_and_one_stopping_says_goodbye() -> None:
    url = broker_url("LEDGERBASE_TEST_REDIS_URL", REDIS_URL)
    name = f"lbtest:{secrets.token_hex(4)}:realtime"
    # heartbeats every 20 s and no expiry within the test: only the sync and the goodbye can act
    async with _server(url, name, 60) as (first, first_relay):
        alice, _ = _member(first, "alice")
        first.track(alice, {"status": "here"})
        await eventually(lambda: first_relay.backlog == 0)  # its first heartbeat is out before the second listens
        async with _server(url, name, 60) as (second, _):
            watcher, frames = _member(second, "watcher")
            await eventually(lambda: "alice" in second.presence_state(watcher))
            assert second.presence_state(watcher)["alice"]["metas"][0]["status"] == "here"
            assert _diffs(frames) == [(["alice"], [])]
            second.track(watcher, {"status": "watching"})
            await eventually(lambda: "watcher" in first.presence_state(alice))
            await first_relay.stop()
            await eventually(lambda: "alice" not in second.presence_state(watcher))
            assert _diffs(frames)[-1] == ([], ["alice"])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateBroker]:
    port = free_port()
    redis = PrivateBroker([REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                           "--appendonly", "no"], port, tmp_path / "redis.log")
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@pytest.mark.anyio
async def test_presence_changes_lost_while_redis_was_away_are_made_good(private_redis: PrivateBroker) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0"
    async with _server(url, "ledgerbase:realtime", 15) as (first, first_relay), \
            _server(url, "ledgerbase:realtime", 15) as (second, _):
        alice, _ = _member(first, "alice")
        watcher, _ = _member(second, "watcher")
        first.track(alice, {"status": "here"})
        await eventually(lambda: "alice" in second.presence_state(watcher))
        await asyncio.to_thread(private_redis.kill)
        first.untrack(alice)  # never reaches the second server
        bob, _ = _member(first, "bob")
        first.track(bob, {"status": "new"})
        await eventually(lambda: first_relay.backlog == 0, timeout=40)  # tried, and dropped
        assert set(second.presence_state(watcher)) == {"alice"}
        await asyncio.to_thread(private_redis.start)
        await eventually(lambda: set(second.presence_state(watcher)) == {"bob"}, timeout=40)
        assert second.presence_state(watcher)["bob"]["metas"][0]["status"] == "new"
