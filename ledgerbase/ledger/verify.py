"""Auditing a ledger: every tile and entry against a signed checkpoint, and live rows against the ledger.

Two sources, one audit:

- ``verify_url``: a server from the outside, over HTTP, as any tlog-tiles client
  would (``ledgerbase ledger verify --url``);
- ``verify_database``: the ledger tables of a database in one read-only snapshot,
  plus drift detection: each live row of a captured table is compared with the
  digest of its latest change (``ledgerbase ledger verify --database``).

The audit (``audit_tree``) downloads every entry bundle and tile of the tree,
checks each bundle's leaf hashes against the level-0 tile, recomputes every higher
tile from the level below, checks each entry is canonical with ``seq`` equal to its
index, and folds the root from the tiles; an earlier checkpoint (the state file's)
must be a prefix of the same tiles. Bundles are checked in worker processes when
the log is large: parsing an entry strictly costs about 60 us, a million of them
a minute on one core.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import multiprocessing
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import orjson

from ledgerbase.db.dialect import POSTGRES, SQLITE, quote_ident
from ledgerbase.db.engine import connect_sqlite, sqlite_path
from ledgerbase.ledger import merkle, tiles
from ledgerbase.ledger.capture import (
    POSTGRES_CAPTURED_TABLES,
    SQLITE_CHANGES,
    _row_json,
    captured_name,
    sqlite_captured_tables,
)
from ledgerbase.ledger.checkpoint import Checkpoint, CheckpointError, open_checkpoint, parse_checkpoint, verify_extends
from ledgerbase.ledger.entry import EntryError, canonical_json, parse_entry, row_digest
from ledgerbase.ledger.note import Ed25519Verifier, NoteError, parse_verifier_key

PARALLEL_BUNDLES = 32  # below this many bundles, worker processes cost more than they save


class VerifyError(Exception):
    """A check failed; the message says which one (tile path, entry index, key)."""

    @property
    def message(self) -> str:
        """What failed."""
        return str(self.args[0])


# --- the state file: what an auditor or witness saw last time ---------------------------------


@dataclass(frozen=True, slots=True)
class LogState:
    """The log key trusted and the last checkpoint verified (a signed note, as served)."""

    key: str
    checkpoint: str

    @classmethod
    def load(cls, path: Path) -> LogState | None:
        """The state in ``path``, or None if there is no such file. Raises VerifyError if it is unreadable."""
        try:
            value = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as error:
            raise VerifyError(f"cannot read the state file {path}: {error}") from None
        if not isinstance(value, dict) or not isinstance(value.get("key"), str) \
                or not isinstance(value.get("checkpoint"), str):
            raise VerifyError(f"the state file {path} is not a ledger state (key, checkpoint)")
        return cls(value["key"], value["checkpoint"])

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically (a temporary file renamed into place)."""
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(orjson.dumps({"key": self.key, "checkpoint": self.checkpoint},
                                           option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)

    def parsed(self, verifier: Ed25519Verifier) -> Checkpoint:
        """The checkpoint kept, checked again with the log's key."""
        try:
            checkpoint, _ = open_checkpoint(self.checkpoint, [verifier])
        except (NoteError, CheckpointError) as error:
            raise VerifyError(f"the state file's checkpoint does not verify: {error}") from None
        return checkpoint


def trusted_key(served: str, given: str | None, state: LogState | None) -> Ed25519Verifier:
    """The log key to verify with: ``given``, else the state's, else (first use) the one served.

    Raises VerifyError if the keys disagree: the log changed its key, or the key given
    is not the one the state file trusted.
    """
    if given and state is not None and given != state.key:
        raise VerifyError(f"the key given ({given}) is not the one the state file trusts ({state.key})")
    trusted = given or (state.key if state is not None else served)
    if served and served != trusted:
        raise VerifyError(f"the log's key changed: it serves {served}, trusted is {trusted}")
    try:
        verifier = parse_verifier_key(trusted)
    except NoteError as error:
        raise VerifyError(f"not a log verifier key: {trusted} ({error})") from None
    if not isinstance(verifier, Ed25519Verifier):
        raise VerifyError(f"{trusted} is a witness key, not a log key")
    return verifier


def open_signed_checkpoint(signed: str, verifier: Ed25519Verifier) -> Checkpoint:
    """The checkpoint of a signed note, verified with the log's key. Raises VerifyError."""
    try:
        checkpoint, _ = open_checkpoint(signed, [verifier])
    except (NoteError, CheckpointError) as error:
        raise VerifyError(f"the checkpoint does not verify with {verifier.key()}: {error}") from None
    return checkpoint


def check_extends(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check ``new`` extends ``old`` by ``proof``; raises VerifyError saying how it does not."""
    try:
        verify_extends(old, new, proof)
    except (CheckpointError, merkle.ProofError) as error:
        raise VerifyError(f"the checkpoint of size {new.size} is not consistent with the earlier one "
                          f"of size {old.size}: {error}") from None


# --- the audit --------------------------------------------------------------------------------


class TileSource(Protocol):
    """Where the audit reads tiles and entry bundles from (a server, a database)."""

    async def read(self, item: tiles.Tile | tiles.EntryBundle) -> bytes:
        """The bytes of ``item`` at its width. Raises VerifyError if it cannot be read."""
        ...


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the drift check needs of an entry."""

    seq: int
    table: str
    op: str
    pk: bytes  # canonical JSON
    digest: str


@dataclass(slots=True)
class Audit:
    """What ``audit_tree`` checked, and the entries asked for."""

    size: int
    bundles: int = 0
    tiles: int = 0
    entries: dict[int, LedgerEntry] = field(default_factory=dict)


def audit_steps(size: int) -> int:
    """How many bundles and tiles the audit of a tree of ``size`` reads (for a progress bar)."""
    steps = 0
    level = 0
    while size >> (tiles.TILE_HEIGHT * level):
        count = size >> (tiles.TILE_HEIGHT * level)
        steps += -(-count // tiles.TILE_WIDTH) * (2 if level == 0 else 1)
        level += 1
    return steps


def check_bundle(index: int, width: int, bundle: bytes, tile: bytes,
                 wanted: Sequence[int] = ()) -> tuple[bytes | None, list[LedgerEntry]]:
    """Check entry bundle ``index`` against level-0 tile ``index`` (both at ``width``).

    Returns the tile's root when it is full (a hash of the level above) and the
    entries ``wanted`` (by seq). Raises VerifyError naming the entry or hash that fails.
    Pure and picklable: it runs in worker processes.
    """
    path = tiles.EntryBundle(index, width).path()
    try:
        entries = tiles.decode_bundle(bundle)
    except tiles.TileError as error:
        raise VerifyError(f"{path}: {error}") from None
    if len(entries) != width:
        raise VerifyError(f"{path} holds {len(entries)} entries, not {width}")
    first = index * tiles.TILE_WIDTH
    leaves = []
    found = []
    want = set(wanted)
    for offset, data in enumerate(entries):
        seq = first + offset
        try:
            entry = parse_entry(data)
        except EntryError as error:
            raise VerifyError(f"entry {seq} ({path}): {error}") from None
        if entry.seq != seq:
            raise VerifyError(f"entry {seq} ({path}) says it is entry {entry.seq}")
        if seq in want:
            found.append(LedgerEntry(seq, entry.table, entry.op, canonical_json(entry.pk), entry.digest))
        leaves.append(merkle.leaf_hash(data))
    expected = b"".join(leaves)
    if tile != expected:
        tile_path = tiles.Tile(0, index, width).path()
        if len(tile) != len(expected):
            raise VerifyError(f"{tile_path} is {len(tile)} bytes, not {len(expected)}")
        bad = next(i for i in range(width) if tile[i * 32:(i + 1) * 32] != leaves[i])
        raise VerifyError(f"{tile_path}: hash {bad} is not the leaf hash of entry {first + bad} in {path}")
    return (merkle.perfect_root(leaves) if width == tiles.TILE_WIDTH else None), found


async def _bounded(jobs: Iterable[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run ``jobs`` with at most ``limit`` at a time; the first failure cancels the rest and is raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(run(job))
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None


@contextlib.contextmanager
def _executor(bundles: int) -> Iterator[Executor | None]:
    """Worker processes for a large log, none for a small one."""
    if bundles < PARALLEL_BUNDLES or (os.cpu_count() or 1) < 2:
        yield None
        return
    # spawn: the parent runs threads (HTTP, SQLite) that a fork would copy mid-flight
    with ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


async def audit_tree(source: TileSource, checkpoint: Checkpoint, *, earlier: Checkpoint | None = None,
                     wanted: Iterable[int] = (), concurrency: int = 8,
                     progress: Callable[[int], None] | None = None) -> Audit:
    """Check every entry bundle and tile of the tree of ``checkpoint`` against its root.

    ``earlier`` (a checkpoint of the same log seen before) must be the tree of its
    size in the same tiles. ``wanted``: the seqs whose entries to return. Raises
    VerifyError at the first failure. Reads ``audit_steps(size)`` items, ``concurrency``
    at a time.
    """
    size = checkpoint.size
    audit = Audit(size)
    nodes = merkle.root_plan(size)
    if earlier is not None and 0 < earlier.size <= size:
        nodes += merkle.root_plan(earlier.size)
    kept: dict[tuple[int, int], bytes] = {}  # the tiles the roots are read from
    keep = {(tile.level, tile.index) for tile in tiles.tiles_for_nodes(nodes, size)}
    by_bundle: dict[int, list[int]] = {}
    for seq in wanted:
        if 0 <= seq < size:
            by_bundle.setdefault(seq // tiles.TILE_WIDTH, []).append(seq)
    count = -(-size // tiles.TILE_WIDTH)
    parents: list[bytes | None] = [None] * count
    loop = asyncio.get_running_loop()

    with _executor(count) as executor:

        def bundle_job(index: int) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                width = tiles.tile_width(0, index, size)
                bundle, tile = await asyncio.gather(source.read(tiles.EntryBundle(index, width)),
                                                    source.read(tiles.Tile(0, index, width)))
                parent, found = await loop.run_in_executor(
                    executor, check_bundle, index, width, bundle, tile, tuple(by_bundle.get(index, ())))
                parents[index] = parent
                for entry in found:
                    audit.entries[entry.seq] = entry
                if (0, index) in keep:
                    kept[(0, index)] = tile
                audit.bundles += 1
                audit.tiles += 1
                if progress is not None:
                    progress(2)
            return job

        await _bounded((bundle_job(index) for index in range(count)), concurrency)

    # each level above: its hashes are the roots of the full tiles below
    row = b"".join(parent for parent in parents if parent is not None)
    level = 1
    while size >> (tiles.TILE_HEIGHT * level):
        expected_row = row
        width_total = size >> (tiles.TILE_HEIGHT * level)
        if len(expected_row) != width_total * merkle.HASH_SIZE:
            raise VerifyError(f"level {level} should hold {width_total} hashes, the tiles below give "
                              f"{len(expected_row) // merkle.HASH_SIZE}")
        served: dict[int, bytes] = {}

        def tile_job(level: int, index: int, served: dict[int, bytes]) -> Callable[[], Awaitable[None]]:
            async def job() -> None:
                served[index] = await source.read(tiles.Tile(level, index, tiles.tile_width(level, index, size)))
                audit.tiles += 1
                if progress is not None:
                    progress(1)
            return job

        await _bounded((tile_job(level, index, served) for index in range(-(-width_total // tiles.TILE_WIDTH))),
                       concurrency)
        next_row = []
        for index in sorted(served):
            width = tiles.tile_width(level, index, size)
            want = expected_row[index * tiles.TILE_WIDTH * 32:(index * tiles.TILE_WIDTH + width) * 32]
            if served[index] != want:
                raise VerifyError(f"{tiles.Tile(level, index, width).path()} does not match the tiles below it")
            if (level, index) in keep:
                kept[(level, index)] = served[index]
            if width == tiles.TILE_WIDTH:
                next_row.append(merkle.perfect_root(tiles.split_hashes(served[index])))
        row = b"".join(next_row)
        level += 1

    root = merkle.fold_root(tiles.read_node_hashes(merkle.root_plan(size), kept))
    if root != checkpoint.root:
        raise VerifyError(f"the tiles hash to root {_b64(root)}, the checkpoint of size {size} says "
                          f"{_b64(checkpoint.root)}")
    if earlier is not None:
        if earlier.origin != checkpoint.origin:
            raise VerifyError(f"the checkpoint is of {checkpoint.origin!r}, the earlier one of {earlier.origin!r}")
        if earlier.size > size:
            raise VerifyError(f"the tree shrank: {size} entries, the earlier checkpoint had {earlier.size}")
        old_root = merkle.fold_root(tiles.read_node_hashes(merkle.root_plan(earlier.size), kept))
        if old_root != earlier.root:
            raise VerifyError(f"inconsistent history: the first {earlier.size} entries now hash to "
                              f"{_b64(old_root)}, the earlier checkpoint says {_b64(earlier.root)}")
    return audit


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


# --- from the outside: a server over HTTP -----------------------------------------------------


class HttpSource:
    """Tiles and bundles from a server's ``/ledger/v1``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def read(self, item: tiles.Tile | tiles.EntryBundle) -> bytes:
        """GET ``/ledger/v1/<tlog-tiles path>``. Raises VerifyError unless it answers 200."""
        path = item.path()
        try:
            async with self.client.stream("GET", path) as response:
                data = await response.aread()
        except httpx.HTTPError as error:
            raise VerifyError(f"{path}: {error}") from None
        if response.status_code != 200:
            raise VerifyError(f"{path}: HTTP {response.status_code}")
        return data


@dataclass(frozen=True, slots=True)
class UrlReport:
    """A successful audit of a server."""

    checkpoint: Checkpoint
    signed: str  # the checkpoint as served (to keep in the state file)
    earlier: Checkpoint | None
    key: str
    audit: Audit


def _counter(total: int, progress: Callable[[int, int], None] | None) -> Callable[[int], None]:
    """A step counter reporting (done, total) to ``progress`` after each step."""
    done = 0

    def advance(step: int) -> None:
        nonlocal done
        done += step
        if progress is not None:
            progress(done, total)

    return advance


async def get_text(client: httpx.AsyncClient, path: str) -> str:
    """The text of a 200 answer to GET ``path``; VerifyError otherwise."""
    try:
        response = await client.get(path)
    except httpx.HTTPError as error:
        raise VerifyError(f"{path}: {error}") from None
    if response.status_code != 200:
        raise VerifyError(f"{path}: HTTP {response.status_code}")
    return response.text


async def fetch_consistency(client: httpx.AsyncClient, first: int, second: int) -> list[bytes]:
    """The server's consistency proof between its trees of ``first`` and ``second`` entries."""
    path = f"proof/consistency?from={first}&to={second}"
    try:
        hashes = orjson.loads(await get_text(client, path))["hashes"]
        return [base64.b64decode(value, validate=True) for value in hashes]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise VerifyError(f"{path}: not a consistency proof ({error})") from None


def ledger_client(url: str, concurrency: int = 8) -> httpx.AsyncClient:
    """An HTTP client for the ``/ledger/v1`` of the server at ``url``."""
    base = url.rstrip("/")
    if not base.endswith("/ledger/v1"):
        base += "/ledger/v1"
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    return httpx.AsyncClient(base_url=base + "/", timeout=60, limits=limits,
                             transport=httpx.AsyncHTTPTransport(retries=2, limits=limits))


async def verify_url(url: str, *, state: LogState | None = None, key: str | None = None, concurrency: int = 8,
                     progress: Callable[[int, int], None] | None = None) -> UrlReport:
    """Audit the server at ``url``: its key (trust on first use), checkpoint, every tile and entry,
    and consistency with ``state``'s checkpoint. Raises VerifyError at the first failure.

    ``progress(done, total)`` is called as bundles and tiles are checked.
    """
    async with ledger_client(url, concurrency) as client:
        served = (await get_text(client, "key")).strip()
        verifier = trusted_key(served, key, state)
        signed = await get_text(client, "checkpoint")
        checkpoint = open_signed_checkpoint(signed, verifier)
        earlier = state.parsed(verifier) if state is not None else None
        if earlier is not None and earlier.size > 0 and earlier.size <= checkpoint.size:
            check_extends(earlier, checkpoint, await fetch_consistency(client, earlier.size, checkpoint.size))
        elif earlier is not None:
            check_extends(earlier, checkpoint, [])  # a shrunk tree or another origin: says which
        advance = _counter(audit_steps(checkpoint.size), progress)
        audit = await audit_tree(HttpSource(client), checkpoint, earlier=earlier, concurrency=concurrency,
                                 progress=advance)
    return UrlReport(checkpoint, signed, earlier, verifier.key(), audit)


# --- from the database: the ledger tables and the live rows -----------------------------------


class Snapshot(Protocol):
    """Read-only queries on one consistent snapshot of a database."""

    postgres: bool

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of ``sql``."""
        ...


class _SqliteSnapshot:
    postgres = False

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        return list(self.connection.execute(sql, tuple(params)).fetchall())


class _PostgresSnapshot:
    postgres = True

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.lock = asyncio.Lock()  # one query at a time on a connection

    async def fetch_all(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        async with self.lock:
            return [tuple(record) for record in await self.connection.fetch(sql, *params)]


@contextlib.asynccontextmanager
async def open_snapshot(url: str) -> AsyncIterator[Snapshot]:
    """A read-only snapshot of the database at ``url`` (sqlite:/// or postgresql://).

    Raises VerifyError if it cannot be opened.
    """
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.is_file():
            raise VerifyError(f"no SQLite database at {path}")
        try:
            connection = connect_sqlite(path, readonly=True)
        except sqlite3.Error as error:
            raise VerifyError(f"cannot open {path}: {error}") from None
        try:
            connection.execute("BEGIN")  # one snapshot for every read (WAL)
            yield _SqliteSnapshot(connection)
        finally:
            connection.close()
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            pg = await asyncpg.connect(url, timeout=10, server_settings={"application_name": "ledgerbase-verify"})
        except (OSError, asyncpg.PostgresError) as error:
            raise VerifyError(f"cannot connect to PostgreSQL: {error}") from None
        try:
            async with pg.transaction(isolation="repeatable_read", readonly=True):
                yield _PostgresSnapshot(pg)
        finally:
            await pg.close()
    else:
        raise VerifyError("the database URL must start with sqlite:/// or postgresql://")


class DatabaseSource:
    """Tiles and bundles from the ledger tables, at the width asked for."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        prefix = "ledgerbase.ledger_" if snapshot.postgres else "_ledgerbase_ledger_"
        p = (POSTGRES if snapshot.postgres else SQLITE).placeholder
        self.tile_sql = f"SELECT data FROM {prefix}tiles WHERE level = {p(1)} AND idx = {p(2)}"
        self.bundle_sql = f"SELECT data FROM {prefix}bundles WHERE idx = {p(1)}"

    async def read(self, item: tiles.Tile | tiles.EntryBundle) -> bytes:
        """The stored tile or bundle cut to ``item``'s width. Raises VerifyError if missing or too short."""
        if isinstance(item, tiles.Tile):
            rows = await self.snapshot.fetch_all(self.tile_sql, (item.level, item.index))
            data = bytes(rows[0][0]) if rows else b""
            if len(data) < item.width * merkle.HASH_SIZE:
                raise VerifyError(f"{item.path()} is missing from the ledger tables or too short")
            return data[:item.width * merkle.HASH_SIZE]
        rows = await self.snapshot.fetch_all(self.bundle_sql, (item.index,))
        try:
            entries = tiles.decode_bundle(bytes(rows[0][0])) if rows else []
        except tiles.TileError as error:
            raise VerifyError(f"{item.path()}: {error}") from None
        if len(entries) < item.width:
            raise VerifyError(f"{item.path()} is missing from the ledger tables or holds too few entries")
        return tiles.encode_bundle(entries[:item.width])


@dataclass(frozen=True, slots=True)
class Drift:
    """A row changed behind Ledgerbase's back: ``inserted`` (no change records it), ``changed``
    (its digest differs from its latest change's) or ``deleted`` (gone, its latest change is not a delete)."""

    kind: str
    table: str
    pk: dict[str, Any]

    def line(self) -> str:
        """``changed accounts {"id":3}``."""
        return f"{self.kind} {self.table} {canonical_json(self.pk).decode()}"


@dataclass(frozen=True, slots=True)
class _Change:
    seq: int
    op: str
    pk: dict[str, Any]
    row: bytes | None  # JSON text, until integrated
    salt: bytes | None


@dataclass(frozen=True, slots=True)
class _TableRows:
    name: str  # as in entries
    live: dict[bytes, tuple[dict[str, Any], Any]]  # canonical pk -> (pk, row)
    latest: dict[bytes, _Change]  # canonical pk -> latest change


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    """The ledger tables verified; ``drift`` lists the rows that do not match it."""

    checkpoint: Checkpoint
    audit: Audit
    rows: int
    drift: tuple[Drift, ...]


def _json(value: Any) -> Any:
    if value is None:
        return None
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _latest(rows: Iterable[Sequence[Any]]) -> dict[bytes, _Change]:
    latest: dict[bytes, _Change] = {}
    for seq, op, pk, row, salt in rows:
        key = _json(pk)
        latest[canonical_json(key)] = _Change(int(seq), str(op), key, row.encode() if isinstance(row, str) else row,
                                              bytes(salt) if salt is not None else None)
    return latest


async def _postgres_tables(snapshot: Snapshot) -> list[_TableRows]:
    out = []
    for schema, table, key in await snapshot.fetch_all(POSTGRES_CAPTURED_TABLES, ()):
        name = table if schema == "public" else f"{schema}.{table}"
        columns = list(key)
        pk = ("to_jsonb(_r)" if not columns else "jsonb_build_object(" + ", ".join(
            f"${i}::text, to_jsonb(_r) -> ${i}::text" for i in range(1, len(columns) + 1)) + ")")
        rows = await snapshot.fetch_all(
            f"SELECT ({pk})::text, to_jsonb(_r)::text FROM {quote_ident(schema)}.{quote_ident(table)} AS _r", columns)
        changes = await snapshot.fetch_all(
            "SELECT seq, op, pk::text, row_data::text, salt FROM ledgerbase.ledger_log "
            "WHERE table_name = $1 ORDER BY seq", (name,))
        out.append(_table_rows(name, rows, changes))
    return out


async def _sqlite_tables(snapshot: _SqliteSnapshot) -> list[_TableRows]:
    out = []
    for table in sqlite_captured_tables(snapshot.connection):
        name = captured_name(table)
        key = table.primary_key or tuple(c.name for c in table.columns)
        pk = "json_object(" + ", ".join(f"?, \"_r\".{quote_ident(c)}" for c in key) + ")"
        rows = await snapshot.fetch_all(
            f"SELECT {pk}, {_row_json(table, '_r')} FROM main.{quote_ident(table.name)} AS \"_r\"", key)
        changes = await snapshot.fetch_all(
            f"SELECT id - 1, op, pk, row_data, salt FROM {SQLITE_CHANGES} WHERE table_name = ? ORDER BY id",
            (name,))
        out.append(_table_rows(name, rows, changes))
    return out


def _table_rows(name: str, rows: Iterable[Sequence[Any]], changes: Iterable[Sequence[Any]]) -> _TableRows:
    live = {}
    for pk_text, row_text in rows:
        pk = _json(pk_text)
        live[canonical_json(pk)] = (pk, _json(row_text))
    return _TableRows(name, live, _latest(changes))


def find_drift(tables: Sequence[_TableRows], entries: dict[int, LedgerEntry], size: int) -> list[Drift]:
    """The rows that differ from their latest change: that change's entry digest if it is in the
    tree of ``size``, else the digest of the change's own row data.

    Raises VerifyError if an entry is not about the change recorded for it.
    """
    drift = []
    for table in tables:
        for key, (pk, row) in table.live.items():
            change = table.latest.get(key)
            if change is None or change.op == "delete":
                drift.append(Drift("inserted", table.name, pk))
                continue
            if change.seq < size:
                entry = entries.get(change.seq)
                if entry is None or (entry.table, entry.op, entry.pk) != (table.name, change.op, key):
                    raise VerifyError(f"entry {change.seq} is not the {change.op} of {table.name} "
                                      f"{key.decode()} the changes table records")
                expected = entry.digest
            elif change.row is not None and change.salt is not None:
                expected = row_digest(change.salt, orjson.loads(change.row))
            else:
                expected = ""
            if change.salt is None or row_digest(change.salt, row) != expected:
                drift.append(Drift("changed", table.name, pk))
        for key, change in table.latest.items():
            if change.op != "delete" and key not in table.live:
                drift.append(Drift("deleted", table.name, change.pk))
    return drift


async def verify_database(url: str, *, key: str | None = None, concurrency: int = 8,
                          progress: Callable[[int, int], None] | None = None) -> DatabaseReport:
    """Audit the ledger tables of the database at ``url`` and compare its live rows with the ledger.

    ``key``: the log's verifier key, to check the stored checkpoint's signature too.
    Raises VerifyError if the ledger tables do not verify; drift is reported, not raised.
    """
    async with open_snapshot(url) as snapshot:
        state_sql = ("SELECT size, root, checkpoint FROM ledgerbase.ledger_state WHERE id = 1" if snapshot.postgres
                     else "SELECT size, root, checkpoint FROM _ledgerbase_ledger_state WHERE id = 1")
        try:
            state = await snapshot.fetch_all(state_sql, ())
        except (sqlite3.Error, asyncpg.PostgresError) as error:
            raise VerifyError(f"no ledger tables in this database ({error})") from None
        if state:
            size, root, signed = int(state[0][0]), bytes(state[0][1]), str(state[0][2])
            checkpoint = _stored_checkpoint(signed, key)
            if (checkpoint.size, checkpoint.root) != (size, root):
                raise VerifyError(f"the stored checkpoint (size {checkpoint.size}) is not the stored tree head "
                                  f"(size {size})")
        else:
            checkpoint = Checkpoint("(no checkpoint yet)", 0, merkle.EMPTY_ROOT)
        if isinstance(snapshot, _SqliteSnapshot):
            tables = await _sqlite_tables(snapshot)
        else:
            tables = await _postgres_tables(snapshot)
        wanted = {change.seq for table in tables for change in table.latest.values()
                  if change.seq < checkpoint.size}
        advance = _counter(audit_steps(checkpoint.size), progress)
        audit = await audit_tree(DatabaseSource(snapshot), checkpoint, wanted=wanted, concurrency=concurrency,
                                 progress=advance)
        drift = find_drift(tables, audit.entries, checkpoint.size)
    return DatabaseReport(checkpoint, audit, sum(len(table.live) for table in tables), tuple(drift))


def _stored_checkpoint(signed: str, key: str | None) -> Checkpoint:
    if key:
        try:
            verifier = parse_verifier_key(key)
        except NoteError as error:
            raise VerifyError(f"not a log verifier key: {key} ({error})") from None
        if not isinstance(verifier, Ed25519Verifier):
            raise VerifyError(f"{key} is a witness key, not a log key")
        return open_signed_checkpoint(signed, verifier)
    body = signed.partition("\n\n")[0]
    try:
        return parse_checkpoint(body + "\n")
    except CheckpointError as error:
        raise VerifyError(f"the stored checkpoint is malformed: {error}") from None

