"""A PostgreSQL that goes away gives 503 with Retry-After, and the server recovers by itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import POSTGRES_URL, RunningServer, free_port

FIXTURE = Path(__file__).parent / "fixtures" / "core"


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut and restored, standing in for an outage."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.loop = asyncio.new_event_loop()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, upstream_writer}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    target = urlsplit(POSTGRES_URL).port or 5432
    running = Proxy(target)
    running.start()
    yield running
    running.stop()
    running.loop.call_soon_threadsafe(running.loop.stop)
    running.thread.join(10)
    running.loop.close()


@pytest.mark.parametrize("dialect", ["postgres"], indirect=True)
def test_outage_and_recovery(dialect: str, proxy: Proxy,
                             server_factory: Callable[..., RunningServer]) -> None:
    from tests.conftest import create_scratch_database, drop_scratch_database

    direct = create_scratch_database()
    try:
        import asyncio as aio

        from ledgerbase.db.migrate import migrate

        aio.run(migrate(direct, FIXTURE))
        parts = urlsplit(direct)
        through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        server = server_factory(None, database_url=through_proxy)
        url = server.rest_url + "/books?select=id&id=eq.1"
        assert httpx.get(url, headers=server.headers()).json() == [{"id": 1}]

        proxy.stop()
        response = httpx.get(url, headers=server.headers())
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        assert httpx.get(server.url + "/health/ready").status_code == 503

        proxy.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            response = httpx.get(url, headers=server.headers())
            if response.status_code == 200:
                break
            assert response.status_code == 503
            time.sleep(0.2)
        assert response.status_code == 200 and response.json() == [{"id": 1}]
        assert httpx.get(server.url + "/health/ready").status_code == 200
    finally:
        drop_scratch_database(direct)
