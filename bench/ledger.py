"""The ledger's own costs: integrator throughput, integrator lag, proofs on a large log.

``build`` makes a log of N entries the fast way: it writes N changes straight into the
changes table with one SQL statement (rows shaped as the capture triggers record a
``posts`` insert: the row's JSON as the data API renders it, a random 16-byte salt,
the actor), then runs ``Ledger.integrate`` in batches of 10,000 until every change is in
the tree, and prints the figures as JSON. Run it pinned to one core (run.py does so
with ``taskset``): the integrator, the SQLite writer thread and the reader threads all
share that core; PostgreSQL's own processes are not pinned.

    .venv/bin/python bench/ledger.py build --database sqlite:///bench/out/ledger.db \\
        --entries 1000000 --data-dir bench/out/ledger-data

``LagSampler`` watches a running server's ledger (run.py samples it during the insert
workload); ``time_proofs`` asks a server for proofs one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sqlite3
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
ORIGIN = "bench.ledgerbase.invalid/ledger"  # checkpoints' origin; servers of the run use it too

# One posts row as the SQLite capture trigger records it (json_object of the API's columns).
_SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + ?2 - 1)
INSERT INTO _ledgerbase_ledger_changes (id, time, table_name, op, pk, row_data, salt, actor)
SELECT i + 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'posts', 'insert', json_object('id', i + 1),
       json_object('id', i + 1, 'author_id', 1 + i % 1000, 'title', 'post ' || i, 'score', i % 1000,
                   'published', json(CASE WHEN i % 2 THEN 'true' ELSE 'false' END),
                   'created_at', '2026-01-01T00:00:00+00:00',
                   'user_id', '00000000-0000-4000-8000-' || printf('%012d', i % 1000)),
       randomblob(16), 'service_role'
FROM n
"""
# The same on PostgreSQL, numbered as the capture trigger numbers them (each change its own
# transaction, under a made-up transaction id far above any real one).
_POSTGRES_FILL = """
INSERT INTO ledgerbase.ledger_changes (seq, time, txid, table_name, op, pk, row_data, salt, actor)
SELECT i, clock_timestamp(), (4611686018427387904 + i)::text::xid8, 'posts', 'insert', jsonb_build_object('id', i + 1),
       jsonb_build_object('id', i + 1, 'author_id', 1 + i % 1000, 'title', 'post ' || i,
                          'score', i % 1000, 'published', i % 2 = 1,
                          'created_at', '2026-01-01T00:00:00+00:00',
                          'user_id', '00000000-0000-4000-8000-' || lpad((i % 1000)::text, 12, '0')),
       decode(md5(random()::text), 'hex'), 'service_role'
FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS i
"""


@dataclass(frozen=True, slots=True)
class Build:
    """What ``build`` measured."""

    database: str  # "sqlite" or "postgresql"
    entries: int
    fill_seconds: float
    integrate_seconds: float
    batches: int
    batch_ms_p50: float
    batch_ms_max: float
    cpus: str

    @property
    def leaves_per_second(self) -> float:
        return self.entries / self.integrate_seconds if self.integrate_seconds else 0.0


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


async def fill(url: str, start: int, count: int) -> None:
    """Write ``count`` numbered changes ``start``.. into the changes table, in chunks."""
    chunk = 100_000
    if is_postgres(url):
        import asyncpg

        connection = await asyncpg.connect(url)
        try:
            for first in range(start, start + count, chunk):
                await connection.execute(_POSTGRES_FILL, first, min(chunk, start + count - first))
        finally:
            await connection.close()
        return
    from ledgerbase.db.engine import sqlite_path

    connection = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        for first in range(start, start + count, chunk):
            connection.execute("BEGIN IMMEDIATE")
            connection.execute(_SQLITE_FILL, (first, min(chunk, start + count - first)))
            connection.execute("COMMIT")
    finally:
        connection.close()


async def build(url: str, entries: int, data_dir: Path) -> Build:
    """Migrate ``url``, fill ``entries`` changes after those already there, integrate them all."""
    from ledgerbase.db.engine import open_database
    from ledgerbase.db.migrate import migrate
    from ledgerbase.ledger.log import Ledger, load_or_create_signer

    data_dir.mkdir(parents=True, exist_ok=True)
    await migrate(url, None)
    database = open_database(url, readers=2, pool_size=2)
    await database.start()
    try:
        ledger = Ledger(database, load_or_create_signer(data_dir, ORIGIN), ORIGIN)
        numbered, published = await ledger.lag()
        started = time.perf_counter()
        await fill(url, numbered, entries)
        filled = time.perf_counter() - started
        batches: list[float] = []
        done = 0
        while True:
            began = time.perf_counter()
            appended = await ledger.integrate()
            if not appended:
                break
            batches.append(time.perf_counter() - began)
            done += appended
        numbered, published = await ledger.lag()
        if published != numbered:
            raise RuntimeError(f"integrated {published} of {numbered} changes")
    finally:
        await database.close()
    return Build(database="postgresql" if is_postgres(url) else "sqlite", entries=done,
                 fill_seconds=filled, integrate_seconds=sum(batches), batches=len(batches),
                 batch_ms_p50=statistics.median(batches) * 1000 if batches else 0.0,
                 batch_ms_max=max(batches, default=0.0) * 1000,
                 cpus=",".join(str(c) for c in sorted(os.sched_getaffinity(0))))


# -- lag of a running server ------------------------------------------------------------

_SQLITE_COUNTS = ("SELECT (SELECT coalesce(max(id), 0) FROM _ledgerbase_ledger_changes), "
                  "coalesce((SELECT size FROM _ledgerbase_ledger_state WHERE id = 1), 0)")
_SQLITE_AGE = ("SELECT (julianday('now') - julianday(time)) * 86400 "
               "FROM _ledgerbase_ledger_changes WHERE id = ? + 1")
_POSTGRES_COUNTS = ("SELECT (SELECT coalesce(max(seq) + 1, 0) FROM ledgerbase.ledger_changes), "
                    "coalesce((SELECT size FROM ledgerbase.ledger_state WHERE id = 1), 0)")
_POSTGRES_AGE = ("SELECT extract(epoch FROM clock_timestamp() - time)::float8 "
                 "FROM ledgerbase.ledger_changes WHERE seq >= $1 ORDER BY seq LIMIT 1")


class LagSampler:
    """Samples a server's integrator lag every ``interval`` seconds in a thread.

    Lag = the age of the oldest change that is numbered (committed) but not yet in the
    published tree, by the database's clock: how long a write waits to be provable;
    0 when the tree has every change. Reads the tables directly (read-only on SQLite).
    """

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, int, int, float]] = []  # (time, numbered, published, lag s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: str = ""

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def max_lag(self) -> float:
        return max((s[3] for s in self.samples), default=0.0)

    def _run(self) -> None:
        try:
            if is_postgres(self.url):
                asyncio.run(self._postgres())
            else:
                self._sqlite()
        except Exception as error:  # noqa: BLE001 - reported with the figures, not raised
            self.error = repr(error)

    def _record(self, numbered: int, published: int, age: float | None) -> None:
        self.samples.append((time.monotonic(), numbered, published,
                             max(0.0, age or 0.0) if numbered > published else 0.0))

    def _sqlite(self) -> None:
        from ledgerbase.db.engine import sqlite_path

        connection = sqlite3.connect(f"file:{sqlite_path(self.url)}?mode=ro", uri=True)
        try:
            while not self._stop.wait(self.interval):
                numbered, published = connection.execute(_SQLITE_COUNTS).fetchone()
                row = connection.execute(_SQLITE_AGE, (published,)).fetchone() \
                    if numbered > published else None
                self._record(numbered, published, row[0] if row else None)
        finally:
            connection.close()

    async def _postgres(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.url)
        try:
            while not self._stop.is_set():
                await asyncio.sleep(self.interval)
                numbered, published = await connection.fetchrow(_POSTGRES_COUNTS)
                age = await connection.fetchval(_POSTGRES_AGE, published) \
                    if numbered > published else None
                self._record(int(numbered), int(published), age)
        finally:
            await connection.close()


def drain(url: str, timeout: float = 60.0) -> float | None:
    """Seconds until the published tree holds every numbered change (None: not within timeout)."""
    started = time.monotonic()
    with LagSampler(url, interval=0.1) as sampler:
        while time.monotonic() - started < timeout:
            time.sleep(0.1)
            if sampler.samples and sampler.samples[-1][1] == sampler.samples[-1][2]:
                return time.monotonic() - started
            if sampler.error:
                return None
    return None


# -- proofs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofTiming:
    """Latency of one kind of proof asked one request at a time."""

    proof: str  # "inclusion" or "consistency"
    database: str
    size: int
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    rps: float | None = None  # with wrk, when measured
    # the server's own time (its /metrics histogram of the ledger route, over the timed
    # requests): the share served within each bucket bound, and the bound holding 99%
    server_within_ms: dict[str, float] | None = None
    server_p99_bound_ms: float | None = None


PROOF_ROUTE = 'method="GET",route="/ledger/v1/{path}"'


def ledger_histogram(client: httpx.Client) -> dict[float, float]:
    """The ledger route's cumulative request counts by bucket bound (ms; inf for +Inf)."""
    counts: dict[float, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("ledgerbase_http_request_duration_seconds_bucket{") and PROOF_ROUTE in line:
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            counts[float("inf") if bound == "+Inf" else float(bound) * 1000] = float(line.rsplit(" ", 1)[1])
    return counts


def server_share(before: dict[float, float], after: dict[float, float]) -> tuple[dict[str, float], float | None]:
    """(share of the requests in between served within each bound, the smallest bound with 99%)."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return {}, None
    shares = {f"{bound:g}": (after[bound] - before.get(bound, 0.0)) / total
              for bound in sorted(after) if bound != float("inf")}
    p99 = next((float(bound) for bound, share in shares.items() if share >= 0.99), None)
    return shares, p99


def proof_path(kind: str, chooser: random.Random, size: int) -> str:
    """A random proof request in a log of ``size`` entries."""
    if kind == "inclusion":
        tree = chooser.randint(2, size)
        return f"/ledger/v1/proof/inclusion?index={chooser.randrange(tree)}&size={tree}"
    second = chooser.randint(2, size)
    return f"/ledger/v1/proof/consistency?from={chooser.randint(1, second - 1)}&to={second}"


def check_proofs(base_url: str) -> str:
    """'' when a proof of each kind verifies against the served checkpoint, else the problem."""
    from ledgerbase.ledger import merkle

    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        lines = client.get("/ledger/v1/checkpoint").text.split("\n")
        size, root = int(lines[1]), base64.b64decode(lines[2])
        index = size // 3
        body = client.get(f"/ledger/v1/proof/inclusion?index={index}&size={size}").json()
        try:
            merkle.verify_inclusion(base64.b64decode(body["leaf_hash"]), index, size,
                                    [base64.b64decode(h) for h in body["hashes"]], root)
            first = size // 2
            old = client.get(f"/ledger/v1/proof/inclusion?index=0&size={first}").json()
            old_root = merkle.root_from_inclusion_proof(
                base64.b64decode(old["leaf_hash"]), 0, first, [base64.b64decode(h) for h in old["hashes"]])
            body = client.get(f"/ledger/v1/proof/consistency?from={first}&to={size}").json()
            merkle.verify_consistency(first, size, [base64.b64decode(h) for h in body["hashes"]],
                                      old_root, root)
        except (ValueError, KeyError) as error:
            return f"a proof did not verify: {error!r}"
    return ""


def time_proofs(base_url: str, kind: str, database: str, size: int, requests: int,
                seed: int = 4242) -> ProofTiming:
    """Ask ``requests`` random proofs of ``kind``, one at a time (after 20 unrecorded)."""
    chooser = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        before: dict[float, float] = {}
        for number in range(requests + 20):
            if number == 20:
                before = ledger_histogram(client)
            path = proof_path(kind, chooser, size)
            began = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - began
            if response.status_code != 200:
                errors += 1
            if number >= 20:
                latencies.append(elapsed * 1000)
        within, p99_bound = server_share(before, ledger_histogram(client))
    latencies.sort()
    return ProofTiming(proof=kind, database=database, size=size, requests=len(latencies),
                       p50_ms=latencies[len(latencies) // 2],
                       p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                       max_ms=latencies[-1], errors=errors, server_within_ms=within,
                       server_p99_bound_ms=p99_bound)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a large ledger and time its integration.")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="fill N changes with SQL, integrate them, print JSON")
    make.add_argument("--database", required=True, help="sqlite:///path or postgresql://...")
    make.add_argument("--entries", type=int, default=1_000_000)
    make.add_argument("--data-dir", type=Path, required=True, help="where the ledger key is kept")
    args = parser.parse_args(argv)
    result = asyncio.run(build(args.database, args.entries, args.data_dir))
    print("BENCH_LEDGER " + json.dumps(asdict(result) | {"leaves_per_second": result.leaves_per_second}))


if __name__ == "__main__":
    main()
