"""Joined channels and what they share: topics, broadcast and presence.

A topic (``realtime:room1``) groups the channels joined to it over any number of sockets;
public and private channels of the same name are separate, as in Supabase Realtime.
Presence follows Phoenix.Presence: each tracked channel is one meta (with a unique
``phx_ref``) under its presence key; joiners get ``presence_state``, every change is
sent to all members as ``presence_diff``. With a relay (``ledgerbase.realtime.relay``),
broadcasts and presence changes also go to the other servers, and the presences they
track (``peers``) are part of every ``presence_state`` and shown as ``presence_diff``.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ledgerbase.auth.keys import Claims
from ledgerbase.realtime.bindings import Binding
from ledgerbase.realtime.presence import Metas, Peers, Presence, Room, RoomDiff
from ledgerbase.realtime.protocol import Frame

Push = Callable[[Frame], None]


class Relay(Protocol):
    """What the hub tells the other servers (never waits)."""

    def broadcast(self, topic: str, private: bool, payload: dict[str, Any]) -> None: ...

    def presence(self, room: Room, joins: Metas, leaves: Metas) -> None: ...


@dataclass(eq=False, slots=True)
class Channel:
    """One socket's membership of a topic."""

    topic: str
    join_ref: str | None
    push: Push  # queues a frame on the channel's socket
    claims: Claims
    token: str
    private: bool = False
    broadcast_self: bool = False
    broadcast_ack: bool = False
    presence_enabled: bool = False
    presence_key: str = ""
    bindings: tuple[Binding, ...] = ()
    since: int = -1  # changes numbered up to this one were committed before the join
    meta: dict[str, Any] | None = None  # the tracked presence meta, with its phx_ref
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def room(self) -> Room:
        """What channels must share to see each other's broadcasts and presence."""
        return (self.topic, self.private)

    def cancel_expiry(self) -> None:
        """Stop the timer that closes the channel when its token expires."""
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None


def _ref() -> str:
    return secrets.token_urlsafe(9)


def _metas(entries: Metas) -> dict[str, Any]:
    # the client pops phx_ref from the metas it gets: each member gets its own copies
    return {key: {"metas": [dict(meta) for meta in metas]} for key, metas in entries.items()}


class Hub:
    """Every joined channel of this process, by topic and by subscribed table."""

    def __init__(self) -> None:
        self._rooms: dict[Room, set[Channel]] = {}
        self._changes: set[Channel] = set()  # channels with postgres_changes bindings
        self.version = 0  # changes whenever those channels or their callers change
        self.relay: Relay | None = None  # to the other servers
        self.peers = Peers()  # the other servers' presences (kept by the relay)

    def join(self, channel: Channel) -> None:
        """Add a joined channel (its reply has been queued)."""
        if not channel.presence_key:
            channel.presence_key = str(uuid.uuid1())
        self._rooms.setdefault(channel.room, set()).add(channel)
        if channel.bindings:
            self._changes.add(channel)
            self.version += 1

    def leave(self, channel: Channel) -> None:
        """Remove a channel: its presence leaves, its subscriptions end."""
        channel.cancel_expiry()
        self.untrack(channel)
        members = self._rooms.get(channel.room)
        if members is not None:
            members.discard(channel)
            if not members:
                del self._rooms[channel.room]
        if channel in self._changes:
            self._changes.discard(channel)
            self.version += 1

    @property
    def listened(self) -> bool:
        """Whether any channel has postgres_changes bindings."""
        return bool(self._changes)

    def subscribed(self) -> Iterator[Channel]:
        """The channels that have postgres_changes bindings."""
        return iter(tuple(self._changes))

    @property
    def channel_count(self) -> int:
        """How many channels are joined."""
        return sum(len(members) for members in self._rooms.values())

    def broadcast(self, sender: Channel, payload: dict[str, Any]) -> None:
        """Send a broadcast to the topic's members (to the sender too with ``self``), and to the
        other servers' (``relay``)."""
        for member in tuple(self._rooms.get(sender.room, ())):
            if member is not sender or sender.broadcast_self:
                member.push(Frame(topic=member.topic, event="broadcast", payload=payload))
        if self.relay is not None:
            self.relay.broadcast(sender.topic, sender.private, payload)

    def deliver(self, topic: str, private: bool, payload: dict[str, Any]) -> None:
        """A broadcast another server relayed: to this server's members of the topic."""
        for member in tuple(self._rooms.get((topic, private), ())):
            member.push(Frame(topic=member.topic, event="broadcast", payload=payload))

    def presence_state(self, channel: Channel) -> dict[str, Any]:
        """The ``presence_state`` payload of the channel's topic, other servers' members included."""
        entries = self.peers.entries(channel.room)
        for member in self._rooms.get(channel.room, ()):
            if member.meta is not None:
                entries.setdefault(member.presence_key, []).append(member.meta)
        return _metas(entries)

    def presences(self) -> list[Presence]:
        """Every presence tracked on this server (what it tells a server asking for its state)."""
        return [Presence(member.topic, member.private, member.presence_key, member.meta)
                for members in self._rooms.values() for member in members if member.meta is not None]

    def track(self, channel: Channel, state: dict[str, Any]) -> None:
        """Track (or update) the channel's presence with ``state``, telling every member."""
        previous = channel.meta
        meta: dict[str, Any] = {**state, "phx_ref": _ref()}
        if previous is not None:
            meta["phx_ref_prev"] = previous["phx_ref"]
        channel.meta = meta
        leaves = {channel.presence_key: [previous]} if previous is not None else {}
        self._diff(channel, {channel.presence_key: [meta]}, leaves)

    def untrack(self, channel: Channel) -> None:
        """Stop tracking the channel's presence, telling every member."""
        if channel.meta is None:
            return
        meta, channel.meta = channel.meta, None
        self._diff(channel, {}, {channel.presence_key: [meta]})

    def show(self, diffs: list[RoomDiff]) -> None:
        """Presence changes on other servers: a ``presence_diff`` to this server's members."""
        for diff in diffs:
            if diff.joins or diff.leaves:
                for member in tuple(self._rooms.get(diff.room, ())):
                    if member.presence_enabled:
                        member.push(_diff_frame(member, diff.joins, diff.leaves))

    def _diff(self, channel: Channel, joins: Metas, leaves: Metas) -> None:
        for member in tuple(self._rooms.get(channel.room, ())):
            if member.presence_enabled or member is channel:
                member.push(_diff_frame(member, joins, leaves))
        if self.relay is not None:
            self.relay.presence(channel.room, joins, leaves)


def _diff_frame(member: Channel, joins: Metas, leaves: Metas) -> Frame:
    return Frame(topic=member.topic, event="presence_diff",
                 payload={"joins": _metas(joins), "leaves": _metas(leaves)})
