"""What the policy tests share: the fixture migrations, user tokens and loading rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from tests.conftest import RunningServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "policies"

# Children before parents, so deleting in this order never trips a foreign key.
TABLES = ("tasks", "projects", "members", "teams", "profiles", "notes", "announcements", "feedback",
          "tags", "secrets")
KEYS = {"members": ("team_id", "user_id")}  # every other table's key is "id"
ANON = "anon"
SERVICE = "service_role"


@dataclass(frozen=True)
class User:
    """A signed-in user: the token claims the tests mint for them."""

    id: str
    email: str

    def token(self, secret: str) -> str:
        """An access token as Supabase Auth issues it (HS256, role authenticated)."""
        return jwt.encode({"sub": self.id, "role": "authenticated", "aud": "authenticated",
                           "email": self.email, "exp": int(time.time()) + 3600}, secret, algorithm="HS256")


Who = User | str  # a user, ANON or SERVICE


def headers_for(server: RunningServer, who: Who) -> dict[str, str]:
    """The headers supabase-py sends for the anon key, the service_role key or a user's session."""
    if isinstance(who, User):
        return {"apikey": server.anon_key, "Authorization": f"Bearer {who.token(server.jwt_secret)}"}
    return server.headers(who)


def key_filter(table: str) -> str:
    """A filter matching every row of ``table``."""
    column = KEYS.get(table, ("id",))[0]
    return f"{column}=not.is.null"


def load(client: httpx.Client, server: RunningServer, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Replace the contents of every fixture table by ``rows``, as service_role."""
    service = headers_for(server, SERVICE)
    for table in TABLES:
        response = client.delete(f"{server.rest_url}/{table}?{key_filter(table)}", headers=service)
        assert response.status_code in (200, 204), f"clearing {table}: {response.text}"
    for table in reversed(TABLES):
        if rows.get(table):
            response = client.post(f"{server.rest_url}/{table}", json=rows[table],
                                   headers={**service, "Prefer": "return=minimal"})
            assert response.status_code == 201, f"loading {table}: {response.text}"
