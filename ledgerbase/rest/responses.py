"""Turning results and errors into HTTP responses: JSON, CSV, Content-Range, errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson

from ledgerbase.db.schema import TypeKind
from ledgerbase.errors import LedgerbaseError
from ledgerbase.rest.plan import ColumnOut, EmbedOut, ReadNode
from ledgerbase.rest.request import MediaType

CONTENT_TYPES = {
    MediaType.JSON: "application/json; charset=utf-8",
    MediaType.OBJECT: "application/vnd.pgrst.object+json; charset=utf-8",
    MediaType.CSV: "text/csv; charset=utf-8",
}
_CSV_PLAIN = re.compile(r'^[^",\\()\s]+$')


def error_body(error: LedgerbaseError) -> bytes:
    """The PostgREST error JSON of ``error``."""
    return orjson.dumps(error.to_json())


def content_range(first: int, page_total: int, total: int | None) -> str:
    """PostgREST's Content-Range value, e.g. ``0-24/3573`` or ``*/0``."""
    last = first + page_total - 1
    total_text = "*" if total is None else str(total)
    if total != 0 and first <= last:
        return f"{first}-{last}/{total_text}"
    return f"*/{total_text}"


def range_status(first: int, page_total: int, total: int | None) -> int:
    """200, 206 for a partial page of a known total, 416 for an offset past the end."""
    if total is None:
        return 200
    if first > total or (first > 0 and first == total and page_total == 0 and total > 0):
        return 416
    if page_total < total:
        return 206
    return 200


def singular(body: str, rows: int) -> str:
    """The one object of a one-row JSON array; 406 PGRST116 unless exactly one row."""
    if rows != 1:
        raise LedgerbaseError("JSON object requested, multiple (or no) rows returned",
                              code="PGRST116", status=406,
                              details=f"The result contains {rows} rows")
    return body.strip()[1:-1]


def _csv_field(value: Any, kind: TypeKind | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(",", ":"))
    elif kind is TypeKind.TIMESTAMPTZ and isinstance(value, str):
        text = value.replace("T", " ").removesuffix("+00:00") + "+00"
    elif kind is TypeKind.TIMESTAMP and isinstance(value, str):
        text = value.replace("T", " ")
    else:
        text = str(value)
    if text and _CSV_PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def to_csv(body: str, node: ReadNode) -> str:
    """PostgREST's CSV (a header row, then PostgreSQL's text form of each value)."""
    kinds: dict[str, TypeKind] = {}
    keys: list[str] = []
    for out in node.outputs:
        if isinstance(out, EmbedOut) and out.hidden:
            continue
        keys.append(out.key)
        if isinstance(out, ColumnOut) and not out.cast and not out.path:
            kinds[out.key] = out.column.type.kind
    # the stdlib parser keeps numerics as Decimal, so 12.50 stays 12.50 as in PostgreSQL's text
    rows: Iterable[dict[str, Any]] = json.loads(body, parse_float=Decimal)
    lines = [",".join(keys)]
    for row in rows:
        lines.append(",".join(_csv_field(row.get(key), kinds.get(key)) for key in row))
    return "\n".join(lines)


def parse_csv_body(text: str) -> list[dict[str, Any]]:
    """A CSV request body (header row, then rows) as JSON-like objects; empty field = NULL."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return []
    rows = []
    for record in reader:
        if not record:
            continue
        if len(record) != len(header):
            raise LedgerbaseError("All lines must have same number of fields", code="PGRST102")
        rows.append({key: (None if value in ("", "NULL") else value)
                     for key, value in zip(header, record, strict=True)})
    return rows
