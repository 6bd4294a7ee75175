"""RFC 9162 hashing and proofs: transparency-dev/merkle's test data and an independent textbook verifier."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerbase.ledger import merkle
from ledgerbase.ledger.merkle import Node, ProofError

TESTDATA = Path(__file__).parent / "testdata" / "merkle"

# transparency-dev/merkle testonly/constants.go: the RFC 6962 reference tree of 8 leaves
LEAF_INPUTS = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
NODE_HASHES = {
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
LEAVES = [merkle.leaf_hash(data) for data in LEAF_INPUTS]


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def _cases(kind: str) -> list[tuple[str, dict[str, object]]]:
    files = sorted((TESTDATA / kind).rglob("*.json"))
    assert len(files) > 50
    return [(str(f.relative_to(TESTDATA)), json.loads(f.read_text())) for f in files]


# --- independent textbook definitions (RFC 6962 section 2.1, RFC 9162 section 2.1.3.2 / 2.1.4.2) ---


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: tuple[bytes, ...]) -> bytes:
    """MTH over leaf *hashes*."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return _h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _k(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: tuple[bytes, ...], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], complete) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def rfc_verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = _h(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def rfc_verify_consistency(size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes) -> bool:
    if not 0 < size1 < size2 or not proof:
        return False
    if size1 & (size1 - 1) == 0:
        proof = [root1, *proof]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _h(b"\x01" + c + fr), _h(b"\x01" + c + sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == root1 and sr == root2 and sn == 0


@cache
def leaves_of(size: int) -> tuple[bytes, ...]:
    return tuple(merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size))


# --- known answers ------------------------------------------------------------------------


def test_hashes() -> None:
    assert merkle.EMPTY_ROOT == ROOTS[0]
    assert merkle.leaf_hash(b"") == bytes.fromhex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert merkle.node_hash(LEAVES[0], LEAVES[1]) == bytes.fromhex(NODE_HASHES[(1, 0)])


@pytest.mark.parametrize("size", range(9))
def test_roots_of_reference_tree(size: int) -> None:
    assert merkle.root(LEAVES[:size]) == ROOTS[size]
    assert merkle.fold_root([merkle.subtree_hash(LEAVES, n) for n in merkle.root_plan(size)]) == ROOTS[size]


@pytest.mark.parametrize(("level", "index"), list(NODE_HASHES))
def test_node_hashes_of_reference_tree(level: int, index: int) -> None:
    assert merkle.subtree_hash(LEAVES, Node(level, index)).hex() == NODE_HASHES[(level, index)]


@pytest.mark.parametrize(("name", "case"), _cases("inclusion"), ids=lambda v: v if isinstance(v, str) else "")
def test_inclusion_vectors(name: str, case: dict[str, object]) -> None:
    proof = _b64(case["proof"] or [])  # type: ignore[arg-type]
    args = (base64.b64decode(str(case["leafHash"])), int(case["leafIdx"]), int(case["treeSize"]),  # type: ignore[call-overload]
            proof, base64.b64decode(str(case["root"])))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)
        leaf, index, size, _, root = args
        if size <= 8 and leaf == LEAVES[index]:  # the reference tree: generation gives the same proof
            assert merkle.inclusion_proof(index, size, LEAVES) == proof


@pytest.mark.parametrize(("name", "case"), _cases("consistency"), ids=lambda v: v if isinstance(v, str) else "")
def test_consistency_vectors(name: str, case: dict[str, object]) -> None:
    proof = _b64(case["proof"] or [])  # type: ignore[arg-type]
    size1, size2 = int(case["size1"]), int(case["size2"])  # type: ignore[call-overload]
    root1, root2 = base64.b64decode(str(case["root1"])), base64.b64decode(str(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, root1, root2)
    else:
        merkle.verify_consistency(size1, size2, proof, root1, root2)
        if size2 <= 8 and root2 == ROOTS[size2]:
            assert merkle.consistency_proof(size1, size2, LEAVES) == proof


@pytest.mark.parametrize(("index", "size", "want"), [
    (0, 1, 0), (0, 2, 1), (0, 8, 3), (7, 8, 3), (5, 7, 3), (6, 7, 2), (255, 256, 8), (256, 257, 1),
    (0, 257, 9), (65535, 65536, 16), (65536, 65537, 1), (0, 65537, 17),
])
def test_inclusion_proof_sizes(index: int, size: int, want: int) -> None:
    plan = merkle.inclusion_plan(index, size)
    assert len(merkle.build_proof(plan, [b"\x00" * 32] * len(plan.nodes))) == want


@pytest.mark.parametrize(("begin", "end", "want"), [
    (0, 0, []), (0, 1, [Node(0, 0)]), (0, 7, [Node(2, 0), Node(1, 2), Node(0, 6)]),
    (3, 9, [Node(0, 3), Node(2, 1), Node(0, 8)]), (256, 257, [Node(0, 256)]),
])
def test_range_nodes(begin: int, end: int, want: list[Node]) -> None:
    assert merkle.range_nodes(begin, end) == want


@pytest.mark.parametrize(("call", "args"), [
    (merkle.inclusion_plan, (0, 0)), (merkle.inclusion_plan, (5, 5)), (merkle.inclusion_plan, (-1, 3)),
    (merkle.consistency_plan, (0, 3)), (merkle.consistency_plan, (4, 3)),
])
def test_plans_reject_out_of_range(call: object, args: tuple[int, int]) -> None:
    with pytest.raises(ProofError):
        call(*args)  # type: ignore[operator]


# --- properties against the independent definitions --------------------------------------


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 300))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(2, 300))
    return draw(st.integers(1, size2 - 1)), size2


def _flip(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8 % len(value)] ^= 1 << (bit % 8)
    return bytes(flipped)


@settings(deadline=None)  # recursive reference hashing of up to 300 leaves
@given(index_and_size(), st.integers(0, 10_000))
def test_inclusion_proofs_match_the_textbook(case: tuple[int, int], bit: int) -> None:
    index, size = case
    leaves = leaves_of(size)
    root = mth(leaves)
    proof = merkle.inclusion_proof(index, size, leaves)
    assert proof == path(index, leaves)
    assert merkle.root(leaves) == root
    assert rfc_verify_inclusion(leaves[index], index, size, proof, root)
    merkle.verify_inclusion(leaves[index], index, size, proof, root)
    # any flipped bit in the leaf, the root or a proof hash fails
    bad = [(_flip(leaves[index], bit), proof, root), (leaves[index], proof, _flip(root, bit))]
    if proof:
        position = bit % len(proof)
        bad.append((leaves[index], [*proof[:position], _flip(proof[position], bit), *proof[position + 1:]], root))
    for leaf, bad_proof, bad_root in bad:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, bad_proof, bad_root)
        assert not rfc_verify_inclusion(leaf, index, size, bad_proof, bad_root)


@settings(deadline=None)  # recursive reference hashing of up to 300 leaves
@given(two_sizes(), st.integers(0, 10_000))
def test_consistency_proofs_match_the_textbook(case: tuple[int, int], bit: int) -> None:
    size1, size2 = case
    leaves = leaves_of(size2)
    root1, root2 = mth(leaves[:size1]), mth(leaves)
    proof = merkle.consistency_proof(size1, size2, leaves)
    assert proof == subproof(size1, leaves, True)
    assert rfc_verify_consistency(size1, size2, proof, root1, root2)
    merkle.verify_consistency(size1, size2, proof, root1, root2)
    position = bit % len(proof)
    bad = [
        (proof, _flip(root1, bit), root2),
        (proof, root1, _flip(root2, bit)),
        ([*proof[:position], _flip(proof[position], bit), *proof[position + 1:]], root1, root2),
    ]
    for bad_proof, bad_root1, bad_root2 in bad:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, bad_proof, bad_root1, bad_root2)
        assert not rfc_verify_consistency(size1, size2, bad_proof, bad_root1, bad_root2)


@given(index_and_size(), st.integers(1, 300))
def test_wrong_index_fails(case: tuple[int, int], other: int) -> None:
    index, size = case
    leaves = leaves_of(size)
    proof = merkle.inclusion_proof(index, size, leaves)
    other_index = (index + other) % size
    if other_index != index:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves[index], other_index, size, proof, mth(leaves))


def test_equal_sizes() -> None:
    merkle.verify_consistency(5, 5, [], ROOTS[5], ROOTS[5])
    with pytest.raises(ProofError):
        merkle.verify_consistency(5, 5, [], ROOTS[5], ROOTS[4])
    assert merkle.consistency_plan(5, 5).nodes == ()
