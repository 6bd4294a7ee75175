"""tlog-checkpoint bodies: the C2SP example, strict parsing, extension checks."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerbase.ledger import merkle
from ledgerbase.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_extends,
)
from ledgerbase.ledger.merkle import ProofError
from ledgerbase.ledger.note import NoteError, Signer, sign_note

SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


def test_spec_example() -> None:
    checkpoint = parse_checkpoint(SPEC_BODY)
    assert checkpoint == Checkpoint("example.com/behind-the-sofa", 20852163, SPEC_ROOT)
    assert checkpoint.body() == SPEC_BODY
    with_extensions = Checkpoint("o", 0, merkle.EMPTY_ROOT, ("ext one", "— two"))
    assert parse_checkpoint(with_extensions.body()) == with_extensions
    assert with_extensions.body() == "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n— two\n"


ROOT_LINE = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize("body", [
    "",
    "o\n1\n",                                # two lines
    f"o\n1\n{ROOT_LINE}",                    # no final newline
    f"\n1\n{ROOT_LINE}\n",                   # empty origin
    f"o\n01\n{ROOT_LINE}\n",                 # leading zero
    f"o\n+1\n{ROOT_LINE}\n",
    f"o\n-1\n{ROOT_LINE}\n",
    f"o\n 1\n{ROOT_LINE}\n",
    f"o\n1.0\n{ROOT_LINE}\n",
    f"o\n١\n{ROOT_LINE}\n",                  # a non-ASCII digit
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",   # no padding
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",  # non-canonical last character
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=x\n",
    "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",      # not 32 bytes
    "o\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n",  # URL alphabet
    f"o\n1\n{ROOT_LINE}\n\n",                 # empty extension line
    f"o\n1\n{ROOT_LINE}\next\n\nmore\n",
    f"o\x01\n1\n{ROOT_LINE}\n",
])
def test_malformed_bodies(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


@given(st.text(st.characters(min_codepoint=32, exclude_characters="\n"), min_size=1),
       st.integers(0, 2**64), st.binary(min_size=32, max_size=32))
def test_round_trip(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    assert parse_checkpoint(checkpoint.body()) == checkpoint


def test_invalid_values() -> None:
    for args in (("", 1, SPEC_ROOT), ("o", -1, SPEC_ROOT), ("o", 1, b"short"), ("a\nb", 1, SPEC_ROOT)):
        with pytest.raises(CheckpointError):
            Checkpoint(*args)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError):
        Checkpoint("o", 1, SPEC_ROOT, ("",))


LEAVES = [merkle.leaf_hash(bytes([i])) for i in range(20)]


def head(size: int, origin: str = "ledger.example/log") -> Checkpoint:
    return Checkpoint(origin, size, merkle.root(LEAVES[:size]))


@pytest.mark.parametrize(("old", "new"), [(0, 0), (0, 7), (1, 1), (1, 2), (7, 8), (8, 20), (13, 20)])
def test_extends(old: int, new: int) -> None:
    proof = merkle.consistency_proof(old, new, LEAVES) if old else []
    verify_extends(head(old), head(new), proof)


def test_does_not_extend() -> None:
    proof = merkle.consistency_proof(5, 9, LEAVES)
    with pytest.raises(CheckpointError):
        verify_extends(head(5), head(9, "other.example/log"), proof)
    with pytest.raises(CheckpointError):
        verify_extends(head(9), head(5), proof)
    forked = Checkpoint(head(9).origin, 9, merkle.root([*LEAVES[:8], merkle.leaf_hash(b"fork")]))
    with pytest.raises(ProofError):
        verify_extends(head(5), forked, proof)
    with pytest.raises(ProofError):
        verify_extends(head(9), Checkpoint(head(9).origin, 9, forked.root), [])
    with pytest.raises(ProofError):
        verify_extends(Checkpoint(head(0).origin, 0, SPEC_ROOT), head(3), [])  # the empty tree has one root


def test_signed_checkpoint() -> None:
    signer = Signer.generate("ledger.example/log")
    signed = sign_checkpoint(head(7), signer)
    assert signed.startswith(head(7).body() + "\n\u2014 ledger.example/log ")
    checkpoint, opened = open_checkpoint(signed, [signer.verifier()])
    assert checkpoint == head(7)
    assert [s.name for s in opened.signatures] == ["ledger.example/log"]
    with pytest.raises(NoteError):
        open_checkpoint(signed, [Signer.generate("ledger.example/log").verifier()])
    with pytest.raises(CheckpointError):
        open_checkpoint(sign_note(head(7).body().replace("\n7\n", "\n07\n"), [signer]), [signer.verifier()])
