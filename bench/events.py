"""The events outbox at the API's full write rate: does it keep up, and how far behind is it?

For SQLite and PostgreSQL, `ledgerbase serve` runs twice, pinned to one core, each on its
own copy of the same data: with the outbox publishing to NATS JetStream and Redis Streams
(a stream, subject prefix, Redis key and realtime relay channel unique to the run, deleted
afterwards) and with no broker configured. wrk, pinned to the other core, sends each in
turn single-row inserts (bench/wrk/insert.lua) as fast as they are answered, for the
same time, just after the fixed-JSON uvicorn app (the run's baseline) was timed.

During the burst to the events-on server its /metrics (``ledgerbase_events_lag``:
committed changes a sink's broker has not acknowledged) is sampled every 0.1 s. After
it, the script waits until both brokers hold the last change (*caught up*), then reads
back every message the burst produced from both brokers: a change's lag is the broker's
own timestamp of its message (JetStream's stored time, the Redis entry id) minus the
change's commit time (``commit_timestamp``, the database's clock, same machine), and
every change of the burst must be there (repeats, which at-least-once delivery allows,
are counted). Writes the section "## Events" of RESULTS.md and nothing else of it (its
subsection "### Written by hand" is kept).

    .venv/bin/python bench/events.py                  # 10 s per measurement, about 10 minutes
    .venv/bin/python bench/events.py --quick --no-postgres --results bench/out/try.md
    .venv/bin/python bench/events.py --profile        # py-spy on the events-on server too
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import machine
import orjson
from harness import BENCH_DIR, Keys, Measurement, Running, Server, busy_cpu, free_port, run_wrk, settle

PYTHON = Path(sys.executable)
LEDGERBASE = PYTHON.parent / "ledgerbase"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_LAG_S = 1.0
SECTION = "Events"
HAND_WRITTEN = "### Written by hand"  # a subsection of the Events section that a run keeps as it is
WORKLOAD = "insert"  # bench/wrk/insert.lua: POST /rest/v1/posts, Prefer: return=minimal
CAUGHT_UP_TIMEOUT = 120.0  # seconds after a burst before the brokers count as not keeping up
METRICS_INTERVAL = 0.1
QUIET = 1.0  # seconds without a new change after which a burst's writes are all committed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server")
    parser.add_argument("--quick", action="store_true", help="3 s measurements, 1 s warm-up")
    parser.add_argument("--connections", default="16,64", help="comma-separated wrk -c values")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time fixed JSON, events off and events on this many times in turn "
                             "per database and connection count (every round is reported)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES",
                        help="on a shared machine, wait up to MINUTES for other programs to use "
                             "less than 0.3 cores before timing")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for servers")
    parser.add_argument("--wrk-cpus", default="1",
                        help="taskset CPU list for wrk (and this script, which reads the brokers)")
    parser.add_argument("--posts", type=int, default=100_000, help="posts loaded before the run")
    parser.add_argument("--postgres-url", default=os.environ.get("LEDGERBASE_TEST_POSTGRES_URL"),
                        help="maintenance URL; scratch databases lb_events_<hex>* are made beside "
                             f"it (default: $LEDGERBASE_TEST_POSTGRES_URL, else {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--nats-url", default=os.environ.get("LEDGERBASE_TEST_NATS_URL")
                        or "nats://127.0.0.1:4222")
    parser.add_argument("--redis-url", default=os.environ.get("LEDGERBASE_TEST_REDIS_URL")
                        or "redis://127.0.0.1:6379/0")
    parser.add_argument("--on-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the events-on server only, e.g. LEDGERBASE_EVENTS_BATCH_SIZE=1000 "
                             "(repeatable; both brokers stay configured)")
    parser.add_argument("--profile", action="store_true",
                        help="after the timed bursts, record the events-on server with py-spy "
                             "during one more burst (not timed) and list where its CPU went")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md",
                        help="the file whose Events section is written (the rest is kept)")
    args = parser.parse_args(argv)
    args.command = " ".join([".venv/bin/python bench/events.py", *(sys.argv[1:] if argv is None else argv)])
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    args.connections = [int(c) for c in str(args.connections).split(",")]
    return args


# -- names, brokers, the ledger's head ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Names:
    """The stream, subject prefix, Redis key and relay channel of one database's events-on server."""

    stream: str
    prefix: str
    redis_key: str
    relay_channel: str

    @classmethod
    def unique(cls, token: str, database: str) -> Names:
        return cls(stream=f"LBBENCH_{token.upper()}_{database.upper()}",
                   prefix=f"lbbench_{token}_{database}", redis_key=f"lbbench:{token}:{database}:changes",
                   relay_channel=f"lbbench:{token}:{database}:realtime")

    @property
    def nats_sink(self) -> str:
        return f"nats:{self.stream}"  # the sink names of ledgerbase.events.sinks, as /metrics labels them

    @property
    def redis_sink(self) -> str:
        return f"redis:{self.redis_key}"

    def env(self, nats_url: str, redis_url: str) -> dict[str, str]:
        return {"LEDGERBASE_NATS_URL": nats_url, "LEDGERBASE_REDIS_URL": redis_url,
                "LEDGERBASE_EVENTS_NATS_STREAM": self.stream,
                "LEDGERBASE_EVENTS_NATS_SUBJECT_PREFIX": self.prefix,
                "LEDGERBASE_EVENTS_REDIS_KEY": self.redis_key,
                "LEDGERBASE_REALTIME_RELAY_CHANNEL": self.relay_channel, "LEDGERBASE_WEBHOOKS": "[]"}


# Without a broker URL the server has no outbox sinks (and no realtime relay).
NO_BROKERS = {"LEDGERBASE_NATS_URL": "", "LEDGERBASE_REDIS_URL": "", "LEDGERBASE_WEBHOOKS": "[]"}


@dataclass(frozen=True, slots=True)
class Delivered:
    """One change as a broker holds it: its number, its commit time, the broker's time (s)."""

    seq: int
    committed: float
    stored: float


def commit_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["commit_timestamp"])).timestamp()


class Brokers:
    """Connected NATS and Redis clients for one events-on server's stream and key."""

    def __init__(self, nats_url: str, redis_url: str, names: Names) -> None:
        self.nats_url, self.redis_url, self.names = nats_url, redis_url, names
        self._nats: Any = None
        self._jetstream: Any = None
        self._redis: Any = None

    async def __aenter__(self) -> Brokers:
        import nats
        import redis.asyncio as redis

        self._nats = await nats.connect(self.nats_url, connect_timeout=5)
        self._jetstream = self._nats.jetstream(timeout=10)
        self._redis = redis.from_url(self.redis_url, socket_timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._redis.aclose()
        await self._nats.close()

    async def nats_position(self) -> tuple[int, int]:
        """(the stream's last message number, the last change number it holds); (0, -1) when empty."""
        from nats.js.errors import NotFoundError

        try:
            info = await self._jetstream.stream_info(self.names.stream)
        except NotFoundError:
            return 0, -1
        if not info.state.messages:
            return int(info.state.last_seq), -1
        last = await self._jetstream.get_msg(self.names.stream, info.state.last_seq)
        return int(info.state.last_seq), int((last.headers or {}).get("Nats-Msg-Id", -1))

    async def redis_position(self) -> tuple[str, int]:
        """(the stream's last entry id, the last change number it holds); ("0-0", -1) when empty."""
        newest = await self._redis.xrevrange(self.names.redis_key, count=1)
        if not newest:
            return "0-0", -1
        entry_id, fields = newest[0]
        return entry_id.decode(), int(orjson.loads(fields[b"data"])["ledger_seq"])

    async def nats_after(self, stream_seq: int) -> list[Delivered]:
        """Every message after stream message ``stream_seq``, read with an ephemeral consumer."""
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        last, _ = await self.nats_position()
        if last <= stream_seq:
            return []
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=stream_seq + 1,
                                ack_policy=AckPolicy.NONE, inactive_threshold=60.0)
        subscription = await self._jetstream.pull_subscribe(f"{self.names.prefix}.>", stream=self.names.stream,
                                                            config=config)
        found: list[Delivered] = []
        try:
            while True:
                try:
                    messages = await subscription.fetch(batch=1000, timeout=5)
                except NatsTimeout:
                    break
                for message in messages:
                    event = orjson.loads(message.data)
                    found.append(Delivered(int(event["ledger_seq"]), commit_time(event),
                                           message.metadata.timestamp.timestamp()))
                if messages[-1].metadata.sequence.stream >= last:
                    break
        finally:
            await subscription.unsubscribe()
        return found

    async def redis_after(self, entry_id: str) -> list[Delivered]:
        """Every entry after ``entry_id``; an entry's id is the Redis clock in milliseconds."""
        found: list[Delivered] = []
        start = f"({entry_id}"
        while True:
            entries = await self._redis.xrange(self.names.redis_key, min=start, count=10_000)
            if not entries:
                return found
            for raw_id, fields in entries:
                event = orjson.loads(fields[b"data"])
                found.append(Delivered(int(event["ledger_seq"]), commit_time(event),
                                       int(raw_id.split(b"-")[0]) / 1000))
            start = f"({entries[-1][0].decode()}"

    async def delete(self) -> None:
        """Delete the stream and the keys the events-on server made."""
        from nats.js.errors import NotFoundError

        try:
            await self._jetstream.delete_stream(self.names.stream)
        except NotFoundError:
            pass
        await self._redis.delete(self.names.redis_key, f"{self.names.redis_key}:seq")


class Head:
    """The number of the last committed change in a server's database (read-only on SQLite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: Any = None

    async def __aenter__(self) -> Head:
        if self.url.startswith("sqlite:///"):
            self._sqlite = sqlite3.connect(f"file:{self.url.removeprefix('sqlite:///')}?mode=ro", uri=True)
        else:
            import asyncpg

            self._postgres = await asyncpg.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgres is not None:
            await self._postgres.close()

    async def read(self) -> int:
        if self._sqlite is not None:
            row = self._sqlite.execute("SELECT coalesce(max(id), 0) - 1 FROM _ledgerbase_ledger_changes").fetchone()
            return int(row[0])
        return int(await self._postgres.fetchval(
            "SELECT coalesce(max(seq), -1) FROM ledgerbase.ledger_changes"))


async def caught_up(brokers: Brokers, head: Head, timeout: float) -> tuple[int, float | None, float | None]:
    """The last change once writes stopped, and seconds until NATS, and until Redis, held it.

    Requests still in flight when wrk stops are committed after it, so the last change is
    the head once it has not moved for ``QUIET`` seconds. None: not within ``timeout``.
    """
    started = moved = time.monotonic()
    last = await head.read()
    nats_s: float | None = None
    redis_s: float | None = None
    while time.monotonic() - started < timeout:
        if (now := await head.read()) != last:
            last, moved, nats_s, redis_s = now, time.monotonic(), None, None
        if nats_s is None and (await brokers.nats_position())[1] >= last:
            nats_s = time.monotonic() - started
        if redis_s is None and (await brokers.redis_position())[1] >= last:
            redis_s = time.monotonic() - started
        if nats_s is not None and redis_s is not None and time.monotonic() - moved > QUIET:
            break
        await asyncio.sleep(0.02)
    return last, nats_s, redis_s


async def sample_metrics(base_url: str, sinks: tuple[str, ...], samples: dict[str, list[float]],
                         stop: asyncio.Event) -> None:
    """Append each sink's ``ledgerbase_events_lag`` from /metrics every 0.1 s until ``stop``."""
    pattern = re.compile(r'^ledgerbase_events_lag\{sink="([^"]+)"\} (\S+)$', re.MULTILINE)
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
        while not stop.is_set():
            try:
                text = (await client.get("/metrics")).text
            except httpx.HTTPError:
                text = ""
            for sink, value in pattern.findall(text):
                if sink in sinks:
                    samples[sink].append(float(value))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), METRICS_INTERVAL)


# -- figures ----------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))]


@dataclass(frozen=True, slots=True)
class SinkFigures:
    """What one broker received of one burst."""

    sink: str  # "NATS JetStream" or "Redis Streams"
    expected: int  # changes committed during the burst
    delivered: int  # of those, how many the broker holds (distinct)
    repeats: int  # messages of the burst held more than once
    stray: int  # messages whose change number is outside the burst
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    caught_up_s: float | None  # seconds after the burst until the broker held the last change
    metrics_lag_max: float | None  # the largest ledgerbase_events_lag sampled (changes)

    @property
    def complete(self) -> bool:
        return self.delivered == self.expected and not self.stray


def broker_pids() -> list[int]:
    """The processes of the NATS and Redis servers on this machine (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in ("nats-server", "redis-server"):
                found.append(int(entry.name))
        except OSError:  # ended while we looked
            continue
    return found


def processes_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the processes ``pids`` (those still running)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def sink_figures(sink: str, delivered: list[Delivered], first: int, last: int, caught_up_s: float | None,
                 metrics: list[float]) -> SinkFigures:
    """The figures of changes ``first``..``last`` among ``delivered``."""
    inside = [d for d in delivered if first <= d.seq <= last]
    counts = Counter(d.seq for d in inside)
    lags = [(d.stored - d.committed) * 1000 for d in inside]
    return SinkFigures(sink=sink, expected=last - first + 1, delivered=len(counts),
                       repeats=sum(n - 1 for n in counts.values()), stray=len(delivered) - len(inside),
                       lag_p50_ms=percentile(lags, 0.5), lag_p99_ms=percentile(lags, 0.99),
                       lag_max_ms=max(lags, default=0.0), caught_up_s=caught_up_s,
                       metrics_lag_max=max(metrics) if metrics else None)


@dataclass(slots=True)
class Slot:
    """One database and connection count: the baseline, events off, events on, and the brokers."""

    database: str  # "SQLite" or "PostgreSQL"
    connections: int
    round: int = 1
    fixed: Measurement | None = None
    off: Measurement | None = None
    on: Measurement | None = None
    sinks: list[SinkFigures] = field(default_factory=list)
    brokers_off: float | None = None  # cores the NATS and Redis servers kept busy meanwhile
    brokers_on: float | None = None

    @property
    def cpu_ratio(self) -> float | None:
        """Writes per second of the server's CPU, events on ÷ off."""
        on, off = self.on, self.off
        if not on or not off or not on.cpu_ms_per_request:
            return None
        return off.cpu_ms_per_request / on.cpu_ms_per_request

    @property
    def ratio(self) -> float | None:
        return self.on.rps / self.off.rps if self.on and self.off and self.off.rps else None

    @property
    def lag_max_s(self) -> float | None:
        if not self.sinks:
            return None
        if any(s.caught_up_s is None for s in self.sinks):
            return float("inf")
        return max(s.lag_max_ms for s in self.sinks) / 1000

    @property
    def passed(self) -> bool | None:
        lag = self.lag_max_s
        return None if lag is None else lag < TARGET_LAG_S and all(s.complete for s in self.sinks)


# -- the run ----------------------------------------------------------------------------


class EventsRun:
    """State of one run: directories, servers, figures."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.dir = BENCH_DIR / "out" / f"events-{stamp}"
        self.data_dir = self.dir / "data"
        self.migrations = self.dir / "migrations"
        for directory in (self.dir / "logs", self.dir / "wrk", self.data_dir, self.migrations):
            directory.mkdir(parents=True)
        shutil.copy(BENCH_DIR / "schema.sql", self.migrations / "0001_bench_schema.sql")
        self.token = secrets.token_hex(4)
        self.env = {"LEDGERBASE_DATA_DIR": str(self.data_dir), "LEDGERBASE_JWT_SECRET": secrets.token_urlsafe(48)}
        self.pg_maintenance = args.postgres_url or DEFAULT_POSTGRES_URL
        self.pg_databases: list[str] = []
        self.names: list[Names] = []
        self.slots: list[Slot] = []
        self.notes: list[str] = []
        self.profiles: dict[str, list[tuple[str, float]]] = {}
        self.keys: Keys | None = None
        self.started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.facts = {"commit": machine.git_commit(BENCH_DIR.parent), **machine.machine_info()}

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)

    def command(self, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(LEDGERBASE), *arguments], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"`ledgerbase {arguments[0]}` failed: {(done.stdout + done.stderr)[-600:]}")
        return done

    def migrate_and_load(self, url: str) -> None:
        self.command("migrate", "--database", url, "--dir", str(self.migrations))
        subprocess.run([str(PYTHON), str(BENCH_DIR / "load.py"), "--database", url, "--posts",
                        str(self.args.posts)], check=True, env={**os.environ, **self.env})

    def ledgerbase_keys(self) -> Keys:
        if self.keys is None:
            text = self.command("keys", "--json").stdout
            keys = json.loads(text[text.index("{"):text.rindex("}") + 1])
            self.keys = Keys(read=keys["anon"], write=keys["service_role"])
        return self.keys

    def background_load(self, seconds: float = 3.0) -> None:
        """Record how busy the machine is before the servers start; with --wait-quiet wait for calm."""
        deadline = time.monotonic() + self.args.wait_quiet * 60
        while True:
            before, started = busy_cpu(), time.monotonic()
            time.sleep(seconds)
            cores = (busy_cpu() - before) / (time.monotonic() - started)
            if cores < 0.3 or time.monotonic() > deadline:
                break
            print(f"  machine busy ({cores:.2f} cores used by other programs); waiting", flush=True)
            time.sleep(10)
        self.facts["background load"] = (f"{cores:.2f} cores busy before the servers started "
                                         f"({os.getloadavg()[0]:.2f} load average)")

    # -- databases --

    def sqlite_urls(self) -> tuple[str, str]:
        master = self.data_dir / "events.db"
        print("\n== SQLite data", flush=True)
        self.migrate_and_load(f"sqlite:///{master}")
        copies = []
        for name in ("events-on", "events-off"):
            copy = master.with_name(f"{name}.db")
            shutil.copyfile(master, copy)
            copies.append(f"sqlite:///{copy}")
        return copies[0], copies[1]

    def postgres_urls(self) -> tuple[str, str] | None:
        name = f"lb_events_{secrets.token_hex(4)}"
        try:
            version = asyncio.run(machine.pg_create(self.pg_maintenance, name))
        except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
            self.note(f"PostgreSQL skipped: {machine.redact(self.pg_maintenance)} unreachable ({error!r})")
            return None
        self.pg_databases.append(name)
        self.facts["PostgreSQL"] = f"{version} (its processes are not pinned)"
        print(f"\n== PostgreSQL data: scratch database {name}", flush=True)
        self.migrate_and_load(machine.with_database(self.pg_maintenance, name))
        copies = []
        for suffix in ("on", "off"):
            copy = f"{name}_{suffix}"
            asyncio.run(machine.pg_execute(self.pg_maintenance, f'create database "{copy}" template "{name}"'))
            self.pg_databases.append(copy)
            copies.append(machine.with_database(self.pg_maintenance, copy))
        return copies[0], copies[1]

    # -- servers --

    def server(self, name: str, url: str, extra_env: dict[str, str]) -> Server:
        return Server(name, f"ledgerbase serve ({name})", "", [
            str(LEDGERBASE), "serve", "--host", "127.0.0.1", "--port", "{port}", "--database", url],
            (WORKLOAD,), self.args.server_cpus, self.ledgerbase_keys(), env={**self.env, **extra_env})

    def start(self, server: Server) -> Running:
        print(f"== start {server.name} (taskset -c {server.cpus})", flush=True)
        running = Running(server, free_port(), self.dir / "logs" / f"{server.name}.log")
        try:
            running.wait_ready()
        except RuntimeError:
            running.stop()
            raise
        return running

    def wrk(self, running: Running, conns: int, seconds: float, everyone: list[Running],
            output: str | None) -> Measurement:
        return run_wrk(running, WORKLOAD, conns, seconds, cpus=self.args.wrk_cpus, threads=1, others=everyone,
                       output=self.dir / "wrk" / output if output else None)

    def database(self, label: str, on_url: str, off_url: str, fixed: Running) -> None:
        """Time events off and on for every connection count on one database."""
        key = "sqlite" if label == "SQLite" else "pg"
        names = Names.unique(self.token, key)
        self.names.append(names)
        args = self.args
        off = self.start(self.server(f"{key}-events-off", off_url, NO_BROKERS))
        try:
            on = self.start(self.server(f"{key}-events-on", on_url,
                                        names.env(args.nats_url, args.redis_url) | dict(
                                            setting.split("=", 1) for setting in args.on_env)))
        except RuntimeError:
            off.stop()
            raise
        everyone = [fixed, off, on]
        try:
            asyncio.run(self.wait_published(on_url, names))
            print(f"== warm-up ({args.warmup:g} s per server)", flush=True)
            for running in (off, on):
                self.wrk(running, min(args.connections), args.warmup, everyone, None)
            asyncio.run(self.wait_published(on_url, names))
            for conns in args.connections:
                for round_number in range(1, args.rounds + 1):
                    print(f"\n== {label}, {conns} connections"
                          + (f", round {round_number}" if args.rounds > 1 else ""), flush=True)
                    slot = Slot(label, conns, round_number)
                    suffix = f"{key}-c{conns}-r{round_number}.txt"
                    settle(everyone)
                    slot.fixed = self.wrk(fixed, conns, args.duration, everyone, f"fixed-{suffix}")
                    settle(everyone)
                    slot.off, slot.brokers_off = asyncio.run(self.sampled(off, conns, everyone, f"off-{suffix}"))
                    settle(everyone)
                    slot.on, slot.brokers_on, slot.sinks = asyncio.run(self.burst(on, on_url, names, conns, everyone,
                                                                 f"on-{suffix}"))
                    self.slots.append(slot)
                    self.print_slot(slot)
            if args.profile:
                self.profile(on, key, everyone)
            for running in (off, on):
                if running.process.poll() is not None:
                    self.note(f"{running.server.name} exited during the run: {running.log_tail()}")
        finally:
            on.stop()
            off.stop()

    async def wait_published(self, url: str, names: Names) -> None:
        """Wait until both brokers hold every committed change (the outbox has nothing left)."""
        async with Head(url) as head, Brokers(self.args.nats_url, self.args.redis_url, names) as brokers:
            last, nats_s, redis_s = await caught_up(brokers, head, CAUGHT_UP_TIMEOUT)
            if nats_s is None or redis_s is None:
                raise RuntimeError(f"the brokers did not receive change {last} within "
                                   f"{CAUGHT_UP_TIMEOUT:.0f} s (NATS: {nats_s}, Redis: {redis_s})")

    def timed(self, running: Running, conns: int, everyone: list[Running], output: str) -> tuple[Measurement, float]:
        """One measurement, and the cores the NATS and Redis servers kept busy meanwhile."""
        brokers = broker_pids()
        before = processes_cpu(brokers)
        m = self.wrk(running, conns, self.args.duration, everyone, output)
        return m, (processes_cpu(brokers) - before) / m.seconds if m.seconds else 0.0

    async def sampled(self, running: Running, conns: int, everyone: list[Running],
                      output: str) -> tuple[Measurement, float]:
        """Time the events-off server while asking its /metrics as often as the events-on server's."""
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_metrics(running.base_url, (), {}, stop))
        try:
            return await asyncio.to_thread(self.timed, running, conns, everyone, output)
        finally:
            stop.set()
            await sampler

    async def burst(self, running: Running, url: str, names: Names, conns: int, everyone: list[Running],
                    output: str) -> tuple[Measurement, float, list[SinkFigures]]:
        """Time the events-on server while sampling /metrics; then wait for and read back the brokers."""
        await self.wait_published(url, names)
        sinks = (names.nats_sink, names.redis_sink)
        samples: dict[str, list[float]] = {sink: [] for sink in sinks}
        async with Head(url) as head, Brokers(self.args.nats_url, self.args.redis_url, names) as brokers:
            first = await head.read() + 1
            nats_start, _ = await brokers.nats_position()
            redis_start, _ = await brokers.redis_position()
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_metrics(running.base_url, sinks, samples, stop))
            try:
                m, brokers_cpu = await asyncio.to_thread(self.timed, running, conns, everyone, output)
                last, nats_s, redis_s = await caught_up(brokers, head, CAUGHT_UP_TIMEOUT)
            finally:
                stop.set()
                await sampler
            nats = await brokers.nats_after(nats_start)
            redis = await brokers.redis_after(redis_start)
        if nats_s is None or redis_s is None:
            self.note(f"{running.server.name}, {conns} connections: the brokers did not hold change "
                      f"{last} {CAUGHT_UP_TIMEOUT:.0f} s after the burst")
        return m, brokers_cpu, [sink_figures("NATS JetStream", nats, first, last, nats_s, samples[names.nats_sink]),
                   sink_figures("Redis Streams", redis, first, last, redis_s, samples[names.redis_sink])]

    def print_slot(self, slot: Slot) -> None:
        for name, m, brokers in (("fixed JSON", slot.fixed, None), ("events off", slot.off, slot.brokers_off),
                                 ("events on", slot.on, slot.brokers_on)):
            if m is not None:
                print(f"  {name:<11} {m.rps:>9,.0f} req/s  p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:7.2f} ms  "
                      f"CPU {m.cpu_ms_per_request:.3f} ms/req  errors {m.errors}  other CPU {m.other_cpu:.2f}"
                      + ("" if brokers is None else f" (brokers {brokers:.2f})"), flush=True)
        for s in slot.sinks:
            print(f"  {s.sink:<15} {s.delivered:,}/{s.expected:,} changes (repeats {s.repeats}, stray "
                  f"{s.stray})  lag p50 {s.lag_p50_ms:.0f} ms  p99 {s.lag_p99_ms:.0f} ms  "
                  f"max {s.lag_max_ms:.0f} ms  caught up {s.caught_up_s} s  /metrics max {s.metrics_lag_max}",
                  flush=True)

    def profile(self, running: Running, key: str, everyone: list[Running]) -> None:
        """py-spy on the events-on server during one more (untimed) burst: CPU share per function."""
        spy = PYTHON.parent / "py-spy"
        if not spy.exists():
            self.note("--profile: py-spy is not installed in the virtualenv (pip install py-spy)")
            return
        output = self.dir / f"profile-{key}.txt"
        seconds = max(3, round(self.args.duration))
        recorder = subprocess.Popen([str(spy), "record", "--pid", str(running.process.pid), "--subprocesses",
                                     "--duration", str(seconds), "--rate", "200", "--format", "raw", "--gil",
                                     "--output", str(output), "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        self.wrk(running, max(self.args.connections), seconds, everyone, None)
        recorder.wait(timeout=60)
        if output.exists():
            self.profiles[key] = profile_shares(output.read_text())
            print(f"  profile: {output}", flush=True)

    # -- end --

    def cleanup(self) -> None:
        async def delete_all() -> None:
            for names in self.names:
                async with Brokers(self.args.nats_url, self.args.redis_url, names) as brokers:
                    await brokers.delete()

        try:
            asyncio.run(delete_all())
        except Exception as error:  # noqa: BLE001 - reported; the run's figures still count
            self.note(f"could not delete the run's streams and keys: {error!r}")
        for name in reversed(self.pg_databases):
            asyncio.run(machine.pg_drop(self.pg_maintenance, name))

    def write(self) -> None:
        body = render(self)
        (self.dir / "events.md").write_text(body)
        (self.dir / "results.json").write_text(json.dumps({
            "started": self.started, "facts": self.facts, "notes": self.notes, "profiles": self.profiles,
            "slots": [asdict(s) | {"ratio": s.ratio, "lag_max_s": s.lag_max_s} for s in self.slots]},
            indent=1, default=str))
        old = self.args.results.read_text() if self.args.results.exists() else ""
        self.args.results.write_text(merge_section(old, body))
        print(f"\nwrote the {SECTION} section of {self.args.results} (raw output in {self.dir})")


# Parts of the server a profile sample is counted in: the first whose marker a frame of its
# stack contains. The broker clients' own tasks (reading acknowledgements, flushing) count as
# the outbox's; the realtime relay's few Redis heartbeats would too.
PROFILE_PARTS = (("the outbox: publisher tasks, reads of the changes, NATS and Redis clients",
                  ("ledgerbase/events/", "nats/", "redis/")),
                 ("the ledger: capture and integrator", ("ledgerbase/ledger/",)),
                 ("HTTP requests: uvicorn and the ASGI app", ("run_asgi", "httptools_impl", "ledgerbase/rest/")),
                 ("database threads and drivers otherwise", ("sqlite_threads", "asyncpg/", "ledgerbase/db/")))


def profile_shares(raw: str, count: int = 8) -> list[tuple[str, float]]:
    """Shares of py-spy's samples: per part of the server, then per function on top of the stack.

    ``raw`` is py-spy's collapsed-stack format, ``frame;frame;... count`` per line.
    """
    parts: Counter[str] = Counter()
    on_top: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        total += int(number)
        on_top[f"on top: `{stack.rsplit(';', 1)[-1]}`"] += int(number)
        part = next((label for label, markers in PROFILE_PARTS if any(m in stack for m in markers)), "other")
        parts[part] += int(number)
    if not total:
        return []
    return [(label, parts[label] / total) for label in [*(label for label, _ in PROFILE_PARTS), "other"]] + \
        [(name, n / total) for name, n in on_top.most_common(count)]


# -- RESULTS.md ---------------------------------------------------------------------------


def fmt(value: float | None, pattern: str = "{:,.0f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def render(run: EventsRun) -> str:
    """The Events section."""
    args = run.args
    rounds = args.rounds > 1
    out = [f"## {SECTION}", "",
           "Written by `bench/events.py` (see bench/README.md) in a run of its own: "
           f"`{args.command}` ({run.started}, commit "
           f"`{run.facts['commit']}`, {run.facts.get('background load', '')}).", "",
           f"- machine: {run.facts.get('machine', '')}",
           f"- software: {run.facts.get('software', '')}"]
    if "PostgreSQL" in run.facts:
        out.append(f"- PostgreSQL: {run.facts['PostgreSQL']}")
    out += [f"- per measurement: {args.duration:g} s of wrk (1 thread, taskset -c {args.wrk_cpus}, --timeout 10s), "
            f"after {args.warmup:g} s of warm-up per server; servers under taskset -c {args.server_cpus}; per "
            "database and connection count the fixed-JSON app, events off, then events on, each once the "
            "servers are idle" + (f"; {args.rounds} rounds of that, each reported" if rounds else ""),
            f"- data: bench/schema.sql and bench/load.py ({args.posts:,} posts); each server its own copy; the "
            "ledger on (the default) in both",
            f"- brokers: NATS at {args.nats_url} and Redis at {args.redis_url} (the machine's, not pinned); a "
            "stream, subject prefix, key and realtime relay channel unique to the run, deleted afterwards",
            *([f"- events-on server also with: {', '.join(f'`{e}`' for e in args.on_env)}"] if args.on_env else []),
            "", "Events on: `ledgerbase serve` with `LEDGERBASE_NATS_URL` and `LEDGERBASE_REDIS_URL` set and "
            "every other events setting at its default; events off: the same with no broker configured. Each "
            "takes `POST /rest/v1/posts` (one row, `Prefer: return=minimal`) as fast as wrk gets answers. "
            "*lag*: per change, the broker's timestamp of its message (JetStream's stored time, the Redis entry "
            "id) minus the change's commit time, over every change of the burst; *caught up*: seconds after "
            "wrk stopped until the broker held the last change; */metrics max*: the largest "
            "`ledgerbase_events_lag` (changes not yet acknowledged) sampled every 0.1 s during the burst; "
            "*CPU ms/write*: the server's CPU time per answered insert (its own process: not PostgreSQL's, "
            "NATS's or Redis's), and *on ÷ off per CPU* the ratio of writes per second of that CPU, which a busy "
            "machine disturbs less than writes/s; *other CPU*: cores busy with anything but the servers and "
            "wrk, *of which brokers* the NATS and Redis servers (not pinned: they share the server's core); "
            "on PostgreSQL rows other CPU includes PostgreSQL. Above about 0.1 from other programs the "
            "absolute figures are disturbed.", "",
            f"Target: lag < {TARGET_LAG_S:g} s (the largest of any change, on both brokers"
            + (", in every round" if rounds else "") + ") while the API takes writes at its full rate, and "
            "every change delivered (repeats, which at-least-once delivery allows, are counted).", "",
            "| target | database | conns | measured | result |", "|---|---|---|---|---|"]
    for (database, conns), group in grouped(run.slots).items():
        lags = [s.lag_max_s for s in group if s.lag_max_s is not None]
        lag = max(lags) if lags else None
        measured = "n/a" if lag is None else "not caught up" if lag == float("inf") else f"{lag:.2f} s"
        if any(not sink.complete for s in group for sink in s.sinks):
            measured += ", changes missing"
        passed = [s.passed for s in group if s.passed is not None]
        result = "n/a" if not passed else "pass" if all(passed) else "**FAIL**"
        out.append(f"| lag < {TARGET_LAG_S:g} s at full write rate, every change delivered | {database} "
                   f"| {conns} | {measured} | {result} |")
    head = ["database", "conns", *(["round"] if rounds else []), "fixed JSON req/s", "events off writes/s",
            "events on writes/s", "on ÷ off", "off × fixed", "on × fixed", "off CPU ms/write", "on CPU ms/write",
            "on ÷ off per CPU", "off p99 ms", "on p99 ms", "errors", "other CPU off / on", "of which brokers"]
    out += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for slot in run.slots:
        fixed, off, on = slot.fixed, slot.off, slot.on
        row = [slot.database, str(slot.connections), *([str(slot.round)] if rounds else []),
               fmt(fixed.rps if fixed else None), fmt(off.rps if off else None), fmt(on.rps if on else None),
               fmt(slot.ratio, "{:.2f}"),
               fmt(off.rps / fixed.rps if off and fixed and fixed.rps else None, "{:.3f}"),
               fmt(on.rps / fixed.rps if on and fixed and fixed.rps else None, "{:.3f}"),
               fmt(off.cpu_ms_per_request if off else None, "{:.3f}"),
               fmt(on.cpu_ms_per_request if on else None, "{:.3f}"), fmt(slot.cpu_ratio, "{:.2f}"),
               fmt(off.p99_ms if off else None, "{:.1f}"), fmt(on.p99_ms if on else None, "{:.1f}"),
               str((off.errors if off else 0) + (on.errors if on else 0)),
               f"{fmt(off.other_cpu if off else None, '{:.2f}')} / {fmt(on.other_cpu if on else None, '{:.2f}')}",
               f"{fmt(slot.brokers_off, '{:.2f}')} / {fmt(slot.brokers_on, '{:.2f}')}"]
        out.append("| " + " | ".join(row) + " |")
    head = ["database", "conns", *(["round"] if rounds else []), "broker", "changes", "delivered", "repeats",
            "lag p50 ms", "lag p99 ms", "lag max ms", "caught up s", "/metrics max"]
    out += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for slot in run.slots:
        for s in slot.sinks:
            row = [slot.database, str(slot.connections), *([str(slot.round)] if rounds else []), s.sink,
                   f"{s.expected:,}", f"{s.delivered:,}" + (f" (+{s.stray} outside the burst)" if s.stray else ""),
                   str(s.repeats), f"{s.lag_p50_ms:.0f}", f"{s.lag_p99_ms:.0f}", f"{s.lag_max_ms:.0f}",
                   fmt(s.caught_up_s, "{:.2f}"), fmt(s.metrics_lag_max)]
            out.append("| " + " | ".join(row) + " |")
    for key, shares in run.profiles.items():
        out += ["", f"Where the events-on server's CPU went ({'SQLite' if key == 'sqlite' else 'PostgreSQL'}, "
                f"{max(args.connections)} connections, one more burst under `py-spy record --gil`, not timed): "
                "shares of the samples of a thread holding the GIL, i.e. of the Python work (SQLite's and "
                "the sockets' work outside the GIL is not in them), per part of the server and then per "
                "function on top of the stack.", "", "| part or function | share of samples |", "|---|---|"]
        out += [f"| {name} | {share:.1%} |" for name, share in shares]
    if run.notes:
        out += ["", *[f"- {note}" for note in run.notes]]
    return "\n".join(out) + "\n"


def grouped(slots: list[Slot]) -> dict[tuple[str, int], list[Slot]]:
    """The slots per (database, connections), in run order."""
    groups: dict[tuple[str, int], list[Slot]] = {}
    for slot in slots:
        groups.setdefault((slot.database, slot.connections), []).append(slot)
    return groups


def merge_section(old_text: str, body: str) -> str:
    """``old_text`` with its Events section replaced by ``body`` (added at the end if it has none).

    The old section's subsection HAND_WRITTEN, if any, is kept at the end of the new one.
    """
    if not old_text.strip():
        return "# Benchmark results\n\n" + body
    found = re.search(rf"^## {SECTION}\n.*?(?=^## |\Z)", old_text, re.MULTILINE | re.DOTALL)
    if found is None:
        return old_text.rstrip("\n") + "\n\n" + body
    kept = found.group(0).partition(f"\n{HAND_WRITTEN}\n")
    if kept[1]:
        body += f"\n{HAND_WRITTEN}\n{kept[2].rstrip()}\n"
    tail = old_text[found.end():]
    return old_text[:found.start()] + body + ("\n" if tail else "") + tail


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    machine.ensure_tools()
    os.sched_setaffinity(0, {int(c) for c in args.wrk_cpus.split(",")})
    for label, url in (("NATS", args.nats_url), ("Redis", args.redis_url)):
        if not reachable(url):
            raise SystemExit(f"{label} is not reachable at {url}: the events benchmark needs both brokers")
    run = EventsRun(args)
    print(f"run directory: {run.dir}", flush=True)
    uvicorn = [str(PYTHON.parent / "uvicorn"), "--app-dir", str(BENCH_DIR), "--host", "127.0.0.1",
               "--port", "{port}", "--no-access-log", "--log-level", "warning"]
    fixed: Running | None = None
    try:
        databases = [("SQLite", *run.sqlite_urls())]
        if args.no_postgres:
            run.note("PostgreSQL skipped (--no-postgres)")
        elif (urls := run.postgres_urls()) is not None:
            databases.append(("PostgreSQL", *urls))
        run.background_load()
        fixed = run.start(Server("fixed", "fixed-JSON uvicorn app", "-", [*uvicorn, "baseline_fixed:app"],
                                 (WORKLOAD,), args.server_cpus, Keys("", ""), script="fixed"))
        for label, on_url, off_url in databases:
            try:
                run.database(label, on_url, off_url, fixed)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                run.note(f"{label}: {error}")
    finally:
        if fixed is not None:
            fixed.stop()
        run.cleanup()
        run.write()


def reachable(url: str) -> bool:
    """Whether something listens at the URL's host and port."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
