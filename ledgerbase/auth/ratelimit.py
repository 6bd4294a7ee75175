"""In-process token buckets for the auth endpoints, keyed by client address or account.

Each limit allows ``capacity`` requests per ``window`` seconds, refilled
continuously. State is per process: behind several server processes each
enforces its own limits (documented in docs/auth.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

_MAX_KEYS = 100_000  # beyond this, full buckets are forgotten (they carry no information)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets of one kind of request (e.g. sign-in per address)."""

    def __init__(self, capacity: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._rate = capacity / window if window > 0 else math.inf
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Spend one request of ``key``'s bucket: 0.0 when allowed, else seconds until one is free."""
        if self.capacity <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_KEYS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.capacity), now)
        else:
            bucket.tokens = min(float(self.capacity), bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def _forget_full(self, now: float) -> None:
        full = [key for key, bucket in self._buckets.items()
                if bucket.tokens + (now - bucket.updated) * self._rate >= self.capacity]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_KEYS:  # all busy: an attack; start over rather than grow
            self._buckets.clear()
