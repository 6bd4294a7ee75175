"""Fixtures: a real server on a fresh SQLite or PostgreSQL database per test module."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import uvicorn

from ledgerbase.app import create_app
from ledgerbase.auth.keys import make_api_key
from ledgerbase.config import Settings

POSTGRES_URL = os.environ.get("LEDGERBASE_TEST_POSTGRES_URL", "")
DIALECTS = ["sqlite", "postgres"]


@dataclass(frozen=True)
class RunningServer:
    """A server started for a test module."""

    url: str
    anon_key: str
    service_key: str
    dialect: str
    database_url: str
    jwt_secret: str
    data_dir: Path

    @property
    def rest_url(self) -> str:
        return self.url + "/rest/v1"

    def headers(self, role: str = "service_role") -> dict[str, str]:
        """The headers supabase-py sends for a key."""
        key = self.service_key if role == "service_role" else self.anon_key
        return {"apikey": key, "Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_available() -> bool:
    if not POSTGRES_URL:
        return False

    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(POSTGRES_URL, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def create_scratch_database(prefix: str = "lb_test") -> str:
    """A new empty PostgreSQL database; returns its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"

    async def create() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path="/" + name))


def drop_scratch_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


@pytest.fixture(scope="session")
def postgres_ok() -> bool:
    return postgres_available()


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest, postgres_ok: bool) -> str:
    if request.param == "postgres" and not postgres_ok:
        pytest.skip("PostgreSQL not reachable: set LEDGERBASE_TEST_POSTGRES_URL")
    return str(request.param)


class _ServerThread:
    def __init__(self, app: object, port: int) -> None:
        from ledgerbase.realtime.transport import SERVER_OPTIONS

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="on", access_log=False, **SERVER_OPTIONS)  # as ledgerbase serve
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def migrated_database(dialect: str, directory: Path, migrations: Path, prefix: str) -> Iterator[str]:
    """A fresh database with ``migrations`` applied (SQLite in ``directory``, else a scratch
    PostgreSQL database, dropped afterwards); for ``yield from`` in a fixture."""
    from ledgerbase.db.migrate import migrate

    url = f"sqlite:///{directory / 'nodes.db'}" if dialect == "sqlite" else create_scratch_database(prefix)
    asyncio.run(migrate(url, migrations))
    yield url
    if dialect == "postgres":
        drop_scratch_database(url)


def fresh_database_url(dialect: str, directory: Path) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{directory / 'test.db'}"
    return create_scratch_database()


@pytest.fixture
def empty_database_url(dialect: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of ``dialect`` for one test (a scratch PostgreSQL database is dropped after)."""
    url = fresh_database_url(dialect, tmp_path)
    try:
        yield url
    finally:
        if dialect == "postgres":
            drop_scratch_database(url)


@pytest.fixture(scope="module")
def server_factory(dialect: str, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., RunningServer]]:
    """``server_factory(migrations_dir)`` starts a server on a fresh database with them applied."""
    from ledgerbase.db.migrate import migrate

    started: list[_ServerThread] = []
    databases: list[str] = []

    def factory(migrations: Path | None = None, **settings: object) -> RunningServer:
        data_dir = tmp_path_factory.mktemp(f"ledgerbase-{dialect}")
        given = settings.pop("database_url", None)
        url = str(given) if given else fresh_database_url(dialect, data_dir)
        if dialect == "postgres" and not given:
            databases.append(url)
        if migrations is not None:
            asyncio.run(migrate(url, Path(migrations)))
        secret = secrets.token_urlsafe(32)
        app = create_app(Settings(data_dir=data_dir, database_url=url, jwt_secret=secret,
                                  **settings))  # type: ignore[arg-type]
        port = free_port()
        thread = _ServerThread(app, port)
        thread.start()
        started.append(thread)
        return RunningServer(
            url=f"http://127.0.0.1:{port}", anon_key=make_api_key(secret, "anon"),
            service_key=make_api_key(secret, "service_role"), dialect=dialect, database_url=url,
            jwt_secret=secret, data_dir=data_dir,
        )

    yield factory
    for thread in started:
        thread.stop()
    for url in databases:
        drop_scratch_database(url)
