"""Other servers' presences, as this server last heard them (values only: no I/O, no clock).

Each server numbers the presence changes of its own channels (its *version*: 0 before the
first) and tells the others every change through the relay. ``Peers`` keeps one replica per
other server, applies its changes in order and turns every update into the ``presence_diff``
this server's members are shown. A change that skips a number, or a heartbeat with a
version the replica has not reached, means something was lost: the caller asks that server
for its whole state, which replaces the replica.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Metas = dict[str, list[dict[str, Any]]]  # presence key -> metas, each with its phx_ref
Room = tuple[str, bool]  # (topic, private): what channels share to see each other


@dataclass(frozen=True, slots=True)
class Presence:
    """One tracked channel: its room, its presence key and its meta (with ``phx_ref``)."""

    topic: str
    private: bool
    key: str
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RoomDiff:
    """What changed in one room: the ``joins`` and ``leaves`` of a ``presence_diff``."""

    room: Room
    joins: Metas
    leaves: Metas


@dataclass(slots=True)
class _Replica:
    version: int = -1  # changes applied; -1: the server's state has not come yet
    heard: float = 0.0
    rooms: dict[Room, dict[str, tuple[str, dict[str, Any]]]] = field(default_factory=dict)  # phx_ref -> (key, meta)


def _add(metas: Metas, key: str, meta: dict[str, Any]) -> None:
    metas.setdefault(key, []).append(meta)


class Peers:
    """One replica of presences per other server, by the server's id."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Replica] = {}

    def heard(self, node: str, now: float) -> None:
        """Note that ``node`` was heard from at ``now`` (monotonic seconds)."""
        self._nodes.setdefault(node, _Replica()).heard = now

    def in_step(self, node: str, version: int) -> bool:
        """Whether every change of ``node`` up to ``version`` (a heartbeat's) has been applied."""
        replica = self._nodes.get(node)
        return replica is not None and replica.version == version

    def change(self, node: str, version: int, room: Room, joins: Metas, leaves: Metas) -> RoomDiff | None:
        """Apply change number ``version`` of ``node``; None when one was missed (ask for its state).

        A change the replica already holds (its state came later) changes nothing.
        """
        replica = self._nodes.get(node)
        if replica is None or replica.version < 0 or version > replica.version + 1:
            return None
        if version <= replica.version:
            return RoomDiff(room, {}, {})
        replica.version = version
        members = replica.rooms.setdefault(room, {})
        left: Metas = {}
        for key, metas in leaves.items():
            for meta in metas:
                if members.pop(meta["phx_ref"], None) is not None:
                    _add(left, key, meta)
        joined: Metas = {}
        for key, metas in joins.items():
            for meta in metas:
                members[meta["phx_ref"]] = (key, meta)
                _add(joined, key, meta)
        if not members:
            del replica.rooms[room]
        return RoomDiff(room, joined, left)

    def replace(self, node: str, version: int, presences: Iterable[Presence]) -> list[RoomDiff]:
        """Take ``node``'s whole state (as of its change ``version``); returns what changed."""
        replica = self._nodes.setdefault(node, _Replica())
        rooms: dict[Room, dict[str, tuple[str, dict[str, Any]]]] = {}
        for presence in presences:
            rooms.setdefault((presence.topic, presence.private), {})[presence.meta["phx_ref"]] = (
                presence.key, presence.meta)
        diffs = []
        for room in replica.rooms.keys() | rooms.keys():
            before, after = replica.rooms.get(room, {}), rooms.get(room, {})
            joins: Metas = {}
            leaves: Metas = {}
            for ref in before.keys() - after.keys():
                _add(leaves, *before[ref])
            for ref in after.keys() - before.keys():
                _add(joins, *after[ref])
            if joins or leaves:
                diffs.append(RoomDiff(room, joins, leaves))
        replica.version, replica.rooms = version, rooms
        return diffs

    def drop(self, node: str) -> list[RoomDiff]:
        """Forget ``node`` (it stopped, or went silent): all its presences leave."""
        replica = self._nodes.pop(node, None)
        if replica is None:
            return []
        diffs = []
        for room, members in replica.rooms.items():
            leaves: Metas = {}
            for key, meta in members.values():
                _add(leaves, key, meta)
            diffs.append(RoomDiff(room, {}, leaves))
        return diffs

    def silent(self, now: float, timeout: float) -> list[str]:
        """The servers not heard from in the last ``timeout`` seconds."""
        return [node for node, replica in self._nodes.items() if now - replica.heard > timeout]

    def entries(self, room: Room) -> Metas:
        """Every other server's presences in ``room``."""
        found: Metas = {}
        for replica in self._nodes.values():
            for key, meta in replica.rooms.get(room, {}).values():
                _add(found, key, meta)
        return found

    def __len__(self) -> int:
        return len(self._nodes)
