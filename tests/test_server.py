"""The server around the data API: tokens, limits, health, outages, schema reloads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from ledgerbase.db.migrate import migrate
from tests.conftest import RunningServer

FIXTURE = Path(__file__).parent / "fixtures" / "core"


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(FIXTURE, max_body_bytes=4096)


def get(server: RunningServer, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(server.rest_url + path, headers=headers, timeout=30)


def test_missing_token(server: RunningServer) -> None:
    response = get(server, "/books", {})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST302"
    assert "www-authenticate" in response.headers


def test_malformed_token(server: RunningServer) -> None:
    response = get(server, "/books", {"apikey": "not-a-jwt"})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST301"


def test_wrong_secret(server: RunningServer) -> None:
    forged = jwt.encode({"role": "service_role"}, "another-secret-of-enough-length!", algorithm="HS256")
    response = get(server, "/books", {"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST301"


def test_expired_token(server: RunningServer) -> None:
    expired = jwt.encode({"role": "anon", "exp": int(time.time()) - 10}, server.jwt_secret, algorithm="HS256")
    response = get(server, "/books", {"apikey": server.anon_key, "Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST303"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_unknown_role(server: RunningServer) -> None:
    token = jwt.encode({"role": "postgres"}, server.jwt_secret, algorithm="HS256")
    response = get(server, "/books", {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_body_over_the_limit(server: RunningServer) -> None:
    body = b'{"id": 1, "name": "' + b"x" * 5000 + b'"}'
    response = httpx.post(server.rest_url + "/tags", content=body,
                          headers={**server.headers(), "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert set(response.json()) == {"code", "message", "details", "hint"}


def test_health(server: RunningServer) -> None:
    assert httpx.get(server.url + "/health/live").status_code == 200
    assert httpx.get(server.url + "/health/ready").status_code == 200


def test_openapi_document_is_valid(server: RunningServer) -> None:
    from openapi_spec_validator import validate

    response = get(server, "/", server.headers("anon"))
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert "/books" in document["paths"]
    assert "/rpc/book_count" in document["paths"]


def test_new_table_appears_without_restart(server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "900_new.sql").write_text(
        "CREATE TABLE reloaded (id integer PRIMARY KEY, note text);\n"
        "INSERT INTO reloaded VALUES (1, 'hello');\n")
    assert get(server, "/reloaded", server.headers()).status_code == 404
    asyncio.run(migrate(server.database_url, tmp_path))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = get(server, "/reloaded?select=note", server.headers())
        if response.status_code == 200:
            assert response.json() == [{"note": "hello"}]
            return
        time.sleep(0.2)
    pytest.fail("the schema cache did not pick up the new table")


@pytest.mark.parametrize("dialect", ["postgres"], indirect=True)
def test_database_down_is_503(dialect: str, server_factory: Callable[..., RunningServer]) -> None:
    from tests.conftest import free_port

    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    server = server_factory(None, database_url=dead)
    response = get(server, "/books", server.headers())
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["code"].startswith("PGRST")
    ready = httpx.get(server.url + "/health/ready")
    assert ready.status_code == 503 and ready.headers["retry-after"]
