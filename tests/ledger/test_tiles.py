"""tlog-tiles: paths, reading hashes from tiles, bundles, incremental integration."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerbase.ledger import merkle, tiles
from ledgerbase.ledger.merkle import Node
from ledgerbase.ledger.tiles import EntryBundle, Tile, TileError, TreeEdge


@cache
def leaves_of(size: int) -> tuple[bytes, ...]:
    return tuple(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size))


@cache
def built(size: int) -> tiles.Integration:
    return tiles.build_tiles(leaves_of(size))


def store_of(size: int) -> dict[tuple[int, int], bytes]:
    """Tiles keyed by (level, index) at their latest width, as the store keeps them."""
    return {(t.level, t.index): data for t, data in built(size).tiles.items()}


# --- paths --------------------------------------------------------------------------------

PATHS = [
    (Tile(0, 1234067), "tile/0/x001/x234/067"),  # the tlog-tiles spec's example
    (Tile(0, 0), "tile/0/000"),
    (Tile(1, 0, 17), "tile/1/000.p/17"),
    (Tile(2, 999, 1), "tile/2/999.p/1"),
    (Tile(3, 1000, 255), "tile/3/x001/000.p/255"),
    (Tile(63, 7), "tile/63/007"),
    (EntryBundle(1234067), "tile/entries/x001/x234/067"),
    (EntryBundle(5, 3), "tile/entries/005.p/3"),
    (EntryBundle(1_000_000, 1), "tile/entries/x001/x000/000.p/1"),
    # transparency-dev/tessera api/layout/paths_test.go
    (Tile(0, 0, 255), "tile/0/000.p/255"),
    (Tile(15, 455667), "tile/15/x455/667"),
    (Tile(15, 123456789, 41), "tile/15/x123/x456/789.p/41"),
    (Tile(0, 1234067, 89), "tile/0/x001/x234/067.p/89"),
    (Tile(63, 999999999999999999, 255), "tile/63/x999/x999/x999/x999/x999/999.p/255"),
    (Tile(0, 1), "tile/0/001"),
    (EntryBundle(0, 8), "tile/entries/000.p/8"),
    (EntryBundle(255, 253), "tile/entries/255.p/253"),
    (EntryBundle(123456789), "tile/entries/x123/x456/789"),
]


@pytest.mark.parametrize(("tile", "path"), PATHS)
def test_paths(tile: Tile | EntryBundle, path: str) -> None:
    assert tile.path() == path
    assert tiles.parse_path(path) == tile


@pytest.mark.parametrize("path", [
    "tile/01/000", "tile/64/000", "tile/-1/000", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/010",
    "tile/0/1234", "tile/0/12", "tile/0/001/234", "tile/0/x000/001", "tile/0/x1/000", "tile/0/000/",
    "tile/0/x001", "tile/entries/000.p/", "tile/entries/x001/x234", "tile/data/000", "/tile/0/000", "tile/0/000.p/1 ",
    # transparency-dev/tessera api/layout/paths_test.go
    "tile/0/x001/x234/067.p/", "tile/0/x001/x234/067.p", "tile/0/x001/x234/", "tile/0/x001/x234", "tile/0/x001/",
    "tile/1/x001/.p/abc", "tile/64/x001/002", "tile/-1/x001/002", "tile/abc/x001/002", "tile/8/001/002",
    "tile/8/x001/0002", "tile/8/x001/-002", "tile/8/x001/002.p/256", "tile/63/x999/x999/x999/x999/x999/x999/999.p/255",
])
def test_bad_paths(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_path(path)


@given(st.integers(0, 64), st.integers(0, 2**64 - 1), st.integers(1, 256))
def test_paths_round_trip(level: int, index: int, width: int) -> None:
    for tile in (Tile(level, index, width), EntryBundle(index, width)):
        if isinstance(tile, Tile) and level > tiles.MAX_LEVEL:
            with pytest.raises(TileError):
                tiles.parse_path(tile.path())
        else:
            assert tiles.parse_path(tile.path()) == tile


# --- the shape of a tiled tree ------------------------------------------------------------


def test_spec_example_of_70000_leaves() -> None:
    result = built(70_000)
    by_level: dict[int, list[Tile]] = {}
    for tile in result.tiles:
        by_level.setdefault(tile.level, []).append(tile)
    assert sorted(t.width for t in by_level[0]) == [112] + [256] * 273
    assert sorted(t.width for t in by_level[1]) == [17, 256]
    assert [t.width for t in by_level[2]] == [1]
    assert tiles.edge_tiles(70_000) == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert result.root == merkle.root(leaves_of(70_000))


def test_spec_example_of_256_leaves() -> None:
    assert sorted(built(256).tiles) == [Tile(0, 0), Tile(1, 0, 1)]
    assert built(256).tiles[Tile(1, 0, 1)] == merkle.perfect_root(leaves_of(256))


@pytest.mark.parametrize("size", [0, 1, 2, 255, 256, 257, 511, 512, 65535, 65536, 65537])
def test_build_at_once_matches_root_and_widths(size: int) -> None:
    result = built(size)
    assert result.root == merkle.root(leaves_of(size))
    assert result.edge == TreeEdge.from_tiles(size, store_of(size))
    assert result.edge.size == size
    for tile, data in result.tiles.items():
        assert len(data) == tile.width * 32
        assert tile.width == tiles.tile_width(tile.level, tile.index, size)
    assert sum(1 for t in result.tiles if t.level == 0) == -(-size // 256)


@pytest.mark.parametrize(("old", "new"), [
    (0, 1), (1, 255), (255, 256), (256, 257), (255, 257), (1, 65537), (65535, 65536), (65536, 65537), (65535, 65537),
])
def test_integration_across_boundaries(old: int, new: int) -> None:
    edge = TreeEdge.from_tiles(old, store_of(old))
    result = tiles.integrate(edge, leaves_of(new)[old:])
    assert result.root == built(new).root
    assert result.edge == built(new).edge
    # exactly the tiles whose width changed, at their new width and content
    changed = {t: d for t, d in built(new).tiles.items()
               if tiles.tile_width(t.level, t.index, old) != t.width}
    assert result.tiles == changed


@settings(deadline=None)  # the first examples build the reference trees
@given(st.lists(st.integers(0, 300), max_size=12))
def test_random_batches_build_the_same_tiles(batches: list[int]) -> None:
    size = sum(batches)
    leaves = leaves_of(size)
    edge = TreeEdge()
    stored: dict[Tile, bytes] = {}
    latest: dict[tuple[int, int], bytes] = {}
    for count in batches:
        result = tiles.integrate(edge, leaves[edge.size:edge.size + count])
        assert result.root == merkle.root(leaves[:edge.size + count])
        for tile, data in result.tiles.items():
            previous = latest.get((tile.level, tile.index), b"")
            assert data.startswith(previous) and len(data) > len(previous)  # tiles only grow
            latest[(tile.level, tile.index)] = data
        stored.update(result.tiles)
        edge = result.edge
        assert TreeEdge.from_tiles(edge.size, latest) == edge  # a restart rebuilds the same edge
    assert {Tile(level, index, len(data) // 32): data for (level, index), data in latest.items()} == built(size).tiles
    assert all(stored[tile] == data for tile, data in built(size).tiles.items())


def test_from_tiles_wants_the_edge() -> None:
    with pytest.raises(TileError):
        TreeEdge.from_tiles(257, {})
    store = store_of(257)
    store[(0, 1)] = b""
    with pytest.raises(TileError):
        TreeEdge.from_tiles(257, store)
    assert TreeEdge.from_tiles(0, {}) == TreeEdge()
    # wider stored tiles (a later size) serve as their prefix
    assert TreeEdge.from_tiles(300, store_of(600)) == built(300).edge


def test_integrate_rejects_bad_hashes() -> None:
    with pytest.raises(TileError):
        tiles.integrate(TreeEdge(), [b"short"])


# --- proofs and roots from tiles ----------------------------------------------------------


@st.composite
def index_size_and_store(draw: st.DrawFn) -> tuple[int, int, int]:
    stored = draw(st.sampled_from([1, 3, 256, 257, 700, 65537, 70_000]))
    size = draw(st.integers(1, stored))
    return draw(st.integers(0, size - 1)), size, stored


@settings(deadline=None)  # the first examples build the reference trees
@given(index_size_and_store())
def test_proofs_from_tiles(case: tuple[int, int, int]) -> None:
    index, size, stored = case
    store = store_of(stored)  # possibly wider tiles than the tree of `size` has
    leaves = leaves_of(size)

    plan = merkle.inclusion_plan(index, size)
    needed = tiles.tiles_for_nodes(plan.nodes, size)
    assert len(needed) <= 2 * len(plan.nodes) + 1
    for tile in needed:
        assert 0 < tile.width <= len(store[(tile.level, tile.index)]) // 32
    proof = merkle.build_proof(plan, tiles.read_node_hashes(plan.nodes, store))
    assert proof == merkle.inclusion_proof(index, size, leaves)

    root = merkle.fold_root(tiles.read_node_hashes(merkle.root_plan(size), store))
    assert root == built(size).root
    merkle.verify_inclusion(leaves[index], index, size, proof, root)

    if index > 0:
        plan = merkle.consistency_plan(index, size)
        proof = merkle.build_proof(plan, tiles.read_node_hashes(plan.nodes, store))
        merkle.verify_consistency(index, size, proof, built(index).root, root)


def test_node_from_tile_between_tile_levels() -> None:
    store = store_of(65537)
    for node in (Node(3, 5), Node(7, 1), Node(8, 0), Node(12, 15), Node(15, 1), Node(16, 0), Node(0, 65536)):
        (tile,) = tiles.tiles_for_nodes([node], 65537)
        assert tiles.read_node_hashes([node], store) == [merkle.subtree_hash(leaves_of(65537), node)]
        assert tiles.node_hash_from_tile(node, tile.level, tile.index, store[(tile.level, tile.index)])
    with pytest.raises(TileError):
        tiles.tile_for_node(Node(1, 128), 257)  # leaves 256 and 257: not complete yet
    with pytest.raises(TileError):
        tiles.read_node_hashes([Node(0, 5)], {})
    with pytest.raises(TileError):
        tiles.node_hash_from_tile(Node(0, 300), 0, 0, store[(0, 0)])


@given(st.integers(1, 70_000), st.data())
@settings(max_examples=60, deadline=None)
def test_subtree_rows_hold_every_node_of_a_tile(size: int, data: st.DataObject) -> None:
    """A node read from a tile's subtree rows is the node read from the tile, in full and
    partial tiles and from a wider version of the tile."""
    store = store_of(max(size, 70_000))  # wider tiles than the tree of size needs
    level = data.draw(st.integers(0, 15))
    node = Node(level, data.draw(st.integers(0, max(0, (size >> level) - 1))))
    if node.end > size:
        return
    (tile,) = tiles.tiles_for_nodes([node], size)
    for stored in (store_of(size)[(tile.level, tile.index)], store[(tile.level, tile.index)]):
        rows = tiles.subtree_rows(stored)
        assert tiles.node_hash_from_rows(node, tile.level, tile.index, rows) == merkle.subtree_hash(
            leaves_of(size), node)
    with pytest.raises(TileError):
        tiles.node_hash_from_rows(Node(node.level, node.index + tiles.TILE_WIDTH), tile.level, tile.index,
                                  tiles.subtree_rows(store[(tile.level, tile.index)]))


# --- entry bundles ------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=600), max_size=20))
def test_bundles_round_trip(entries: list[bytes]) -> None:
    data = tiles.encode_bundle(entries)
    assert tiles.decode_bundle(data) == entries
    assert len(data) == sum(2 + len(e) for e in entries)


def test_bundle_format() -> None:
    assert tiles.encode_bundle([b"ab", b"", b"c"]) == b"\x00\x02ab\x00\x00\x00\x01c"
    assert tiles.encode_bundle([b"x" * 300])[:2] == b"\x01\x2c"
    with pytest.raises(TileError):
        tiles.encode_bundle([b"x" * 65536])
    for truncated in (b"\x00", b"\x00\x02a", b"\x00\x01a\x00"):
        with pytest.raises(TileError):
            tiles.decode_bundle(truncated)
    assert tiles.bundle_for(0, 1) == EntryBundle(0, 1)
    assert tiles.bundle_for(256, 600) == EntryBundle(1, 256)
    assert tiles.bundle_for(599, 600) == EntryBundle(2, 88)
    with pytest.raises(TileError):
        tiles.bundle_for(600, 600)


@settings(deadline=None)
@given(st.lists(st.integers(0, 300), max_size=8))
def test_bundles_grow_like_tiles(batches: list[int]) -> None:
    entries = [i.to_bytes(4, "big") * (i % 3) for i in range(sum(batches))]
    stored: dict[int, bytes] = {}
    size = 0
    for count in batches:
        edge = tiles.edge_bundle(size)
        grown = tiles.grow_bundles(size, stored.get(edge.index, b"") if edge else b"", entries[size:size + count])
        tree = tiles.integrate(TreeEdge.from_tiles(size, store_of(size)) if size else TreeEdge(),
                               [merkle.leaf_hash(e) for e in entries[size:size + count]])
        # the same shape as the level-0 tiles that grew
        assert {(b.index, b.width) for b in grown} == {(t.index, t.width) for t in tree.tiles if t.level == 0}
        for bundle, data in grown.items():
            assert tiles.decode_bundle(data) == entries[bundle.index * 256:bundle.index * 256 + bundle.width]
            stored[bundle.index] = data
        size += count


def test_grow_bundles_edges() -> None:
    assert tiles.edge_bundle(0) is None and tiles.edge_bundle(256) is None
    assert tiles.edge_bundle(257) == EntryBundle(1, 1)
    assert tiles.grow_bundles(3, tiles.encode_bundle([b"a", b"b", b"c"]), []) == {}
    # a wider stored bundle is cut to the tree's width
    assert tiles.grow_bundles(2, tiles.encode_bundle([b"a", b"b", b"c"]), [b"x"]) == {
        EntryBundle(0, 3): tiles.encode_bundle([b"a", b"b", b"x"])}
    with pytest.raises(TileError):
        tiles.grow_bundles(2, tiles.encode_bundle([b"a"]), [b"x"])


def test_every_tile_hash_is_its_subtree() -> None:
    """Tile ``(l, n)`` holds the roots of the subtrees ``Node(8l, 256n + i)``, checked one by one."""
    size = 65_800
    leaves = leaves_of(size)
    for tile, data in built(size).tiles.items():
        for i, value in enumerate(tiles.split_hashes(data)):
            assert value == merkle.subtree_hash(leaves, Node(8 * tile.level, 256 * tile.index + i))
