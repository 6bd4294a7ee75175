"""The log: the integrator turning captured changes into a signed, tiled Merkle tree, and the
reads the ledger's endpoints serve (tiles, bundles, proofs, entries, checkpoints).

One integrator at a time (a PostgreSQL advisory lock; SQLite has one writer), off the
request path: it reads the changes numbered after the tree's size, makes each an entry
(``ledgerbase.ledger.entry``), appends their leaf hashes at the tree's right edge
(``ledgerbase.ledger.tiles``), and writes the new tiles, entry bundles and signed
checkpoint in one transaction. It never publishes a checkpoint whose tree does not
extend the last one: the stored edge must hash to the stored root before anything is
appended, and the new tree is built from that edge.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from ledgerbase.db.engine import Database, PostgresDatabase, Transaction
from ledgerbase.errors import LedgerbaseError, UnavailableError
from ledgerbase.ledger import merkle, tiles
from ledgerbase.ledger.entry import entry_time, made_entry, row_digest
from ledgerbase.ledger.note import Signer, sign_note
from ledgerbase.security import load_or_create_secret_file

log = structlog.get_logger("ledgerbase.ledger")
_LOCK_KEY = 0x4C42_4C47  # "LBLG": one integrator per PostgreSQL database
BATCH = 10_000
_TILE_CACHE = 2048  # full tiles kept in memory for proofs, with their subtree rows (16 KiB each)


class LedgerError(LedgerbaseError):
    """The ledger cannot do what was asked (bad index, missing key, refused checkpoint)."""


@dataclass(frozen=True, slots=True)
class Head:
    """The last published checkpoint."""

    size: int
    root: bytes
    checkpoint: str
    published_at: float


def load_or_create_signer(data_dir: Path, origin: str, configured: str = "") -> Signer:
    """The checkpoint signing key: ``configured`` (a note signer key text), else the one kept in
    ``data_dir/ledger-key`` (mode 0600), generated on first start for ``origin``.

    Raises LedgerError with what to do when the key is unreadable or malformed.
    """
    text = configured
    if not text:
        path = data_dir / "ledger-key"
        try:
            text = load_or_create_secret_file(path, lambda: Signer.generate(origin).key().encode()).decode()
        except OSError as error:
            raise LedgerError(f"cannot read or create the ledger signing key {path}: {error.strerror}",
                              code="PGRST000", status=500,
                              hint="Check the data directory's permissions, or set LEDGERBASE_LEDGER_KEY.") from None
    try:
        return Signer.from_key(text.strip())
    except ValueError as error:
        raise LedgerError(f"the ledger signing key is not a valid note signer key: {error}", code="PGRST000",
                          status=500, hint="Delete the ledger-key file (a new key is made) or fix "
                                           "LEDGERBASE_LEDGER_KEY.") from None


def default_origin() -> str:
    """``<hostname>/ledgerbase``."""
    return f"{socket.gethostname()}/ledgerbase"


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """The checkpoint text (C2SP tlog-checkpoint): origin, size, base64 root."""
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def _build(size: int, rows: Sequence[Sequence[Any]], edge: tiles.TreeEdge) -> tuple[list[bytes], tiles.Integration]:
    """The entries of the changes numbered from ``size`` on (stopping at the first gap) and the
    tree grown by them."""
    entries: list[bytes] = []
    leaves: list[bytes] = []
    last_when: Any = None
    time_text = ""
    for offset, (seq, when, table, op, pk, row, salt, actor) in enumerate(rows):
        if int(seq) != size + offset:
            break  # numbered but not visible yet: the next round takes it
        if when != last_when:  # a transaction's changes share their commit time
            last_when, time_text = when, entry_time(when)
        data = orjson.loads(row) if row is not None and op != "delete" else None
        entry = made_entry(int(seq), time_text, str(table), str(op), orjson.loads(pk),
                           row_digest(bytes(salt), data), str(actor))
        entries.append(entry)
        leaves.append(merkle.leaf_hash(entry))
    return entries, tiles.integrate(edge, leaves)


class Queries:
    """The ledger's SQL for one dialect."""

    def __init__(self, database: Database) -> None:
        postgres = isinstance(database, PostgresDatabase)
        self.postgres = postgres
        p = database.dialect.placeholder
        schema = "ledgerbase.ledger_" if postgres else "_ledgerbase_ledger_"
        self.state = f"SELECT size, root, checkpoint, published_at FROM {schema}state WHERE id = 1"
        self.tiles = (f"SELECT level, idx, data FROM {schema}tiles WHERE level = {p(1)} AND idx = {p(2)}")
        # several tiles in one round trip: the levels and indexes as two arrays (a JSON pair on SQLite)
        self.many_tiles = (f"SELECT level, idx, data FROM {schema}tiles WHERE (level, idx) IN "
                           + ("(SELECT * FROM unnest($1::int[], $2::bigint[]))" if postgres else
                              "(SELECT l.value, i.value FROM json_each(?1) AS l JOIN json_each(?2) AS i "
                              "ON i.key = l.key)"))
        self.bundle = f"SELECT data FROM {schema}bundles WHERE idx = {p(1)}"
        if postgres:
            # changes are written numbered at COMMIT (ledgerbase.ledger.capture)
            self.changes = ("SELECT seq, time, table_name, op, pk::text, row_data::text, salt, actor "
                            "FROM ledgerbase.ledger_changes_from($1, $2)")
            self.pending = "SELECT coalesce(max(seq) + 1, 0) FROM ledgerbase.ledger_changes"
            self.forget_rows = ("UPDATE ledgerbase.ledger_changes SET row_data = NULL, old_data = NULL "
                                "WHERE seq >= $1 AND seq < $2 AND (row_data IS NOT NULL OR old_data IS NOT NULL)")
            self.history = ("SELECT seq, salt FROM ledgerbase.ledger_log WHERE table_name = $1 "
                            "AND pk = $2::jsonb AND seq < $3 ORDER BY seq")
        else:
            self.changes = (f"SELECT id - 1, time, table_name, op, pk, row_data, salt, actor "
                            f"FROM _ledgerbase_ledger_changes WHERE id > {p(1)} ORDER BY id LIMIT {p(2)}")
            self.pending = "SELECT coalesce(max(id), 0) FROM _ledgerbase_ledger_changes"
            self.forget_rows = (f"UPDATE _ledgerbase_ledger_changes SET row_data = NULL, old_data = NULL "
                                f"WHERE id > {p(1)} AND id <= {p(2)}")
            self.history = (f"SELECT id - 1, salt FROM _ledgerbase_ledger_changes WHERE table_name = {p(1)} "
                            f"AND json(pk) = json({p(2)}) AND id <= {p(3)} ORDER BY id")
        conflict = "ON CONFLICT (level, idx) DO UPDATE SET width = excluded.width, data = excluded.data"
        self.put_tile = (f"INSERT INTO {schema}tiles (level, idx, width, data) VALUES "
                         f"({p(1)}, {p(2)}, {p(3)}, {p(4)}) {conflict}")
        self.put_bundle = (f"INSERT INTO {schema}bundles (idx, width, data) VALUES ({p(1)}, {p(2)}, {p(3)}) "
                           f"ON CONFLICT (idx) DO UPDATE SET width = excluded.width, data = excluded.data")
        self.put_state = (f"INSERT INTO {schema}state (id, size, root, checkpoint, published_at) VALUES "
                          f"(1, {p(1)}, {p(2)}, {p(3)}, {p(4)}) ON CONFLICT (id) DO UPDATE SET size = excluded.size, "
                          f"root = excluded.root, checkpoint = excluded.checkpoint, "
                          f"published_at = excluded.published_at")
        self.cosignatures = f"SELECT line FROM {schema}cosignatures WHERE size = {p(1)} ORDER BY witness"
        self.put_cosignature = (f"INSERT INTO {schema}cosignatures (witness, size, line, received_at) VALUES "
                                f"({p(1)}, {p(2)}, {p(3)}, {p(4)}) ON CONFLICT (witness, size) DO UPDATE "
                                f"SET line = excluded.line, received_at = excluded.received_at")


class Ledger:
    """The ledger of one database: its integrator and its reads."""

    def __init__(self, database: Database, signer: Signer, origin: str, *, interval: float = 1.0,
                 keep_row_data: int = 10_000) -> None:
        self.database = database
        self.signer = signer
        self.origin = origin
        self.interval = interval
        self.queries = Queries(database)
        self._edge: tiles.TreeEdge | None = None
        self._task: asyncio.Task[None] | None = None
        self.head: Head | None = None
        # a change keeps its row's JSON until this many later entries are published (change
        # feeds read it); then only the digest and salt remain
        self.keep_row_data = keep_row_data
        self._forgotten = 0
        # proofs: the subtree rows of full tiles (tiles.subtree_rows), oldest dropped first
        self._tile_rows: dict[tuple[int, int], tuple[bytes, ...]] = {}
        self._edge_rows_of: tiles.TreeEdge | None = None
        self._edge_rows_cache: dict[tuple[int, int], tuple[bytes, ...]] = {}
        # for /metrics, refreshed every round: changes numbered, and since when some wait
        self.numbered = 0
        self.waiting_since: float | None = None

    # --- the integrator ------------------------------------------------------------------

    def start(self) -> None:
        """Run the integrator in the background."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop the integrator (an integration in flight finishes or rolls back)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            # rounds start every interval, however long one took: a change waits at most about
            # one interval plus one round (sleeping a whole interval after each round added the
            # round's time again, and the lag went past 2 s under load)
            started = time.monotonic()
            try:
                while await self.integrate() >= BATCH:
                    pass
                await self._observe()
            except UnavailableError:
                pass  # the database is away: try again next round
            except LedgerbaseError as error:
                log.error("ledger_integration_failed", error=error.message)
            except Exception:  # the integrator must outlive a bug: logged, retried next round
                log.exception("ledger_integration_failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def read_head(self) -> Head | None:
        """The last published checkpoint, or None before the first."""
        row = await self.database.fetch_one(self.queries.state, ())
        if row is None:
            return None
        published = row[3]
        stamp = published.timestamp() if isinstance(published, datetime) else datetime.fromisoformat(
            str(published)).timestamp()
        return Head(size=int(row[0]), root=bytes(row[1]), checkpoint=str(row[2]), published_at=stamp)

    async def _load_edge(self, head: Head | None) -> tiles.TreeEdge:
        size = head.size if head is not None else 0
        # read back from storage every round (a few partial tiles): a tile altered behind the
        # integrator's back stops publication at once
        stored: dict[tuple[int, int], bytes] = {}
        for tile in tiles.edge_tiles(size):
            row = await self.database.fetch_one(self.queries.tiles, (tile.level, tile.index))
            if row is not None:
                stored[(tile.level, tile.index)] = bytes(row[2])
        edge = tiles.TreeEdge.from_tiles(size, stored)
        if head is not None and edge.root() != head.root:
            raise LedgerError("the stored tiles do not hash to the published root: refusing to publish",
                              code="PGRST000", status=500)
        self._edge = edge
        return edge

    async def integrate(self, limit: int = BATCH) -> int:
        """Append the changes numbered after the tree's size; returns how many were appended."""
        head = await self.read_head()
        size = head.size if head is not None else 0
        rows = await self.database.fetch_all(self.queries.changes, (size, limit))
        if not rows and head is not None:
            if self._edge is None:
                await self._load_edge(head)  # proofs read the right edge from memory
            return 0
        edge = await self._load_edge(head)
        # hashing and canonical JSON are CPU work: off the event loop, so requests go on
        entries, grown = await asyncio.to_thread(_build, size, rows, edge)
        if not entries and head is not None:
            return 0
        new_size = grown.edge.size
        bundles = await self._bundles(size, entries)
        now = time.time()
        checkpoint = sign_note(checkpoint_body(self.origin, new_size, grown.root), [self.signer])
        published: Any = datetime.fromtimestamp(now, UTC)
        if not self.queries.postgres:
            published = published.isoformat()
        queries = self.queries

        async def work(tx: Transaction) -> bool:
            if queries.postgres:
                locked = await tx.fetch_all("SELECT pg_try_advisory_xact_lock($1)", (_LOCK_KEY,))
                if not locked[0][0]:
                    return False
            current = await tx.fetch_all(queries.state, ())
            if (int(current[0][0]) if current else 0) != size:
                return False  # another integrator got there first
            for tile, data in grown.tiles.items():
                await tx.fetch_all(queries.put_tile, (tile.level, tile.index, tile.width, data))
            for index, (width, data) in bundles.items():
                await tx.fetch_all(queries.put_bundle, (index, width, data))
            await tx.fetch_all(queries.put_state, (new_size, grown.root, checkpoint, published))
            # the rows' data served its purpose (the digest, change feeds); the live tables keep it
            if new_size - self.keep_row_data > self._forgotten:
                await tx.fetch_all(queries.forget_rows, (self._forgotten, new_size - self.keep_row_data))
            return True

        if not await self.database.write(work):
            self._edge = None
            return 0
        self._edge = grown.edge
        self._forgotten = max(self._forgotten, new_size - self.keep_row_data)
        self.head = Head(new_size, grown.root, checkpoint, now)
        return len(entries)

    async def _bundles(self, size: int, entries: Sequence[bytes]) -> dict[int, tuple[int, bytes]]:
        """The entry bundles that grow: index -> (width, bytes)."""
        edge = tiles.edge_bundle(size)
        partial = b""
        if edge is not None:
            row = await self.database.fetch_one(self.queries.bundle, (edge.index,))
            partial = bytes(row[0]) if row is not None else b""
        try:
            grown = tiles.grow_bundles(size, partial, entries)
        except tiles.TileError as error:
            raise LedgerError(f"the stored entries do not match the published tree: {error}",
                              code="PGRST000", status=500) from None
        return {bundle.index: (bundle.width, data) for bundle, data in grown.items()}

    async def _observe(self) -> None:
        numbered, size = await self.lag()
        self.numbered = numbered
        if self.head is None:
            self.head = await self.read_head()
        if numbered > size:
            self.waiting_since = self.waiting_since or time.time()
        else:
            self.waiting_since = None

    def register_metrics(self, gauge: Any) -> None:
        """Gauges of the ledger in /metrics (``gauge`` as ``Metrics.gauge``)."""
        gauge("ledgerbase_ledger_entries", "Entries in the last published checkpoint").set_function(
            lambda: self.head.size if self.head else 0)
        gauge("ledgerbase_ledger_pending_changes", "Committed changes not yet in a checkpoint").set_function(
            lambda: max(0, self.numbered - (self.head.size if self.head else 0)))
        gauge("ledgerbase_ledger_integration_lag_seconds",
              "How long the oldest committed change has waited for a checkpoint").set_function(
            lambda: time.time() - self.waiting_since if self.waiting_since else 0.0)
        gauge("ledgerbase_ledger_last_checkpoint_timestamp_seconds",
              "When the last checkpoint was published (Unix time)").set_function(
            lambda: self.head.published_at if self.head else 0.0)

    async def lag(self) -> tuple[int, int]:
        """(changes numbered, entries in the published tree)."""
        row = await self.database.fetch_one(self.queries.pending, ())
        head = await self.read_head()
        return int(row[0]) if row else 0, head.size if head else 0

    # --- reads ---------------------------------------------------------------------------

    async def checkpoint(self) -> str:
        """The latest signed checkpoint with the cosignatures witnesses gave it."""
        head = await self.read_head()
        if head is None:
            await self.integrate()
            head = await self.read_head()
            if head is None:
                raise UnavailableError("the ledger has no checkpoint yet", code="PGRST002")
        rows = await self.database.fetch_all(self.queries.cosignatures, (head.size,))
        return head.checkpoint + "".join(str(row[0]) for row in rows)

    async def tile(self, tile: tiles.Tile) -> bytes | None:
        """A tile at the width asked for (a prefix of the stored one), or None if it is not there."""
        row = await self.database.fetch_one(self.queries.tiles, (tile.level, tile.index))
        if row is None:
            return None
        data = bytes(row[2])
        want = tile.width * merkle.HASH_SIZE
        return data[:want] if len(data) >= want else None

    async def bundle(self, bundle: tiles.EntryBundle) -> bytes | None:
        """An entry bundle with the first ``width`` entries, or None if it has fewer."""
        row = await self.database.fetch_one(self.queries.bundle, (bundle.index,))
        if row is None:
            return None
        entries = tiles.decode_bundle(bytes(row[0]))
        if len(entries) < bundle.width:
            return None
        return tiles.encode_bundle(entries[:bundle.width])

    async def entry(self, index: int) -> bytes:
        """Entry ``index`` (canonical JSON bytes). Raises LedgerError 404 when not in the tree."""
        head = await self.read_head()
        if head is None or not 0 <= index < head.size:
            raise LedgerError(f"entry {index} is not in the log", code="PGRST116", status=404)
        data = await self.bundle(tiles.EntryBundle(index // tiles.TILE_WIDTH,
                                                   tiles.tile_width(0, index // tiles.TILE_WIDTH, head.size)))
        if data is None:
            raise UnavailableError("the entry's bundle is not stored yet", code="PGRST002")
        return tiles.decode_bundle(data)[index % tiles.TILE_WIDTH]

    async def _hashes(self, nodes: Sequence[merkle.Node], size: int) -> list[bytes]:
        """The hashes of ``nodes`` in the tree of ``size``, read from the subtree rows of their
        tiles: kept in memory for full tiles (they never change) and the right edge, the other
        tiles read in one query."""
        found: dict[tuple[int, int], tuple[bytes, ...]] = {}
        wanted = []
        edge = self._edge_rows()
        for tile in tiles.tiles_for_nodes(nodes, size):
            key = (tile.level, tile.index)
            rows = self._tile_rows.get(key) or edge.get(key)
            if rows is not None and len(rows[0]) >= tile.width * merkle.HASH_SIZE:
                found[key] = rows
            else:
                wanted.append(tile)
        if wanted:
            if len(wanted) == 1:  # the usual case once the upper tiles are cached: a plain key lookup
                read = await self.database.fetch_all(self.queries.tiles, (wanted[0].level, wanted[0].index))
            else:
                levels = [tile.level for tile in wanted]
                indexes = [tile.index for tile in wanted]
                params: tuple[Any, ...] = ((levels, indexes) if self.queries.postgres
                                           else (orjson.dumps(levels).decode(), orjson.dumps(indexes).decode()))
                read = await self.database.fetch_all(self.queries.many_tiles, params)
            stored = {(int(level), int(index)): bytes(data) for level, index, data in read}
            for tile in wanted:
                key = (tile.level, tile.index)
                data = stored.get(key)
                if data is None or len(data) < tile.width * merkle.HASH_SIZE:
                    raise UnavailableError(f"tile {tile.path()} is not stored yet", code="PGRST002")
                found[key] = tiles.subtree_rows(data)
                if len(data) == tiles.TILE_WIDTH * merkle.HASH_SIZE:
                    if len(self._tile_rows) >= _TILE_CACHE:
                        del self._tile_rows[next(iter(self._tile_rows))]  # the oldest
                    self._tile_rows[key] = found[key]
        hashes = []
        for node in nodes:
            level = node.level // tiles.TILE_HEIGHT
            index = (node.index << (node.level - level * tiles.TILE_HEIGHT)) // tiles.TILE_WIDTH
            hashes.append(tiles.node_hash_from_rows(node, level, index, found[(level, index)]))
        return hashes

    def _edge_rows(self) -> dict[tuple[int, int], tuple[bytes, ...]]:
        """The subtree rows of the partial tiles of the right edge this process integrated last
        (checked against the published root), by (level, index): a proof at any published size
        reads them (a narrower tile's complete subtrees are the same)."""
        edge = self._edge
        if edge is None:
            return {}
        if self._edge_rows_of is not edge:
            self._edge_rows_cache = {
                (level, (edge.size >> (tiles.TILE_HEIGHT * level)) // tiles.TILE_WIDTH): tiles.subtree_rows(data)
                for level, data in enumerate(edge.partial) if data}
            self._edge_rows_of = edge
        return self._edge_rows_cache

    async def _size(self, size: int | None) -> int:
        if size is not None and self.head is not None and 0 < size <= self.head.size:
            return size  # a size already published needs no look at the head
        head = await self.read_head()
        current = head.size if head is not None else 0
        if size is None:
            return current
        if not 0 < size <= current:
            raise LedgerError(f"tree size {size} is not between 1 and the published size {current}",
                              code="PGRST103", status=400)
        return size

    async def inclusion(self, index: int, size: int | None = None) -> tuple[bytes, list[bytes]]:
        """(leaf hash, inclusion proof) of entry ``index`` in the tree of ``size`` (default: latest)."""
        tree = await self._size(size)
        try:
            plan = merkle.inclusion_plan(index, tree)
        except merkle.ProofError as error:
            raise LedgerError(str(error), code="PGRST103", status=400) from None
        hashes = await self._hashes([merkle.Node(0, index), *plan.nodes], tree)
        return hashes[0], merkle.build_proof(plan, hashes[1:])

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """The consistency proof between the trees of ``first`` and ``second`` entries."""
        tree = await self._size(second)
        try:
            plan = merkle.consistency_plan(first, tree)
        except merkle.ProofError as error:
            raise LedgerError(str(error), code="PGRST103", status=400) from None
        return merkle.build_proof(plan, await self._hashes(plan.nodes, tree))

    async def root(self, size: int) -> bytes:
        """The root hash of the tree of ``size`` entries."""
        nodes = merkle.root_plan(await self._size(size))
        return merkle.fold_root(await self._hashes(nodes, size))

    async def history(self, table: str, pk: dict[str, Any]) -> list[tuple[int, bytes | None]]:
        """(seq, salt) of every entry about the row ``table``/``pk`` in the published tree."""
        head = await self.read_head()
        size = head.size if head is not None else 0
        rows = await self.database.fetch_all(self.queries.history, (table, orjson.dumps(pk).decode(), size))
        return [(int(seq), bytes(salt) if salt is not None else None) for seq, salt in rows]

    async def add_cosignature(self, witness: str, size: int, line: str) -> None:
        """Keep a witness's cosignature line of the checkpoint of ``size``."""
        now: Any = datetime.now(UTC)
        if not self.queries.postgres:
            now = now.isoformat()
        queries = self.queries

        async def work(tx: Transaction) -> None:
            await tx.fetch_all(queries.put_cosignature, (witness, size, line, now))

        await self.database.write(work)

