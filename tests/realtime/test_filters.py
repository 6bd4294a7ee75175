"""postgres_changes filters and payloads: pure functions, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerbase.db.schema import Column, PgType
from ledgerbase.realtime.bindings import change_data, type_name
from ledgerbase.realtime.changes import Change
from ledgerbase.realtime.filters import FilterError, matches, parse_filter
from ledgerbase.realtime.protocol import Frame, decode, encode

ROW: dict[str, Any] = {"id": 5, "name": "tea, green", "price": 2.5, "done": False, "note": None,
                       "tags": ["a"], "user_id": "0b7c1a52-7f1e-4c55-9b1a-2a4d5f1c8e01"}

CASES = [
    ("id=eq.5", True), ("id=eq.6", False), ("id=neq.5", False), ("id=neq.6", True),
    ("id=lt.6", True), ("id=lt.5", False), ("id=lte.5", True), ("id=gt.4", True),
    ("id=gt.5", False), ("id=gte.5", True), ("price=gt.2.4", True), ("price=eq.2.5", True),
    ("id=in.(1,5,9)", True), ("id=in.(1,9)", False), ('name=in.("tea, green",x)', True),
    ("name=eq.tea, green", False),  # a comma joins conditions: "green" is no condition
    ("done=eq.false", True), ("done=eq.true", False), ("done=is.false", True),
    ("note=is.null", True), ("note=eq.x", False), ("note=neq.x", False),  # NULL compares unknown
    ("note=not.eq.x", False), ("id=not.eq.6", True), ("id=not.in.(5)", False),
    ("name=like.tea%", True), ("name=like.Tea%", False), ("name=ilike.TEA%", True),
    ("name=match.^tea", True), ("name=imatch.GREEN$", True),
    ("note=isdistinct.x", True), ("id=isdistinct.5", False),
    ("id=eq.abc", False), ("id=gt.abc", False),
    ("id=gt.1,done=eq.false", True), ("id=gt.1,done=eq.true", False),
    ("user_id=eq.0b7c1a52-7f1e-4c55-9b1a-2a4d5f1c8e01", True),
    ("missing=eq.1", False),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_filters_match_rows_as_sql_would(text: str, expected: bool) -> None:
    if text == "name=eq.tea, green":
        with pytest.raises(FilterError):
            parse_filter(text)
        return
    assert matches(parse_filter(text), ROW) is expected


@pytest.mark.parametrize("text", ["id", "id=eq5", "id=between.1", "=eq.1", "id=in.1,2", "x=is.maybe"])
def test_malformed_filters_are_refused(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)


def test_frames_round_trip_in_both_serializers() -> None:
    frame = Frame(topic="realtime:room", event="broadcast", payload={"a": 1}, ref="3", join_ref="1")
    assert decode(encode(frame, "1.0.0"), "1.0.0") == frame
    assert decode(encode(frame, "2.0.0"), "2.0.0") == frame
    assert encode(frame, "2.0.0") == '["1","3","realtime:room","broadcast",{"a":1}]'
    # server pushes carry "ref": null (the clients drop frames without the key)
    assert '"ref":null' in encode(Frame(topic="t", event="e", payload={}), "1.0.0")


COLUMNS = (Column(name="id", type=PgType.parse("bigint")), Column(name="title", type=PgType.parse("text")),
           Column(name="at", type=PgType.parse("timestamp with time zone")),
           Column(name="tags", type=PgType.parse("text[]")))


def test_payload_shapes_follow_supabase_realtime() -> None:
    assert [type_name(c) for c in COLUMNS] == ["int8", "text", "timestamptz", "_text"]
    insert = Change(seq=1, commit_timestamp="2025-01-01T00:00:00.000Z", table="todos", op="INSERT",
                    pk={"id": 1}, record={"id": 1, "title": "a", "at": None, "tags": []})
    data = change_data(insert, COLUMNS, "public", insert.record, None)
    assert data["type"] == "INSERT" and data["record"] == insert.record and "old_record" not in data
    assert data["errors"] is None and data["columns"][0] == {"name": "id", "type": "int8"}
    update = Change(seq=2, commit_timestamp="x", table="todos", op="UPDATE", pk={"id": 1},
                    record={"id": 1, "title": "b", "at": None, "tags": []})
    data = change_data(update, COLUMNS, "public", update.record, ("id", "title"))
    assert data["record"] == {"id": 1, "title": "b"} and data["old_record"] == {"id": 1}
    assert [c["name"] for c in data["columns"]] == ["id", "title"]
    delete = Change(seq=3, commit_timestamp="x", table="todos", op="DELETE", pk={"id": 1}, record=None)
    data = change_data(delete, COLUMNS, "public", None, None)
    assert "record" not in data and data["old_record"] == {"id": 1}
