"""Entries: RFC 8785 examples, entry fields and row digests."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbase.ledger.entry import (
    Entry,
    EntryError,
    _canonical,
    canonical_json,
    entry_time,
    made_entry,
    make_entry,
    parse_entry,
    row_digest,
)


def test_rfc8785_section_3_2_2_example() -> None:
    value = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}')
    want = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(value) == want.encode()


def test_rfc8785_section_3_2_3_sorting() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    want = ('{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
            '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')
    assert canonical_json(value) == want.encode()


# RFC 8785 Appendix B: IEEE 754 bit patterns and their serialization
APPENDIX_B = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "want"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, want: str) -> None:
    assert canonical_json(struct.unpack(">d", bytes.fromhex(bits))[0]) == want.encode()


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), "\ud800", {1: "x"}, b"bytes", {"a": {1, 2}},
])
def test_not_json(value: object) -> None:
    with pytest.raises(EntryError):
        canonical_json(value)  # type: ignore[arg-type]


def test_integers_and_escapes() -> None:
    assert canonical_json([1, -0, 2**53 - 1, 2**63, -(2**70), 1.0, -0.0, True]) == (
        b"[1,0,9007199254740991,9223372036854775808,-1180591620717411303424,1,0,true]")
    assert canonical_json("\x00\x1f\x7f\u2028</") == b'"\\u0000\\u001f\x7f\xe2\x80\xa8</"'
    assert canonical_json({"b": [], "a": {}, "": None}) == b'{"":null,"a":{},"b":[]}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_stable(value: object) -> None:
    encoded = canonical_json(value)  # type: ignore[arg-type]
    # canonical output parses back to itself, and any spelling of the same value gives it
    assert canonical_json(json.loads(encoded)) == encoded
    assert canonical_json(json.loads(json.dumps(value, indent=1))) == encoded


@given(json_values)
def test_the_orjson_path_writes_what_rfc8785_writes(value: object) -> None:
    """canonical_json takes orjson's output only where it is RFC 8785's: the reference is
    the value written piece by piece with the rfc8785 package."""
    reference: list[bytes] = []
    _canonical(value, reference)
    assert canonical_json(value) == b"".join(reference)  # type: ignore[arg-type]


# --- entries ------------------------------------------------------------------------------

DIGEST = base64.b64encode(bytes(range(32))).decode()


def test_make_entry() -> None:
    data = make_entry(7, "2026-01-02T03:04:05.123456Z", "orders", "update", {"id": 42}, DIGEST, "user-1")
    assert data == (b'{"actor":"user-1","digest":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","op":"update",'
                    b'"pk":{"id":42},"seq":7,"table":"orders","time":"2026-01-02T03:04:05.123456Z"}')
    assert parse_entry(data) == Entry(7, "2026-01-02T03:04:05.123456Z", "orders", "update", {"id": 42}, DIGEST,
                                      "user-1")


@pytest.mark.parametrize("change", [
    {"seq": -1}, {"seq": True}, {"seq": 1.5}, {"time": "2026-01-02T03:04:05Z"}, {"time": "2026-01-02T03:04:05.123Z"},
    {"time": "2026-01-02 03:04:05.000000Z"}, {"time": "2026-01-02T03:04:05.000000+00:00"},
    {"time": "2026-13-02T03:04:05.000000Z"}, {"table": ""}, {"op": "upsert"}, {"op": "INSERT"}, {"pk": [1]},
    {"digest": "abc"}, {"digest": base64.b64encode(bytes(31)).decode()}, {"actor": None},
])
def test_invalid_entries(change: dict[str, object]) -> None:
    fields: dict[str, object] = {"seq": 0, "time": "2026-01-02T03:04:05.000000Z", "table": "t", "op": "insert",
                                 "pk": {"id": 1}, "digest": DIGEST, "actor": "anon"} | change
    with pytest.raises(EntryError):
        make_entry(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [
    b"not json", b"[]", b'{"seq":0}',
    # not canonical: whitespace, key order, escapes
    b'{"actor": "a","digest":"' + DIGEST.encode() + b'","op":"insert","pk":{},"seq":0,"table":"t",'
    b'"time":"2026-01-02T03:04:05.000000Z"}',
    b'{"digest":"' + DIGEST.encode() + b'","actor":"a","op":"insert","pk":{},"seq":0,"table":"t",'
    b'"time":"2026-01-02T03:04:05.000000Z"}',
    b'{"actor":"\\u0061","digest":"' + DIGEST.encode() + b'","op":"insert","pk":{},"seq":0,"table":"t",'
    b'"time":"2026-01-02T03:04:05.000000Z"}',
    b'{"actor":"a","digest":"' + DIGEST.encode() + b'","extra":1,"op":"insert","pk":{},"seq":0,"table":"t",'
    b'"time":"2026-01-02T03:04:05.000000Z"}',
])
def test_parse_rejects(data: bytes) -> None:
    with pytest.raises(EntryError):
        parse_entry(data)


def test_entry_time() -> None:
    assert entry_time("2026-01-02T03:04:05.123Z") == "2026-01-02T03:04:05.123000Z"  # SQLite's strftime %f
    assert entry_time("2026-01-02T04:04:05+01:00") == "2026-01-02T03:04:05.000000Z"
    assert entry_time(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    assert entry_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-2)))) == (
        "2026-01-02T05:04:05.000000Z")
    for bad in ("yesterday", datetime(2026, 1, 2)):
        with pytest.raises(EntryError):
            entry_time(bad)


def test_row_digest() -> None:
    salt = bytes(16)
    row = {"id": 42, "name": "Ada", "tags": ["x"], "price": 9.5, "note": None}
    canonical = b'{"id":42,"name":"Ada","note":null,"price":9.5,"tags":["x"]}'
    assert row_digest(salt, row) == base64.b64encode(hashlib.sha256(salt + canonical).digest()).decode()
    assert row_digest(salt, None) == base64.b64encode(hashlib.sha256(salt + b"null").digest()).decode()
    assert row_digest(salt, row) == row_digest(salt, dict(reversed(row.items())))  # key order does not matter
    assert row_digest(salt, row) != row_digest(b"\x01" + salt[1:], row)
    assert row_digest(salt, {"id": 2**63}) != row_digest(salt, {"id": 2**63 + 1})  # big keys stay exact
    assert len(base64.b64decode(row_digest(salt, row))) == 32


_TEXT = st.text(st.characters(codec="utf-8"), max_size=8)
_KEYS = st.dictionaries(_TEXT, st.none() | st.booleans() | st.integers(-(2**70), 2**70) | _TEXT
                        | st.floats(allow_nan=False, allow_infinity=False), max_size=3)


@given(seq=st.integers(0, 2**64), when=st.datetimes(timezones=st.just(UTC)), table=_TEXT,
       op=st.sampled_from(["insert", "update", "delete"]), pk=_KEYS, raw=st.binary(min_size=32, max_size=32),
       actor=_TEXT)
def test_make_entry_is_entry_to_json(seq: int, when: datetime, table: str, op: str, pk: dict[str, object],
                                     raw: bytes, actor: str) -> None:
    """The fast path of make_entry writes exactly what Entry.to_json writes, and refuses the same."""
    fields = (seq, entry_time(when) if when.year >= 1000 else "0999-01-01T00:00:00.000000Z", table, op, pk,
              base64.b64encode(raw).decode(), actor)
    try:
        expected: bytes | type[EntryError] = Entry(*fields).to_json()
    except EntryError:
        expected = EntryError
    # made_entry (the integrator's, for a time and digest valid by construction) agrees too
    makers = (make_entry, made_entry) if when.year >= 1000 else (make_entry,)
    for maker in makers:
        if expected is EntryError:
            with pytest.raises(EntryError):
                maker(*fields)
        else:
            assert maker(*fields) == expected


@given(when=st.datetimes(timezones=st.just(UTC)))
def test_entry_time_fast_paths(when: datetime) -> None:
    """Aware UTC datetimes and SQLite's millisecond strings give what strftime gives."""
    expected = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if when.year >= 1000:
        assert entry_time(when) == expected
        sqlite_text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
        assert entry_time(sqlite_text) == expected[:23] + "000Z"


@pytest.mark.parametrize("text", ["2026-13-02T03:04:05.123Z", "2026-02-30T03:04:05.123Z", "0999-01-02T03:04:05.123Z",
                                  "2026-01-02T24:04:05.123Z", "2026-01-02T03:04:05.12xZ",
                                  "2026-01-02T03:04:05.\uff11\uff12\uff13Z"])
def test_sqlite_shaped_nonsense_makes_no_entry(text: str) -> None:
    """The cached check of a second is as strict as the full one, after a valid time of the same second too."""
    assert make_entry(0, entry_time("2026-01-02T03:04:05.000Z"), "t", "insert", {"id": 1}, DIGEST, "a")
    with pytest.raises(EntryError):
        make_entry(0, entry_time(text), "t", "insert", {"id": 1}, DIGEST, "a")
    with pytest.raises(EntryError):
        make_entry(0, text[:23] + "000Z", "t", "insert", {"id": 1}, DIGEST, "a")
