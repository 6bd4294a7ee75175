"""``postgres_changes`` filters: ``column=op.value`` parsed once, then evaluated on each row.

The grammar is Supabase Realtime's: ``eq``, ``neq``, ``lt``, ``lte``, ``gt``, ``gte``,
``in`` (``status=in.(open,"on hold")``), ``is`` (``null``, ``true``, ``false``),
``like``/``ilike`` (``%`` and ``_``), ``match``/``imatch`` (regular expressions),
``isdistinct``, each negatable with ``not.``; conditions joined by commas must all hold.
Rows are the JSON the data API returns; the filter's text is read as the row value's type,
and a comparison with NULL is false, as in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

OPERATORS = frozenset({"eq", "neq", "lt", "lte", "gt", "gte", "in", "is", "like", "ilike",
                       "match", "imatch", "isdistinct"})


class FilterError(ValueError):
    """A filter the grammar does not allow."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``column=[not.]op.value``."""

    column: str
    operator: str
    value: str | tuple[str, ...]
    negated: bool = False


def _split_outside_parentheses(text: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def _list(text: str) -> tuple[str, ...]:
    if not (text.startswith("(") and text.endswith(")")):
        raise FilterError(f"in expects a list in parentheses: {text!r}")
    items = []
    for item in _split_outside_parentheses(text[1:-1]):
        item = item.strip()
        if len(item) >= 2 and item.startswith('"') and item.endswith('"'):
            item = re.sub(r"\\(.)", r"\1", item[1:-1])
        items.append(item)
    return tuple(items)


def parse_filter(text: str) -> tuple[Condition, ...]:
    """The conditions of a binding's ``filter``; raises FilterError."""
    conditions = []
    for part in _split_outside_parentheses(text):
        column, equals, rest = part.partition("=")
        column = column.strip()
        if not equals or not column:
            raise FilterError(f"a filter is column=operator.value: {part!r}")
        negated = rest.startswith("not.")
        if negated:
            rest = rest[4:]
        operator, dot, value = rest.partition(".")
        if not dot or operator not in OPERATORS:
            raise FilterError(f"unknown filter operator in {part!r}")
        if operator == "is" and value.lower() not in ("null", "true", "false", "unknown"):
            raise FilterError(f"is expects null, true or false: {part!r}")
        conditions.append(Condition(column=column, operator=operator,
                                    value=_list(value) if operator == "in" else value,
                                    negated=negated))
    return tuple(conditions)


def _coerce(text: str, like: Any) -> Any:
    """``text`` read as the type of the row value ``like``; raises ValueError."""
    if isinstance(like, bool):
        lowered = text.lower()
        if lowered in ("true", "t", "1"):
            return True
        if lowered in ("false", "f", "0"):
            return False
        raise ValueError(text)
    if isinstance(like, int):
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, (dict, list)):
        return orjson.loads(text)
    return text


def _compare(operator: str, value: Any, text: str) -> bool | None:
    if value is None:
        return None
    try:
        wanted = _coerce(text, value)
    except ValueError:
        return False if operator in ("eq", "in") else None
    if operator == "eq":
        return bool(value == wanted)
    if operator == "neq":
        return bool(value != wanted)
    if isinstance(value, (dict, list)):
        return None
    if operator == "lt":
        return bool(value < wanted)
    if operator == "lte":
        return bool(value <= wanted)
    if operator == "gt":
        return bool(value > wanted)
    return bool(value >= wanted)


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(regex, flags | re.DOTALL)


def _holds(condition: Condition, row: Mapping[str, Any]) -> bool | None:
    """True, False or None (unknown, as SQL's NULL) for one condition."""
    if condition.column not in row:
        return None
    value = row[condition.column]
    operator = condition.operator
    if operator == "is":
        wanted = str(condition.value).lower()
        if wanted in ("null", "unknown"):
            return value is None
        return value is (wanted == "true")
    if operator == "isdistinct":
        if value is None:
            return str(condition.value).lower() != "null"
        return _compare("neq", value, str(condition.value))
    if operator == "in":
        if value is None:
            return None
        return any(_compare("eq", value, item) for item in condition.value)
    if operator in ("like", "ilike", "match", "imatch"):
        if value is None:
            return None
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        flags = re.IGNORECASE if operator in ("ilike", "imatch") else 0
        if operator in ("like", "ilike"):
            return _like(str(condition.value), flags).fullmatch(text) is not None
        try:
            return re.search(str(condition.value), text, flags) is not None
        except re.error:
            return False
    return _compare(operator, value, str(condition.value))


def matches(conditions: Sequence[Condition], row: Mapping[str, Any]) -> bool:
    """Whether ``row`` passes every condition (unknown counts as not passing)."""
    for condition in conditions:
        result = _holds(condition, row)
        if result is None:
            return False
        if result == condition.negated:
            return False
    return True
