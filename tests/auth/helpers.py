"""Shared helpers of the auth tests: cheap-but-real settings and client handling."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from supabase import AsyncClient, Client, acreate_client, create_client
from supabase.lib.client_options import AsyncClientOptions, SyncClientOptions

from tests.conftest import RunningServer

# argon2id with a small memory cost keeps a test module to a few seconds; the
# default (OWASP's 19 MiB, t=2) is what servers run with.
FAST: dict[str, Any] = {
    "auth_argon2_memory_kib": 1024, "auth_argon2_time_cost": 1,
    "auth_rate_limit_sign_up_per_ip": 1000, "auth_rate_limit_sign_in_per_ip": 1000,
    "auth_rate_limit_sign_in_per_account": 1000, "auth_rate_limit_refresh_per_ip": 1000,
    "auth_rate_limit_refresh_per_account": 1000, "auth_rate_limit_sign_up_per_account": 1000,
}
PASSWORD = "correct horse battery staple"


def email() -> str:
    """A fresh address for one test."""
    return f"user-{secrets.token_hex(4)}@example.com"


@contextmanager
def sync_client(server: RunningServer, key: str | None = None) -> Iterator[Client]:
    """supabase-py's sync client; its HTTP connections are closed afterwards."""
    client = create_client(server.url, key or server.anon_key,
                           options=SyncClientOptions(auto_refresh_token=False))
    try:
        yield client
    finally:
        client.auth.close()


@asynccontextmanager
async def async_client(server: RunningServer, key: str | None = None) -> AsyncIterator[AsyncClient]:
    """supabase-py's async client; its HTTP connections are closed afterwards."""
    client = await acreate_client(server.url, key or server.anon_key,
                                  options=AsyncClientOptions(auto_refresh_token=False))
    try:
        yield client
    finally:
        await client.auth.close()
        await asyncio.sleep(0)
