"""The event message of one committed change: its JSON body and its NATS subject (pure functions)."""

from __future__ import annotations

from typing import Any

import orjson

from ledgerbase.realtime.changes import Change


def event_body(change: Change) -> dict[str, Any]:
    """The event of ``change`` as a JSON-ready dict.

    ``old_record`` (updates and deletes; ``None`` for inserts) is the whole old row for tables
    with ``REPLICA IDENTITY FULL``, else the primary key.
    """
    return {
        "table": change.table,
        "op": change.op,
        "pk": change.pk,
        "record": change.record,
        "old_record": None if change.op == "INSERT" else change.old_record or dict(change.pk),
        "commit_timestamp": change.commit_timestamp,
        "ledger_seq": change.seq,
    }


def event_json(change: Change) -> bytes:
    """The event of ``change`` encoded as JSON."""
    return orjson.dumps(event_body(change))


def event_subject(prefix: str, change: Change) -> str:
    """``<prefix>.<table>.<op>``, e.g. ``ledgerbase.todos.insert`` or ``ledgerbase.auth.users.update``."""
    return f"{prefix}.{change.table}.{change.op.lower()}"
