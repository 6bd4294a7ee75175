"""``ledgerbase serve --workers N``: N server processes on one port, connections spread evenly.

uvicorn's own ``--workers`` shares one listening socket among its processes, and
the process that wakes first takes each new connection. Clients keep their
connections open, so the spread at connection time is the spread for good, and
it is often lopsided: 16 connections split 13 / 3 between two workers, which
then served no more than one alone. Here each worker listens on a socket of its
own with ``SO_REUSEPORT``, and Linux hashes every new connection to one of them.

The parent process only supervises: it starts the workers, starts a worker again
when one dies, and on SIGINT or SIGTERM stops them all (each finishes its
requests, as uvicorn does). Where ``SO_REUSEPORT`` does not spread connections
(anything but Linux), uvicorn's own supervisor serves instead.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import sys
import threading
import time
from typing import Any

import structlog

log = structlog.get_logger("ledgerbase")

APP = "ledgerbase.app:app_from_env"
_STOP_SECONDS = 30.0  # a worker still finishing its requests after this is killed
_RESTART_PAUSE = 1.0  # between a worker's death and its replacement, so a crash loop does not spin


def spreads_connections() -> bool:
    """Whether the kernel balances connections among ``SO_REUSEPORT`` sockets (Linux does)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def shared_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A socket bound to ``host:port`` (listening unless ``listen`` is false) that other
    workers' sockets may share; raises OSError when something else holds the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _worker(host: str, port: int, options: dict[str, Any], log_level: str) -> None:
    """One worker process: its own socket, one uvicorn server."""
    import uvicorn

    from ledgerbase.observability import configure_logging

    configure_logging(log_level)
    sock = shared_socket(host, port)
    config = uvicorn.Config(APP, factory=True, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


class Supervisor:
    """Starts ``count`` workers, replaces those that die, and stops them all on a signal."""

    def __init__(self, count: int, host: str, port: int, options: dict[str, Any], log_level: str) -> None:
        self.count = count
        self.args = (host, port, options, log_level)
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[Any] = []
        self._stop = threading.Event()

    def _start_one(self) -> Any:
        process = self._context.Process(target=_worker, args=self.args, name="ledgerbase-worker")
        process.start()
        log.info("worker_started", pid=process.pid)
        return process

    def run(self) -> None:
        """Supervise until SIGINT or SIGTERM."""
        previous = {number: signal.signal(number, lambda *_: self._stop.set())
                    for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._workers = [self._start_one() for _ in range(self.count)]
            while not self._stop.wait(0.5):
                for index, process in enumerate(self._workers):
                    if not process.is_alive() and not self._stop.is_set():
                        log.warning("worker_died", pid=process.pid, exit_code=process.exitcode)
                        if self._stop.wait(_RESTART_PAUSE):
                            break
                        self._workers[index] = self._start_one()
        finally:
            self._stop_all()
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stop_all(self) -> None:
        for process in self._workers:
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        deadline = time.monotonic() + _STOP_SECONDS
        for process in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning("worker_killed", pid=process.pid)
                process.kill()
                process.join()


def serve_workers(count: int, host: str, port: int, options: dict[str, Any], log_level: str) -> None:
    """Serve with ``count`` worker processes until SIGINT or SIGTERM."""
    import uvicorn

    if not spreads_connections():
        uvicorn.run(APP, factory=True, host=host, port=port, workers=count, **options)
        return
    # the address is checked here, once (bound, not listening: no connection lands on it), so
    # that a port in use is one clear error rather than every worker dying in turn
    shared_socket(host, port, listen=False).close()
    Supervisor(count, host, port, options, log_level).run()
