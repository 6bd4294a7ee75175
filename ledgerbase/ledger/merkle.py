"""RFC 9162 Merkle tree hashing, and inclusion and consistency proofs.

Pure functions over hashes; nothing here reads storage. A tree of ``size`` leaves
is addressed by its *nodes*: ``Node(level, index)`` is the root of the perfect
subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``. Only such
complete subtrees are ever stored (in tiles, ``ledgerbase.ledger.tiles``); every
root and proof hash is one of them or is folded from a few of them.

Building a proof from storage is three steps, so the caller can fetch what it
needs in one query:

1. ``inclusion_plan(index, size)`` / ``consistency_plan(size1, size2)`` /
   ``root_plan(size)`` list the O(log n) nodes needed;
2. the caller reads those node hashes: ``tiles.tiles_for_nodes`` names the tiles
   to fetch, ``tiles.read_node_hashes`` reads the hashes out of them;
3. ``build_proof(plan, hashes)`` / ``fold_root(hashes)`` compute the result.

The plans and the verifiers are ports of transparency-dev/merkle's ``proof``
package (Apache-2.0), checked against its test data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root hash of the empty tree: SHA-256 of nothing."""


class ProofError(ValueError):
    """A proof does not verify, or its arguments are out of range."""


def leaf_hash(entry: bytes) -> bytes:
    """The RFC 9162 hash of a leaf: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, slots=True, order=True)
class Node:
    """The root of the perfect subtree over leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        """The first leaf this node covers."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """One past the last leaf this node covers."""
        return (self.index + 1) << self.level

    def parent(self) -> Node:
        """The node one level up that covers this one."""
        return Node(self.level + 1, self.index >> 1)

    def sibling(self) -> Node:
        """The other child of this node's parent."""
        return Node(self.level, self.index ^ 1)


def _trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def range_nodes(begin: int, end: int) -> list[Node]:
    """The perfect subtrees covering leaves ``[begin, end)``, left to right (a compact range)."""
    if not 0 <= begin <= end:
        raise ProofError(f"invalid range [{begin}, {end})")
    nodes = []
    position = begin
    while position < end:
        # the biggest aligned subtree starting here that still fits
        level = _trailing_zeros(position) if position else (end - position).bit_length() - 1
        while position + (1 << level) > end:
            level -= 1
        nodes.append(Node(level, position >> level))
        position += 1 << level
    return nodes


def fold_root(hashes: Sequence[bytes]) -> bytes:
    """The root over consecutive perfect subtrees given left to right (``range_nodes(0, size)``).

    RFC 9162 splits a tree at the largest power of two below its size, so the
    subtrees fold from the right.
    """
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree whose bottom row is ``hashes`` (a power of two of them)."""
    count = len(hashes)
    if count == 0 or count & (count - 1):
        raise ValueError(f"{count} hashes are not a perfect subtree")
    row = list(hashes)
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def subtree_hash(leaf_hashes: Sequence[bytes], node: Node) -> bytes:
    """The hash of ``node`` computed from all leaf hashes of the tree (in memory; O(2**level))."""
    if node.end > len(leaf_hashes):
        raise ProofError(f"node {node} is beyond tree size {len(leaf_hashes)}")
    return perfect_root(leaf_hashes[node.begin:node.end])


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 root hash (MTH) of a list of leaf hashes; O(n)."""
    return fold_root([subtree_hash(leaf_hashes, node) for node in root_plan(len(leaf_hashes))])


def root_plan(size: int) -> list[Node]:
    """The nodes whose hashes, given to ``fold_root``, give the root of a tree of ``size``."""
    return range_nodes(0, size)


# --- proof plans --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """The nodes a proof needs, in proof order.

    ``nodes[begin:end]`` (when not empty) are folded, lower levels first, into one
    proof hash: the root of an incomplete subtree on the right edge of the tree.
    Every other node is one proof hash.
    """

    nodes: tuple[Node, ...]
    begin: int = 0
    end: int = 0


def _nodes(index: int, level: int, size: int) -> ProofPlan:
    """Port of transparency-dev/merkle proof.nodes: the proof nodes of (level, index) in a tree of size,
    starting with that node itself."""
    # the fork: where the path from the root to (level, index) leaves the path to leaf size
    inner = (index ^ (size >> level)).bit_length() - 1
    fork = Node(level + inner, index >> inner)
    node = Node(level, index)
    nodes = [node]
    while node.level < fork.level:
        nodes.append(node.sibling())
        node = node.parent()
    first = len(nodes)
    # the ephemeral node: the subtrees right of the fork, lower levels first
    nodes.extend(reversed(range_nodes(fork.end, size)))
    last = len(nodes)
    # the subtrees left of the fork, lower levels first
    nodes.extend(reversed(range_nodes(0, fork.begin)))
    if first >= last:
        first = last = 0
    return ProofPlan(tuple(nodes), first, last)


def _skip_first(plan: ProofPlan) -> ProofPlan:
    if plan.begin < plan.end:
        return ProofPlan(plan.nodes[1:], plan.begin - 1, plan.end - 1)
    return ProofPlan(plan.nodes[1:])


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The nodes of the inclusion proof of leaf ``index`` in a tree of ``size``.

    Raises ``ProofError`` unless ``0 <= index < size``.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} out of bounds for tree size {size}")
    return _skip_first(_nodes(index, 0, size))


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The nodes of the consistency proof from a tree of ``size1`` to one of ``size2``.

    Raises ``ProofError`` unless ``0 < size1 <= size2`` (a proof from the empty tree
    is meaningless: every tree extends it). Equal sizes give an empty proof.
    """
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == size2:
        return ProofPlan(())
    # the biggest perfect subtree of [0, size1) ending at size1
    level = _trailing_zeros(size1)
    index = (size1 - 1) >> level
    plan = _nodes(index, level, size2)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: the verifier knows that node (root1)
        return _skip_first(plan)
    return plan


def build_proof(plan: ProofPlan, hashes: Sequence[bytes]) -> list[bytes]:
    """The proof from the hashes of ``plan.nodes`` (same order).

    Raises ``ValueError`` if the number of hashes differs from the plan's.
    """
    if len(hashes) != len(plan.nodes):
        raise ValueError(f"got {len(hashes)} hashes for {len(plan.nodes)} nodes")
    proof = list(hashes[:plan.begin])
    if plan.begin < plan.end:
        folded = hashes[plan.begin]
        for higher in hashes[plan.begin + 1:plan.end]:
            folded = node_hash(higher, folded)
        proof.append(folded)
    proof.extend(hashes[max(plan.end, plan.begin):])
    return proof


def inclusion_proof(index: int, size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The inclusion proof of leaf ``index`` in the tree of the first ``size`` leaf hashes (in memory)."""
    leaves = leaf_hashes[:size]
    if len(leaves) < size:
        raise ProofError(f"tree size {size} beyond the {len(leaf_hashes)} leaves given")
    plan = inclusion_plan(index, size)
    return build_proof(plan, [subtree_hash(leaves, node) for node in plan.nodes])


def consistency_proof(size1: int, size2: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """The consistency proof between the trees of the first ``size1`` and ``size2`` leaf hashes (in memory)."""
    leaves = leaf_hashes[:size2]
    if len(leaves) < size2:
        raise ProofError(f"tree size {size2} beyond the {len(leaf_hashes)} leaves given")
    plan = consistency_plan(size1, size2)
    return build_proof(plan, [subtree_hash(leaves, node) for node in plan.nodes])


# --- verification -------------------------------------------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, sibling in enumerate(proof):
        seed = node_hash(seed, sibling) if (index >> i) & 1 == 0 else node_hash(sibling, seed)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, sibling in enumerate(proof):
        if (index >> i) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for sibling in proof:
        seed = node_hash(sibling, seed)
    return seed


def _decompose_inclusion(index: int, size: int) -> tuple[int, int]:
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root hash that ``proof`` implies for leaf hash ``leaf`` at ``index`` in a tree of ``size``.

    Raises ``ProofError`` if the index is out of range or the proof has the wrong length.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} out of bounds for tree size {size}")
    _check_hash(leaf, "leaf hash")
    inner, border = _decompose_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, want {inner + border}")
    for item in proof:
        _check_hash(item, "proof hash")
    return _chain_border_right(_chain_inner(leaf, proof[:inner], index), proof[inner:])


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Check that leaf hash ``leaf`` is at ``index`` in the tree of ``size`` with root ``root_hash``.

    Raises ``ProofError`` if not.
    """
    if root_from_inclusion_proof(leaf, index, size, proof) != root_hash:
        raise ProofError("inclusion proof does not lead to the root hash")


def root_from_consistency_proof(size1: int, size2: int, proof: Sequence[bytes], root1: bytes) -> bytes:
    """The root of the tree of ``size2`` that ``proof`` implies, after checking it against ``root1``.

    Raises ``ProofError`` if the sizes are out of order, ``size1`` is 0 (nothing to
    prove), the proof has the wrong length, or it does not match ``root1``.
    """
    if size2 < size1:
        raise ProofError(f"size2 {size2} < size1 {size1}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    for item in proof:
        _check_hash(item, "proof hash")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal but the proof is not empty")
        return root1
    if not proof:
        raise ProofError("empty consistency proof")
    # port of transparency-dev/merkle rootFromSubtreeConsistencyProof with start = 0
    fork_level, border = _decompose_inclusion(size1 - 1, size2)
    shift = _trailing_zeros(size1)
    inner = fork_level - shift
    if size1 == 1 << shift:  # size1 is a power of two: the proof starts from root1 itself
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise ProofError(f"consistency proof has {len(proof)} hashes, want {start + inner + border}")
    rest = proof[start:]
    mask = (size1 - 1) >> shift
    if start == 1:
        # the hashes inside the old tree must fold to root1
        # (decompSubtreeProof with start = 0: every border hash is inside the old tree)
        sub_inner = min((size1 - 1).bit_length(), fork_level) - shift
        hash1 = _chain_inner_right(seed, rest[:sub_inner], mask)
        hash1 = _chain_border_right(hash1, rest[inner:inner + border])
        if hash1 != root1:
            raise ProofError("consistency proof does not lead to the old root hash")
    hash2 = _chain_inner(seed, rest[:inner], mask)
    return _chain_border_right(hash2, rest[inner:])


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2`` with ``root2`` extends the tree of ``size1`` with ``root1``.

    Raises ``ProofError`` if not, including for ``size1 == 0`` (check that case by
    the old root being ``EMPTY_ROOT`` instead).
    """
    if root_from_consistency_proof(size1, size2, proof, root1) != root2:
        raise ProofError("consistency proof does not lead to the new root hash")
