"""Passwords: argon2id hashing off the event loop, and the strength policy.

Hashing costs tens of milliseconds of CPU and ~19 MiB of memory each (OWASP's
parameters), so it runs in worker threads, a few at a time. Verifying against
an unknown account runs against a dummy hash, so a wrong email costs what a
wrong password costs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_DENY_LIST = Path(__file__).with_name("common-passwords.txt")
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte-long "password" is a denial of service


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """argon2id cost; the defaults are OWASP's recommendation (m=19 MiB, t=2, p=1)."""

    memory_kib: int = 19_456
    time_cost: int = 2
    parallelism: int = 1


@dataclass(frozen=True, slots=True)
class Verified:
    """The result of a password check; ``rehash`` when the stored hash used older parameters."""

    ok: bool
    rehash: bool = False


class PasswordHasher:
    """argon2id through argon2-cffi, in threads, at most ``concurrency`` at a time."""

    def __init__(self, parameters: Argon2Parameters, *, concurrency: int | None = None) -> None:
        self._argon2 = Argon2Hasher(time_cost=parameters.time_cost, memory_cost=parameters.memory_kib,
                                    parallelism=parameters.parallelism, type=Type.ID)
        # each hash holds memory_kib of RAM: bound how many run at once
        self._slots = asyncio.Semaphore(concurrency or max(2, min(8, os.cpu_count() or 2)))
        # made now, so that the first unknown email does not cost two hashes
        self._dummy = self._argon2.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash of ``password`` (PHC string, salt included)."""
        async with self._slots:
            return await asyncio.to_thread(self._argon2.hash, password)

    async def verify(self, encoded: str | None, password: str) -> Verified:
        """Whether ``password`` matches ``encoded``; with ``encoded`` None (no such user or no
        password) a dummy hash is checked so the answer takes as long, and is False."""
        if encoded is None:
            async with self._slots:
                await asyncio.to_thread(self._check, self._dummy, password)
            return Verified(ok=False)
        async with self._slots:
            ok = await asyncio.to_thread(self._check, encoded, password)
        return Verified(ok=ok, rehash=ok and self._argon2.check_needs_rehash(encoded))

    def _check(self, encoded: str, password: str) -> bool:
        try:
            return self._argon2.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


@functools.cache
def common_passwords() -> frozenset[str]:
    """The deny list shipped with the package, lower-cased (read once)."""
    lines = _DENY_LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("# "))


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a new password must satisfy: a minimum length and not being a common password."""

    min_length: int = 8
    deny_common: bool = True

    def problems(self, password: str) -> tuple[str, list[str]] | None:
        """None when acceptable, else (message, GoTrue reasons: ``length`` / ``pwned``)."""
        if len(password) < self.min_length:
            return f"Password should be at least {self.min_length} characters.", ["length"]
        if self.deny_common and password.lower() in common_passwords():
            return ("Password is known to be weak and easy to guess, please choose a different one.",
                    ["pwned"])
        return None
