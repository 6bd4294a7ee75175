"""Which changed rows a subscriber may see: the data API's own read, under its token.

For a batch of changes to one table, each distinct set of claims among the subscribers
costs one read (``GET /<table>?<keys in the batch>``) through the data API, so the table's
grants and row-level policies decide exactly as they do for that caller's REST reads, on
both databases. ``service_role`` bypasses row-level security and is not asked.
Deletes are not checked (the row is gone): as in Supabase Realtime, every subscriber of
the table gets the deleted row's primary key and nothing else.

The read sees rows as they are when the batch is delivered (normally within the poll
interval of the commit). On a table without row-level security a caller who may read
the table sees every row; on a table with it, a row deleted (or moved out of the
caller's sight) before its earlier changes were delivered is not sent to that caller:
when in doubt, nothing is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import structlog

from ledgerbase.auth.keys import Claims
from ledgerbase.db.schema import Table
from ledgerbase.errors import LedgerbaseError
from ledgerbase.realtime.changes import Change
from ledgerbase.rest.exchange import Incoming
from ledgerbase.rest.handlers import DataApi

log = structlog.get_logger("ledgerbase.realtime")
CHUNK = 200  # keys per read


def key_of(values: dict[str, Any]) -> bytes:
    """A hashable form of a primary key's values."""
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def _literal(value: Any) -> str:
    """A value quoted for a PostgREST filter list (double quotes, backslash escapes)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    else:
        text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _condition(column: str, value: Any) -> str:
    return f"{column}.is.null" if value is None else f"{column}.eq.{_literal(value)}"


def keys_query(table: Table, keys: Sequence[dict[str, Any]]) -> str:
    """The query string reading the rows with these primary keys (values bound by the API)."""
    columns = table.primary_key
    if len(columns) == 1:
        items = ",".join(_literal(key.get(columns[0])) for key in keys)
        return f"{quote(columns[0])}=in.{quote('(' + items + ')')}"
    alternatives = ",".join(
        "and(" + ",".join(_condition(column, value) for column, value in key.items()) + ")"
        for key in keys)
    return "or=" + quote(f"({alternatives})")


@dataclass(slots=True)
class Seen:
    """What one caller may see of a batch: every row, the rows read (by key), or the keys
    a policy check allowed (``ledgerbase.realtime.audience``)."""

    everything: bool = False
    rows: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    keys: set[bytes] = field(default_factory=set)

    def allows(self, pk: dict[str, Any]) -> bool:
        """Whether the change of the row with this key may be sent."""
        key = key_of(pk)
        return self.everything or key in self.keys or key in self.rows


class Visibility:
    """Asks the data API which changed rows a caller may select."""

    def __init__(self, api: DataApi) -> None:
        self.api = api

    async def visible(self, table: Table, changes: Sequence[Change], claims: Claims) -> Seen:
        """What ``claims`` may read of the rows of ``changes`` (inserts and updates), now."""
        wanted = [change.pk for change in changes if change.op != "DELETE"]
        seen = Seen()
        found = seen.rows
        if not wanted:
            return seen
        names = table.primary_key or tuple(wanted[0])
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start:start + CHUNK]
            incoming = Incoming(method="GET", path="/" + table.name,
                                query_string=keys_query(table, chunk), headers={}, body=b"",
                                claims=claims)
            try:
                reply = await self.api.handle(incoming)
            except LedgerbaseError as error:  # no grant, no policy: nothing is visible
                log.debug("realtime_visibility_refused", table=table.name, code=error.code)
                continue
            if reply.status != 200:
                continue
            seen.everything = not table.rls  # allowed to read the table, and no policy filters rows
            for row in orjson.loads(reply.body):
                found[key_of({name: row.get(name) for name in names})] = row
        return seen
