"""The pure parts of auth: password policy, rate limiter, API versions, ban durations, metadata."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ledgerbase.auth.accounts import ban_until
from ledgerbase.auth.errors import AuthApiError, api_version
from ledgerbase.auth.passwords import Argon2Parameters, PasswordHasher, PasswordPolicy, common_passwords
from ledgerbase.auth.ratelimit import RateLimiter
from ledgerbase.auth.users import merge_metadata, normalize_email
from ledgerbase.config import Settings


@pytest.mark.parametrize(("password", "reasons"), [
    ("short", ["length"]), ("password", ["pwned"]), ("PASSWORD123", ["pwned"]), ("12345678", ["pwned"]),
    ("a long and unusual one", None),
])
def test_password_policy(password: str, reasons: list[str] | None) -> None:
    problem = PasswordPolicy(min_length=8).problems(password)
    assert (problem[1] if problem else None) == reasons


def test_deny_list_is_shipped() -> None:
    assert len(common_passwords()) >= 1000 and "123456" in common_passwords()


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == pytest.approx(5.0)
    assert limiter.take("b") == 0.0
    now[0] = 5.0
    assert limiter.take("a") == 0.0
    assert RateLimiter(0, 10.0).take("a") == 0.0  # 0 = no limit


@pytest.mark.parametrize(("header", "version"), [
    ("2024-01-01", "2024-01-01"), ("2025-06-30", "2024-01-01"), ("2023-12-31", None), ("yesterday", None),
    (None, None),
])
def test_api_version(header: str | None, version: str | None) -> None:
    assert api_version(header) == version


def test_ban_durations() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert ban_until(None, now) == (False, None)
    assert ban_until("none", now) == (True, None)
    assert ban_until("1h30m", now) == (True, now + timedelta(minutes=90))
    with pytest.raises(AuthApiError):
        ban_until("forever", now)


def test_metadata_merge_and_email() -> None:
    assert merge_metadata({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}
    assert normalize_email("  Ada@Example.COM ") == "ada@example.com"
    with pytest.raises(AuthApiError):
        normalize_email("ada@")


def test_default_hashing_is_owasp_argon2id() -> None:
    settings = Settings()
    parameters = Argon2Parameters(settings.auth_argon2_memory_kib, settings.auth_argon2_time_cost,
                                  settings.auth_argon2_parallelism)
    assert parameters == Argon2Parameters() == Argon2Parameters(19_456, 2, 1)

    async def hash_and_verify() -> tuple[str, bool, bool]:
        hasher = PasswordHasher(parameters)
        encoded = await hasher.hash("a long passphrase")
        right = await hasher.verify(encoded, "a long passphrase")
        unknown = await hasher.verify(None, "a long passphrase")
        return encoded, right.ok, unknown.ok

    encoded, right, unknown = asyncio.run(hash_and_verify())
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and right and not unknown
