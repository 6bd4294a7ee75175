"""C2SP tlog-tiles: tile paths, hashes read from tiles, entry bundles, incremental integration.

A tile at level ``L`` with index ``N`` holds up to 256 consecutive hashes of tree
level ``8 * L`` (``Node(8 * L, 256 * N + i)``), 32 bytes each; the hashes of the 7
tree levels between two tile levels are recomputed inside a tile when needed (as
golang.org/x/mod/sumdb/tlog's HashFromTile does). The rightmost tile of a level is
*partial* (1-255 hashes) and grows; a stored tile at any width serves every
narrower width as its prefix, since a level's hashes never change once written.

Everything here is pure: the caller fetches tiles, passes their bytes in and
stores what comes back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledgerbase.ledger.merkle import EMPTY_ROOT, HASH_SIZE, Node, fold_root, perfect_root

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF


class TileError(ValueError):
    """A tile path, tile or entry bundle is malformed or does not fit the tree."""


# --- paths --------------------------------------------------------------------------------


def _encode_index(index: int) -> str:
    """``1234067`` -> ``x001/x234/067``: zero-padded 3-digit elements, all but the last x-prefixed."""
    if index < 0:
        raise TileError(f"negative tile index {index}")
    parts = []
    while True:
        parts.append(f"{index % 1000:03d}")
        index //= 1000
        if index == 0:
            break
    return "/".join([*("x" + p for p in reversed(parts[1:])), parts[0]])


_INDEX = r"(?P<index>(?:x\d{3}/)*\d{3})"
_WIDTH = r"(?:\.p/(?P<width>[1-9]\d{0,2}))?"
_TILE_PATH = re.compile(r"tile/(?P<level>0|[1-9]\d?)/" + _INDEX + _WIDTH)
_BUNDLE_PATH = re.compile(r"tile/entries/" + _INDEX + _WIDTH)


def _decode_index(text: str) -> int:
    parts = text.split("/")
    if len(parts) > 1 and parts[0] == "x000":  # no leading zero elements: one index, one path
        raise TileError(f"non-canonical tile index {text!r}")
    index = int("".join(p.removeprefix("x") for p in parts))
    if index >= 1 << 64:  # tree sizes are uint64
        raise TileError(f"tile index {index} out of range")
    return index


def _decode_width(text: str | None) -> int:
    if text is None:
        return TILE_WIDTH
    width = int(text)
    if not 0 < width < TILE_WIDTH:
        raise TileError(f"partial tile width {width} out of range")
    return width


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    """Tile ``index`` of tile level ``level`` (tree level ``8 * level``) with ``width`` hashes."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def path(self) -> str:
        """``tile/{L}/{N}[.p/{W}]`` as tlog-tiles serves it."""
        suffix = f".p/{self.width}" if self.width < TILE_WIDTH else ""
        return f"tile/{self.level}/{_encode_index(self.index)}{suffix}"


@dataclass(frozen=True, slots=True, order=True)
class EntryBundle:
    """Entry bundle ``index`` (leaves ``256 * index`` on) with ``width`` entries."""

    index: int
    width: int = TILE_WIDTH

    def path(self) -> str:
        """``tile/entries/{N}[.p/{W}]`` as tlog-tiles serves it."""
        suffix = f".p/{self.width}" if self.width < TILE_WIDTH else ""
        return f"tile/entries/{_encode_index(self.index)}{suffix}"


def parse_path(path: str) -> Tile | EntryBundle:
    """The tile or entry bundle a tlog-tiles path names (without the URL prefix).

    Raises ``TileError`` for anything the spec does not allow (leading zeroes,
    level above 63, width 0 or 256 and above, missing ``x`` prefixes).
    """
    match = _BUNDLE_PATH.fullmatch(path)
    if match:
        return EntryBundle(_decode_index(match["index"]), _decode_width(match["width"]))
    match = _TILE_PATH.fullmatch(path)
    if match and int(match["level"]) <= MAX_LEVEL:
        return Tile(int(match["level"]), _decode_index(match["index"]), _decode_width(match["width"]))
    raise TileError(f"not a tile path: {path!r}")


# --- which tiles a tree of a given size has -----------------------------------------------


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile (``level``, ``index``) holds in a tree of ``size`` leaves (0: none yet)."""
    count = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def tile_for_node(node: Node, size: int) -> Tile:
    """The tile, at its width in a tree of ``size``, from which ``node``'s hash is read.

    Raises ``TileError`` if the node is not a complete subtree of that tree.
    """
    if node.end > size:
        raise TileError(f"{node} is not complete in a tree of size {size}")
    level = node.level // TILE_HEIGHT
    # the node's first hash on the tile's bottom row
    first = node.index << (node.level - level * TILE_HEIGHT)
    index = first // TILE_WIDTH
    return Tile(level, index, tile_width(level, index, size))


def tiles_for_nodes(nodes: Iterable[Node], size: int) -> list[Tile]:
    """The distinct tiles needed to read the hashes of ``nodes`` in a tree of ``size`` (sorted)."""
    return sorted({tile_for_node(node, size) for node in nodes})


def node_hash_from_tile(node: Node, tile_level: int, tile_index: int, data: bytes) -> bytes:
    """The hash of ``node`` from the bytes of tile (``tile_level``, ``tile_index``), at any width
    that covers it (a wider tile's prefix is the narrower tile).

    Up to 2**7 - 1 hashes are computed for nodes between tile levels.
    Raises ``TileError`` if the tile does not hold the node.
    """
    shift = node.level - tile_level * TILE_HEIGHT
    if not 0 <= shift < TILE_HEIGHT:
        raise TileError(f"{node} is not in a level {tile_level} tile")
    first = (node.index << shift) - tile_index * TILE_WIDTH
    count = 1 << shift
    if first < 0 or first + count > TILE_WIDTH or (first + count) * HASH_SIZE > len(data):
        raise TileError(f"{node} is not in tile {tile_level}/{tile_index} of {len(data) // HASH_SIZE} hashes")
    return perfect_root(split_hashes(data[first * HASH_SIZE:(first + count) * HASH_SIZE]))


def read_node_hashes(nodes: Sequence[Node], tiles: Mapping[tuple[int, int], bytes]) -> list[bytes]:
    """The hashes of ``nodes`` from tile bytes keyed by (tile level, tile index).

    Give it the tiles ``tiles_for_nodes`` named, at that width or wider.
    Raises ``TileError`` if a tile is missing or too narrow.
    """
    hashes = []
    for node in nodes:
        level = node.level // TILE_HEIGHT
        index = (node.index << (node.level - level * TILE_HEIGHT)) // TILE_WIDTH
        data = tiles.get((level, index))
        if data is None:
            raise TileError(f"tile {level}/{index} is missing")
        hashes.append(node_hash_from_tile(node, level, index, data))
    return hashes


def subtree_rows(data: bytes) -> tuple[bytes, ...]:
    """Every complete subtree hash inside a tile: row ``k`` is the roots of its ``2**k``-hash
    subtrees, concatenated (row 0 is the tile itself). At most 255 hashes for a full tile.

    A proof reads up to 8 nodes of a tile; keeping its rows makes each a slice instead of up
    to 127 hashes. Raises ``TileError`` if the length is not a multiple of 32.
    """
    rows = [data]
    row = split_hashes(data)
    sha256 = hashlib.sha256
    while len(row) > 1:
        row = [sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
        rows.append(b"".join(row))
    return tuple(rows)


def node_hash_from_rows(node: Node, tile_level: int, tile_index: int, rows: Sequence[bytes]) -> bytes:
    """The hash of ``node`` from the ``subtree_rows`` of tile (``tile_level``, ``tile_index``).

    Raises ``TileError`` if the tile does not hold the node.
    """
    shift = node.level - tile_level * TILE_HEIGHT
    if not 0 <= shift < TILE_HEIGHT:
        raise TileError(f"{node} is not in a level {tile_level} tile")
    position = node.index - (tile_index << (TILE_HEIGHT - shift))
    if position < 0 or position >= TILE_WIDTH >> shift or shift >= len(rows) \
            or (position + 1) * HASH_SIZE > len(rows[shift]):
        raise TileError(f"{node} is not in tile {tile_level}/{tile_index} of {len(rows[0]) // HASH_SIZE} hashes")
    return rows[shift][position * HASH_SIZE:(position + 1) * HASH_SIZE]


def split_hashes(data: bytes) -> list[bytes]:
    """The 32-byte hashes of a tile. Raises ``TileError`` if the length is not a multiple of 32."""
    if len(data) % HASH_SIZE:
        raise TileError(f"tile of {len(data)} bytes is not a whole number of hashes")
    return [data[i:i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


# --- entry bundles ------------------------------------------------------------------------


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry prefixed by its length as a big-endian uint16.

    Raises ``TileError`` for an entry longer than 65535 bytes.
    """
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(f"entry of {len(entry)} bytes is too long for a bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle. Raises ``TileError`` if it is truncated."""
    entries = []
    position = 0
    while position < len(data):
        if position + 2 > len(data):
            raise TileError("entry bundle ends inside a length prefix")
        length = int.from_bytes(data[position:position + 2], "big")
        position += 2
        if position + length > len(data):
            raise TileError("entry bundle ends inside an entry")
        entries.append(data[position:position + length])
        position += length
    return entries


def bundle_for(index: int, size: int) -> EntryBundle:
    """The entry bundle, at its width in a tree of ``size``, holding entry ``index``."""
    if not 0 <= index < size:
        raise TileError(f"entry {index} is not in a tree of size {size}")
    return EntryBundle(index // TILE_WIDTH, tile_width(0, index // TILE_WIDTH, size))


def edge_bundle(size: int) -> EntryBundle | None:
    """The partial entry bundle of a tree of ``size`` (what ``grow_bundles`` extends), if any."""
    width = size % TILE_WIDTH
    return EntryBundle(size // TILE_WIDTH, width) if width else None


def grow_bundles(size: int, partial: bytes, entries: Sequence[bytes]) -> dict[EntryBundle, bytes]:
    """The entry bundles that are new or grow when ``entries`` follow a tree of ``size``.

    ``partial`` is the stored bundle ``edge_bundle(size)`` names (``b""`` if none); a
    wider one is cut to its width. Raises ``TileError`` if it holds too few entries.
    """
    edge = edge_bundle(size)
    kept: list[bytes] = []
    if edge is not None:
        kept = decode_bundle(partial)[:edge.width]
        if len(kept) < edge.width:
            raise TileError(f"entry bundle {edge.path()} holds {len(kept)} entries")
    if not entries:
        return {}
    start = size - len(kept)  # where the first bundle touched begins: a multiple of 256
    pending = [*kept, *entries]
    out: dict[EntryBundle, bytes] = {}
    for offset in range(0, len(pending), TILE_WIDTH):
        chunk = pending[offset:offset + TILE_WIDTH]
        out[EntryBundle((start + offset) // TILE_WIDTH, len(chunk))] = encode_bundle(chunk)
    return out


# --- incremental integration --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TreeEdge:
    """The right edge of a tiled tree: its size and the partial tile of each tile level.

    ``partial[L]`` is the bytes of the rightmost, partial tile of level ``L``
    (empty when that level has only full tiles). That is all integration needs;
    ``edge_tiles`` names these tiles and ``TreeEdge.from_tiles`` rebuilds the edge
    from storage after a restart.
    """

    size: int = 0
    partial: tuple[bytes, ...] = ()

    @classmethod
    def from_tiles(cls, size: int, tiles: Mapping[tuple[int, int], bytes]) -> TreeEdge:
        """The edge of a tree of ``size`` from its stored tiles keyed by (level, index),
        at least the ones ``edge_tiles(size)`` names (wider ones are cut to the width).

        Raises ``TileError`` if one is missing or too narrow.
        """
        partial = [b""] * _levels(size)
        for tile in edge_tiles(size):
            data = tiles.get((tile.level, tile.index))
            if data is None or len(data) < tile.width * HASH_SIZE:
                raise TileError(f"tile {tile.path()} is missing or too narrow")
            partial[tile.level] = data[:tile.width * HASH_SIZE]
        return cls(size, tuple(partial))

    def root(self) -> bytes:
        """The root hash of the tree; up to 255 node hashes per tile level."""
        nodes: list[bytes] = []
        for level in reversed(range(len(self.partial))):
            hashes = split_hashes(self.partial[level])
            position = 0
            for bit in reversed(range(TILE_HEIGHT)):
                if len(hashes) >> bit & 1:
                    nodes.append(perfect_root(hashes[position:position + (1 << bit)]))
                    position += 1 << bit
        return fold_root(nodes) if nodes else EMPTY_ROOT


def _levels(size: int) -> int:
    """How many tile levels a tree of ``size`` has (0 for the empty tree)."""
    levels = 0
    while size >> (TILE_HEIGHT * levels):
        levels += 1
    return levels


def edge_tiles(size: int) -> list[Tile]:
    """The partial tiles of a tree of ``size``: what ``TreeEdge.from_tiles`` needs."""
    tiles = []
    for level in range(_levels(size)):
        count = size >> (TILE_HEIGHT * level)
        if count % TILE_WIDTH:
            tiles.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
    return tiles


@dataclass(frozen=True, slots=True)
class Integration:
    """What appending a batch of leaves produced: the new edge, its root, and every tile
    that is new or grew, at its new width, with its bytes (what to store)."""

    edge: TreeEdge
    root: bytes
    tiles: dict[Tile, bytes]


def integrate(edge: TreeEdge, leaf_hashes: Sequence[bytes]) -> Integration:
    """Append ``leaf_hashes`` to the tree whose right edge is ``edge``.

    Reads nothing but the edge: each level's partial tile takes the new hashes,
    every tile that fills up is hashed into one new hash of the level above.
    Raises ``TileError`` for a hash that is not 32 bytes.
    """
    for value in leaf_hashes:
        if len(value) != HASH_SIZE:
            raise TileError(f"leaf hash of {len(value)} bytes")
    size = edge.size + len(leaf_hashes)
    tiles: dict[Tile, bytes] = {}
    partial = list(edge.partial)
    new = b"".join(leaf_hashes)
    level = 0
    while new:
        if level == len(partial):
            partial.append(b"")
        row = partial[level] + new
        first_index = (edge.size >> (TILE_HEIGHT * level)) // TILE_WIDTH
        full_bytes = len(row) - len(row) % (TILE_WIDTH * HASH_SIZE)
        parents = []
        for offset in range(0, full_bytes, TILE_WIDTH * HASH_SIZE):
            data = row[offset:offset + TILE_WIDTH * HASH_SIZE]
            tiles[Tile(level, first_index + offset // (TILE_WIDTH * HASH_SIZE))] = data
            parents.append(perfect_root(split_hashes(data)))
        rest = row[full_bytes:]
        if rest:
            index = first_index + full_bytes // (TILE_WIDTH * HASH_SIZE)
            tiles[Tile(level, index, len(rest) // HASH_SIZE)] = rest
        partial[level] = rest
        new = b"".join(parents)
        level += 1
    new_edge = TreeEdge(size, tuple(partial[:_levels(size)]))
    return Integration(new_edge, new_edge.root(), tiles)


def build_tiles(leaf_hashes: Sequence[bytes]) -> Integration:
    """All tiles of the tree of ``leaf_hashes``, built at once (integration from the empty tree)."""
    return integrate(TreeEdge(), leaf_hashes)
