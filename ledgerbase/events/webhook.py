"""Database webhooks as values: their configuration, payload and signature (pure functions)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ledgerbase.errors import LedgerbaseError
from ledgerbase.realtime.changes import Change

OPS = ("INSERT", "UPDATE", "DELETE")


class WebhookConfigError(LedgerbaseError):
    """``LEDGERBASE_WEBHOOKS`` does not describe valid webhooks."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook: changes of ``table`` whose op is in ``events`` are POSTed to ``url``."""

    name: str
    table: str  # as changes name it: "todos" (schema public), "auth.users"
    events: frozenset[str]
    url: str
    secret: str

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"Webhook(name={self.name!r}, table={self.table!r}, url={self.url!r})"

    def matches(self, change: Change) -> bool:
        """Whether ``change`` is for this webhook."""
        return change.table == self.table and change.op in self.events


def _field(entry: Mapping[str, Any], key: str, index: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise WebhookConfigError(f"LEDGERBASE_WEBHOOKS[{index}]: {key!r} must be a non-empty string")
    return value


def parse_webhooks(entries: Sequence[Mapping[str, Any]]) -> list[Webhook]:
    """The webhooks of the ``LEDGERBASE_WEBHOOKS`` list.

    Each entry has ``name``, ``table`` (``todos``, ``public.todos``, ``auth.users``),
    ``events`` (a list of INSERT, UPDATE, DELETE or ``*``), ``url`` (http or https) and
    ``secret``. Raises WebhookConfigError naming the first bad entry (never its secret).
    """
    webhooks: list[Webhook] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise WebhookConfigError(f"LEDGERBASE_WEBHOOKS[{index}] must be an object")
        name = _field(entry, "name", index)
        table = _field(entry, "table", index).removeprefix("public.")
        url = _field(entry, "url", index)
        if not url.startswith(("http://", "https://")):
            raise WebhookConfigError(f"LEDGERBASE_WEBHOOKS[{index}]: 'url' must be http:// or https://")
        secret = _field(entry, "secret", index)
        raw_events = entry.get("events", ["*"])
        if isinstance(raw_events, str):
            raw_events = [raw_events]
        if not isinstance(raw_events, Sequence) or not raw_events:
            raise WebhookConfigError(f"LEDGERBASE_WEBHOOKS[{index}]: 'events' must be a non-empty list")
        events: set[str] = set()
        for event in raw_events:
            upper = str(event).upper()
            if upper == "*":
                events.update(OPS)
            elif upper in OPS:
                events.add(upper)
            else:
                raise WebhookConfigError(f"LEDGERBASE_WEBHOOKS[{index}]: unknown event {event!r} "
                                         f"(use INSERT, UPDATE, DELETE or *)")
        if any(webhook.name == name for webhook in webhooks):
            raise WebhookConfigError(f"LEDGERBASE_WEBHOOKS: the name {name!r} is used twice")
        webhooks.append(Webhook(name=name, table=table, events=frozenset(events), url=url, secret=secret))
    return webhooks


def webhook_body(change: Change) -> dict[str, Any]:
    """Supabase's database-webhook payload for ``change``, plus ``ledger_seq``.

    ``old_record`` is the whole old row for tables with ``REPLICA IDENTITY FULL``, else the
    primary key (``None`` for inserts), as the events do.
    """
    schema, _, table = change.table.rpartition(".")
    return {
        "type": change.op,
        "table": table,
        "schema": schema or "public",
        "record": change.record,
        "old_record": None if change.op == "INSERT" else change.old_record or dict(change.pk),
        "ledger_seq": change.seq,
    }


def webhook_json(change: Change) -> bytes:
    """The payload of ``change`` encoded as JSON (the exact bytes that are signed and sent)."""
    return orjson.dumps(webhook_body(change))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with secret>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers of one delivery made at ``timestamp`` (Unix seconds)."""
    stamp = str(timestamp)
    return {
        "Content-Type": "application/json",
        "X-Ledgerbase-Timestamp": stamp,
        "X-Ledgerbase-Signature": signature(secret, stamp, body),
    }
