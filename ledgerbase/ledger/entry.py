"""Ledger entries: the RFC 8785 canonical JSON of one committed change, and row digests.

An entry is ``{"actor", "digest", "op", "pk", "seq", "table", "time"}`` in RFC 8785
(JSON Canonicalization Scheme) form; its leaf hash is ``merkle.leaf_hash(entry)``.
``digest`` commits to the row version with a random salt kept off the ledger:
``base64(SHA-256(salt || canonical JSON of the row))``, so erasing the salt and
the row leaves every hash in the tree verifiable but the row unrecoverable.

Canonical JSON uses the ``rfc8785`` package (Trail of Bits) for strings, floats and
key order, with one deliberate difference: integers beyond +/-(2**53 - 1) (a
``bigint`` key, say) are written with all their digits, where RFC 8785 would refuse
them; rounding them to a double would let two rows share a digest.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

OPS = ("insert", "update", "delete")
ENTRY_FIELDS = ("actor", "digest", "op", "pk", "seq", "table", "time")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_SHORT_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z")
# the base64 of exactly 32 bytes, canonically padded (the last digit carries 4 bits and two zeros)
_DIGEST = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")

JsonValue = None | bool | int | float | str | list[Any] | tuple[Any, ...] | Mapping[str, Any]


class EntryError(ValueError):
    """A value cannot be an entry, or bytes are not a canonical entry."""


def _canonical(value: object, out: list[bytes]) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, float | str):
        out.append(rfc8785.dumps(value))
    elif isinstance(value, int):
        out.append(str(value).encode())  # exact, at any size (see the module docstring)
    elif isinstance(value, list | tuple):
        out.append(b"[")
        for position, item in enumerate(value):
            if position:
                out.append(b",")
            _canonical(item, out)
        out.append(b"]")
    elif isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise EntryError("JSON object keys must be strings")
        out.append(b"{")
        # RFC 8785 3.2.3: members sorted by the UTF-16 code units of their names
        for position, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))):
            if position:
                out.append(b",")
            out.append(rfc8785.dumps(key))
            out.append(b":")
            _canonical(value[key], out)
        out.append(b"}")
    else:
        raise EntryError(f"{type(value).__name__} is not a JSON value")


_FLAT = frozenset({str, int, bool, type(None)})


def _orjson_is_canonical(value: object) -> bool:
    """Whether orjson's sorted output of ``value`` is exactly RFC 8785's (or orjson refuses it).

    It is when there is no float (number formatting differs), no object key outside the
    Basic Multilingual Plane (RFC 8785 sorts by UTF-16 code units, orjson by code points:
    the two orders agree below U+10000), only plain dicts, lists and tuples; strings are
    escaped alike (short escapes, lower-case ``\\u00xx``). orjson refuses integers beyond
    64 bits and lone surrogates, which sends ``canonical_json`` to the slow path.
    """
    kind = type(value)
    if kind is dict:
        # C-level passes over keys and value types, not a Python loop: rows are checked once
        # per entry, so this is hot
        try:
            keys = "".join(value)  # type: ignore[arg-type]
        except TypeError:
            return False  # a key that is not a string
        if not (keys.isascii() or max(keys) <= "\uffff"):
            return False
        items = value.values()  # type: ignore[attr-defined]
        if _FLAT.issuperset(map(type, items)):
            return True
        return all(type(item) in _FLAT or _orjson_is_canonical(item) for item in items)
    if kind in _FLAT:
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _FLAT or _orjson_is_canonical(item) for item in value)  # type: ignore[attr-defined]
    return False  # floats, and subclasses (an IntEnum, say): the slow path writes them


def canonical_json(value: JsonValue) -> bytes:
    """The RFC 8785 canonical JSON of ``value`` (UTF-8 bytes, no whitespace, sorted keys).

    Raises ``EntryError`` for NaN or infinities, lone surrogates, non-string keys
    and values that are not JSON.
    """
    # orjson where its output is the canonical form (entries, and rows without floats):
    # the integrator went from 12,600 to N leaves/s, rfc8785 being pure Python per value
    if _orjson_is_canonical(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate: the slow path says what is wrong
    out: list[bytes] = []
    try:
        _canonical(value, out)
    except rfc8785.CanonicalizationError as error:
        raise EntryError(str(error)) from error
    return b"".join(out)


def row_digest(salt: bytes, row: Mapping[str, Any] | None) -> str:
    """``base64(SHA-256(salt || canonical JSON of row))``; a deleted row (``None``) is ``null``."""
    return binascii.b2a_base64(hashlib.sha256(salt + canonical_json(row)).digest(), newline=False).decode()


def entry_time(value: datetime | str) -> str:
    """An entry's time: RFC 3339 in UTC with microseconds, e.g. ``2026-01-02T03:04:05.000000Z``.

    Takes an aware datetime or an RFC 3339 string (any offset, any fraction, such as
    SQLite's ``strftime('%Y-%m-%dT%H:%M:%fZ')``). Raises ``EntryError`` for a naive
    datetime or text that is not a time.
    """
    if type(value) is datetime and value.tzinfo is UTC and value.year >= 1000:
        return value.isoformat(timespec="microseconds")[:-6] + "Z"  # what strftime below gives, 5x faster
    if isinstance(value, str):
        if (len(value) == 24 and value[19] == "." and value[23] == "Z" and value[20:23].isascii()
                and value[20:23].isdigit() and _is_entry_second(value[:19])):
            return value[:23] + "000Z"  # SQLite's strftime('%Y-%m-%dT%H:%M:%fZ'), its second checked once
        short = _SHORT_TIME.fullmatch(value)
        if short is not None and value[0] != "0":  # SQLite's strftime('%Y-%m-%dT%H:%M:%fZ')
            try:
                datetime.fromisoformat(value)
            except ValueError as error:
                raise EntryError(f"not an RFC 3339 time: {value!r}") from error
            return f"{short[1]}.{(short[2] or '').ljust(6, '0')}Z"
        try:
            value = datetime.fromisoformat(value)
        except ValueError as error:
            raise EntryError(f"not an RFC 3339 time: {value!r}") from error
    if value.tzinfo is None:
        raise EntryError("an entry time needs a time zone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@functools.lru_cache(maxsize=256)
def _is_entry_second(prefix: str) -> bool:
    """Whether ``YYYY-MM-DDTHH:MM:SS`` followed by any fraction is an entry time's date and time.

    Cached: the integrator's changes of one second share it (thousands a second under
    load), and the regular expression and ``fromisoformat`` cost a microsecond each time.
    """
    text = prefix + ".000000Z"
    if _TIME.fullmatch(text) is None or text[0] == "0":
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _is_entry_time(time: str) -> bool:
    """Whether ``time`` is an entry time (``entry_time``'s form, year 1000 or later)."""
    return (len(time) == 27 and time[19] == "." and time[26] == "Z" and time[20:26].isascii()
            and time[20:26].isdigit() and _is_entry_second(time[:19]))


def _is_digest(text: str) -> bool:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return len(raw) == 32 and base64.b64encode(raw).decode() == text


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry's fields."""

    seq: int
    time: str
    table: str
    op: str
    pk: Mapping[str, Any]
    digest: str
    actor: str

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise EntryError("seq must be a non-negative integer")
        if not isinstance(self.time, str) or not _TIME.fullmatch(self.time) or entry_time(
                self.time.replace("Z", "+00:00")) != self.time:
            raise EntryError("time must be RFC 3339 UTC with microseconds, e.g. 2026-01-02T03:04:05.000000Z")
        if not isinstance(self.table, str) or not self.table:
            raise EntryError("table must be a non-empty string")
        if self.op not in OPS:
            raise EntryError(f"op must be one of {', '.join(OPS)}")
        if not isinstance(self.pk, Mapping):
            raise EntryError("pk must be a JSON object")
        if not isinstance(self.digest, str) or not _is_digest(self.digest):
            raise EntryError("digest must be the base64 of 32 bytes")
        if not isinstance(self.actor, str):
            raise EntryError("actor must be a string")

    def to_json(self) -> bytes:
        """The entry bytes: the canonical JSON of its fields."""
        return canonical_json({name: getattr(self, name) for name in ENTRY_FIELDS})


def make_entry(seq: int, time: str, table: str, op: str, pk: Mapping[str, Any], digest: str, actor: str) -> bytes:
    """The canonical JSON bytes of an entry (what the leaf hash covers).

    ``time`` as ``entry_time`` returns it; ``pk`` maps key columns to their JSON values;
    ``digest`` as ``row_digest`` returns it. Raises ``EntryError`` for any invalid field.
    """
    # The integrator makes one entry per change: the usual case is checked here in a few
    # type tests and regular expressions and written by orjson (the same bytes Entry.to_json
    # gives); anything else goes through Entry, which says what is wrong.
    if type(time) is str and _is_entry_time(time) and type(digest) is str and _DIGEST.fullmatch(digest) is not None:
        return made_entry(seq, time, table, op, pk, digest, actor)
    return Entry(seq, time, table, op, pk, digest, actor).to_json()


def made_entry(seq: int, time: str, table: str, op: str, pk: Mapping[str, Any], digest: str, actor: str) -> bytes:
    """``make_entry`` for the integrator, whose ``time`` comes from ``entry_time`` and ``digest``
    from ``row_digest``: valid by construction, so only the other fields are checked here."""
    if type(seq) is int and seq >= 0 and type(table) is str and table and op in OPS and type(pk) is dict \
            and type(actor) is str and _orjson_is_canonical(pk):
        try:
            return orjson.dumps({"actor": actor, "digest": digest, "op": op, "pk": pk, "seq": seq,
                                 "table": table, "time": time}, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate, an integer orjson cannot write: Entry says which
    return Entry(seq, time, table, op, pk, digest, actor).to_json()


def parse_entry(data: bytes) -> Entry:
    """The entry in ``data``, checking that the bytes are exactly its canonical JSON.

    Raises ``EntryError`` otherwise (other bytes would hash to another leaf).
    """
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EntryError("entry is not JSON") from error
    if not isinstance(value, dict) or set(value) != set(ENTRY_FIELDS):
        raise EntryError(f"entry must have exactly the fields {', '.join(ENTRY_FIELDS)}")
    entry = Entry(**value)
    if entry.to_json() != data:
        raise EntryError("entry is not in canonical form")
    return entry
