"""Webhook delivery: a sink that POSTs each matching change, signed, and gives up after N attempts.

The outbox publisher drives it like a broker: its cursor, lease and backoff apply. A failed
POST raises, so the publisher waits (exponential backoff) and calls again with the same
changes; the sink skips what it already delivered and counts attempts for the change at the
head of the line. After ``max_attempts`` failures of one change it records a dead letter and
moves on, so one bad change does not stop the webhook for good.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import structlog

from ledgerbase.events.deadletters import DeadLetter, DeadLetterStore
from ledgerbase.events.sinks import Backoff, Sink
from ledgerbase.events.webhook import Webhook, signed_headers, webhook_json
from ledgerbase.realtime.changes import Change

log = structlog.get_logger("ledgerbase.events")


class WebhookDeliveryError(Exception):
    """A receiver did not answer 2xx (or could not be reached); the publisher retries."""


class WebhookSink(Sink):
    """Delivers the changes ``webhook`` matches to its URL, in order."""

    starts_at_head = True  # as Supabase's: a new webhook fires for changes from then on

    def __init__(self, webhook: Webhook, dead_letters: DeadLetterStore, *, backoff: Backoff | None = None,
                 max_attempts: int = 5, timeout: float = 5.0) -> None:
        self.webhook = webhook
        self.name = f"webhook:{webhook.name}"
        self.backoff = backoff
        self.dead_letters = dead_letters
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._delivered = -1  # the last sequence number delivered (or given up) by this server
        self._failing = -1  # the change whose attempts are counted
        self._attempts = 0

    async def publish(self, changes: Sequence[Change]) -> None:
        """POST each matching change not delivered yet; raises WebhookDeliveryError on a failure to retry.

        Raises LedgerbaseError when a dead letter cannot be stored (retried the same way).
        """
        for change in changes:
            if change.seq <= self._delivered or not self.webhook.matches(change):
                continue
            status, error = await self._post(change)
            if error is None:
                self._delivered = change.seq
                continue
            if self._failing != change.seq:
                self._failing, self._attempts = change.seq, 0
            self._attempts += 1
            if self._attempts < self.max_attempts:
                raise WebhookDeliveryError(f"{self.webhook.name}: {error} (attempt {self._attempts})")
            await self.dead_letters.record(DeadLetter(
                webhook=self.webhook.name, seq=change.seq, status=status, error=error,
                attempts=self._attempts, payload=webhook_json(change).decode()))
            log.warning("webhook_dead_letter", webhook=self.webhook.name, seq=change.seq, error=error,
                        attempts=self._attempts)
            self._delivered = change.seq
            self._failing, self._attempts = -1, 0

    async def _post(self, change: Change) -> tuple[int | None, str | None]:
        """(status, error): error is None when the receiver answered 2xx."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        body = webhook_json(change)
        try:
            response = await self._client.post(self.webhook.url, content=body,
                                               headers=signed_headers(self.webhook.secret, int(time.time()), body))
        except httpx.HTTPError as failure:
            # the message names the kind of failure, never the URL (it may carry a token)
            return None, type(failure).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
