"""``ledgerbase serve --workers N``: connections spread over the workers, a dead worker replaced,
SIGTERM stopping them all, a port in use refused clearly (both databases, Linux)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ledgerbase.auth.keys import make_api_key
from ledgerbase.workers import spreads_connections
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(not spreads_connections(), reason="SO_REUSEPORT spreads connections on Linux only")

SECRET = "workers-test-secret-workers-test-secret-0123456789"


def _serve(database_url: str, data_dir: Path, port: int, workers: int = 2) -> subprocess.Popen[bytes]:
    """The server, its output (stderr) in ``data_dir/server.log``."""
    env = {**os.environ, "LEDGERBASE_DATA_DIR": str(data_dir), "LEDGERBASE_JWT_SECRET": SECRET,
           "LEDGERBASE_LOG_LEVEL": "warning"}
    with open(data_dir / "server.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ledgerbase.cli", "serve", "--port", str(port), "--database",
             database_url, "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL, stderr=log)


def _children(pid: int) -> set[int]:
    """The worker processes: children of ``pid`` that listen (not multiprocessing's helpers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"resource_tracker" not in cmdline:
            found.add(int(entry.name))
    return found


def _wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


def _connections_by_process(port: int, pids: set[int]) -> Counter[int]:
    """How many established connections to ``port`` each of ``pids`` holds (/proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
            inodes.add(fields[9])
    held: Counter[int] = Counter()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held[pid] += 1
    return held


def test_connections_spread_over_workers_and_a_dead_worker_is_replaced(empty_database_url: str,
                                                                       tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(empty_database_url, tmp_path, port)
    sockets: list[socket.socket] = []
    try:
        _wait_ready(url, server, tmp_path / "server.log")
        deadline = time.monotonic() + 30
        while len(workers := _children(server.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        assert len(workers) == 2
        # 40 connections opened at once, as a load balancer or a benchmark opens its pool: with
        # one shared listening socket, the worker that wakes first accepts every one waiting
        sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        key = make_api_key(SECRET, "anon")
        for sock in sockets:
            sock.sendall(f"GET /rest/v1/ HTTP/1.1\r\nHost: x\r\napikey: {key}\r\n\r\n".encode())
        for sock in sockets:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200"), "a connection was not served"
        held = _connections_by_process(port, workers)
        assert sum(held.values()) == 40, held
        # the kernel hashes each connection to a worker: 40 split as a fair coin would
        # (fewer than 8 on one side happens about once in 100,000 runs)
        assert min(held[pid] for pid in workers) >= 8, held

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(replaced := _children(server.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        assert len(replaced & workers) == 1
        for _ in range(20):  # new connections: served by the survivor or the replacement
            assert httpx.get(url + "/health/live", timeout=10).status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
    assert code == 0
    assert not _children(server.pid)


def test_a_port_in_use_is_refused_clearly(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = _serve(f"sqlite:///{tmp_path / 'taken.db'}", tmp_path, port)
        assert server.wait(timeout=60) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in (tmp_path / "server.log").read_text()
