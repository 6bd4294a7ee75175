"""Phoenix channel frames as Supabase Realtime exchanges them: decoding and encoding.

Two serializers: vsn ``1.0.0`` frames are JSON objects
``{"join_ref", "ref", "topic", "event", "payload"}`` (supabase-py), vsn ``2.0.0``
text frames are JSON arrays ``[join_ref, ref, topic, event, payload]`` (supabase-js).
Every server frame carries ``ref`` (``null`` for pushes): the clients drop frames without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PHOENIX = "phoenix"
VERSIONS = frozenset({"1.0.0", "2.0.0"})


class FrameError(ValueError):
    """A client frame that is not a Phoenix message."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One Phoenix message."""

    topic: str
    event: str
    payload: dict[str, Any]
    ref: str | None = None
    join_ref: str | None = None
    seq: int | None = None  # the ledger number of a postgres_changes push (not sent; SSE ids)


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise FrameError("ref and join_ref must be strings or null")


def decode(text: str | bytes, vsn: str) -> Frame:
    """The frame in a client's text message; raises FrameError when it is not one."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameError("not JSON") from None
    if vsn == "2.0.0":
        if not isinstance(data, list) or len(data) != 5:
            raise FrameError("a 2.0.0 frame is [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = data
    else:
        if not isinstance(data, dict):
            raise FrameError("a 1.0.0 frame is a JSON object")
        join_ref, ref = data.get("join_ref"), data.get("ref")
        topic, event, payload = data.get("topic"), data.get("event"), data.get("payload", {})
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise FrameError("payload must be an object")
    return Frame(topic=topic, event=event, payload=payload, ref=_optional_text(ref),
                 join_ref=_optional_text(join_ref))


def encode(frame: Frame, vsn: str) -> str:
    """The text message carrying ``frame`` in serializer ``vsn``."""
    if vsn == "2.0.0":
        data: Any = [frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload]
    else:
        data = {"topic": frame.topic, "event": frame.event, "payload": frame.payload,
                "ref": frame.ref, "join_ref": frame.join_ref}
    return orjson.dumps(data).decode()


def reply(request: Frame, status: str = "ok", response: dict[str, Any] | None = None) -> Frame:
    """The ``phx_reply`` answering ``request`` (same topic, ref and join_ref)."""
    return Frame(topic=request.topic, event="phx_reply",
                 payload={"status": status, "response": response if response is not None else {}},
                 ref=request.ref, join_ref=request.join_ref)


def system(topic: str, extension: str, status: str, message: str) -> Frame:
    """A ``system`` push (all four payload keys are required by the clients)."""
    return Frame(topic=topic, event="system", payload={
        "channel": topic.removeprefix("realtime:"), "extension": extension,
        "message": message, "status": status})
