"""Coercion of request values to column types, with PostgreSQL's errors and storage forms.

A filter value arrives as text and a body value as JSON; both are checked here
against the column's PostgreSQL type, so that a wrong value is the same 400 with
the same SQLSTATE on SQLite as on PostgreSQL. The results are Python values that
asyncpg binds directly; ``to_sqlite`` turns them into the stored forms of
``docs/sqlite-storage.md``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ledgerbase.db.schema import PgType, TypeKind
from ledgerbase.errors import DataError

_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1), "int2": (-(2**15), 2**15 - 1),
    "bigint": (-(2**63), 2**63 - 1), "int8": (-(2**63), 2**63 - 1),
    "bigserial": (-(2**63), 2**63 - 1),
}
_TRUE = ("t", "true", "y", "yes", "on", "1")
_FALSE = ("f", "false", "n", "no", "off", "0")


def _type_label(pg_type: PgType) -> str:
    """The type name PostgreSQL uses in input-syntax errors."""
    name = pg_type.name.split("(")[0].strip()
    return {
        "int": "integer", "int4": "integer", "serial": "integer", "int8": "bigint",
        "bigserial": "bigint", "int2": "smallint", "bool": "boolean", "float8": "double precision",
        "float4": "real", "timestamptz": "timestamp with time zone",
        "timestamp": "timestamp without time zone", "decimal": "numeric", "varchar": "character varying",
    }.get(name, name)


def _invalid(pg_type: PgType, text: str, code: str = "22P02") -> DataError:
    return DataError(f'invalid input syntax for type {_type_label(pg_type)}: "{text}"', code=code)


def _parse_boolean(pg_type: PgType, text: str) -> bool:
    word = text.strip().lower()
    if word and any(t.startswith(word) for t in _TRUE) and not any(f.startswith(word) for f in _FALSE):
        return True
    if word and any(f.startswith(word) for f in _FALSE) and not any(t.startswith(word) for t in _TRUE):
        return False
    if word in ("o",):  # "o" is ambiguous between on and off
        raise _invalid(pg_type, text)
    raise _invalid(pg_type, text)


def _parse_timestamp(pg_type: PgType, text: str, *, with_zone: bool) -> datetime:
    raw = text.strip()
    lowered = raw.lower()
    if lowered in ("infinity", "-infinity"):
        raise DataError(f'"{text}" is not supported by this database', code="22007")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise _invalid(pg_type, text, "22007") from None
    if with_zone:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return value.replace(tzinfo=None)


def coerce_text(pg_type: PgType, text: str) -> Any:
    """Parse ``text`` as a value of ``pg_type``, as PostgreSQL's input function would.

    Raises DataError (22P02, 22007, 22003) with PostgreSQL's message on bad input.
    """
    kind = pg_type.kind
    if kind is TypeKind.TEXT or kind is TypeKind.OTHER:
        return text
    if kind is TypeKind.INTEGER:
        try:
            value = int(text.strip())
        except ValueError:
            raise _invalid(pg_type, text) from None
        low, high = _INT_RANGES.get(pg_type.name, (-(2**31), 2**31 - 1))
        if not low <= value <= high:
            raise DataError(
                f'value "{text}" is out of range for type {_type_label(pg_type)}', code="22003"
            )
        return value
    if kind is TypeKind.NUMERIC:
        try:
            number = Decimal(text.strip())
        except InvalidOperation:
            raise _invalid(pg_type, text) from None
        if not number.is_finite() and not number.is_nan():
            raise _invalid(pg_type, text)
        return number
    if kind is TypeKind.FLOAT:
        try:
            return float(text.strip())
        except ValueError:
            raise _invalid(pg_type, text) from None
    if kind is TypeKind.BOOLEAN:
        return _parse_boolean(pg_type, text)
    if kind is TypeKind.UUID:
        try:
            return uuid.UUID(text.strip())
        except ValueError:
            raise _invalid(pg_type, text) from None
    if kind is TypeKind.DATE:
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            raise _invalid(pg_type, text, "22007") from None
    if kind is TypeKind.TIME:
        try:
            return time.fromisoformat(text.strip())
        except ValueError:
            raise _invalid(pg_type, text, "22007") from None
    if kind is TypeKind.TIMESTAMPTZ:
        return _parse_timestamp(pg_type, text, with_zone=True)
    if kind is TypeKind.TIMESTAMP:
        return _parse_timestamp(pg_type, text, with_zone=False)
    if kind in (TypeKind.JSON, TypeKind.JSONB):
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            raise DataError(
                f"invalid input syntax for type {kind.value}", code="22P02",
                details=f'Token "{text[:40]}" is invalid.',
            ) from None
        return text
    if kind is TypeKind.BYTEA:
        if text.startswith("\\x"):
            try:
                return bytes.fromhex(text[2:])
            except ValueError:
                raise _invalid(pg_type, text) from None
        return text.encode()
    return text


def coerce_json(pg_type: PgType, value: Any) -> Any:
    """Coerce a JSON body value to ``pg_type`` as ``json_populate_record`` does.

    A JSON scalar goes through the type's text input; JSON and JSONB columns take
    any JSON value. Raises DataError on a value of the wrong type.
    """
    if value is None:
        return None
    kind = pg_type.kind
    if kind in (TypeKind.JSON, TypeKind.JSONB):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        if kind is TypeKind.INTEGER and isinstance(value, float):
            if value.is_integer():
                raise _invalid(pg_type, repr(value))
            raise _invalid(pg_type, repr(value))
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        text = orjson.dumps(value).decode()
        if kind is TypeKind.ARRAY and isinstance(value, list):
            return [coerce_json(PgType(name="element", kind=pg_type.element or TypeKind.TEXT), v)
                    for v in value]
        raise _invalid(pg_type, text)
    if kind is TypeKind.ARRAY:
        return parse_array_literal(pg_type, text)
    return coerce_text(pg_type, text)


def parse_array_literal(pg_type: PgType, text: str) -> list[Any]:
    """Parse a PostgreSQL array literal like ``{1,2,"a b"}`` into coerced elements (one level)."""
    raw = text.strip()
    if not (raw.startswith("{") and raw.endswith("}")):
        raise DataError(f'malformed array literal: "{text}"', code="22P02")
    element = PgType(name=pg_type.name.removesuffix("[]"), kind=pg_type.element or TypeKind.TEXT)
    items: list[Any] = []
    body = raw[1:-1]
    if not body.strip():
        return items
    for token in split_top_level(body, ","):
        token = token.strip()
        if token.startswith('"') and token.endswith('"') and len(token) >= 2:
            items.append(coerce_text(element, token[1:-1].replace('\\"', '"').replace("\\\\", "\\")))
        elif token.upper() == "NULL":
            items.append(None)
        else:
            items.append(coerce_text(element, token))
    return items


def split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes, parentheses and braces."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    index = 0
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "({":
            depth += 1
        elif char in ")}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def format_timestamptz(value: datetime) -> str:
    """The stored (and JSON) form of a UTC instant: ``2024-01-15T10:30:00.5+00:00``."""
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text


def to_sqlite(pg_type: PgType, value: Any) -> Any:
    """Convert a coerced value to its SQLite storage form (docs/sqlite-storage.md)."""
    if value is None:
        return None
    kind = pg_type.kind
    if kind is TypeKind.BOOLEAN:
        return 1 if value else 0
    if kind is TypeKind.TIMESTAMPTZ:
        return format_timestamptz(value) + "+00:00"
    if kind is TypeKind.TIMESTAMP:
        return format_timestamptz(value)
    if kind is TypeKind.NUMERIC:
        return int(value) if value == value.to_integral_value() and abs(value) < 2**63 else float(value)
    if kind is TypeKind.UUID:
        return str(value)
    if kind in (TypeKind.DATE, TypeKind.TIME):
        return value.isoformat()
    return value
