"""C2SP tlog-checkpoint bodies: build, parse strictly, and check that one extends another.

A checkpoint body is the text of a signed note (``ledgerbase.ledger.note``)::

    <origin>
    <tree size, decimal, no leading zeroes>
    <base64 root hash>
    [extension lines, non-empty]

each line ending in a newline.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledgerbase.ledger.merkle import EMPTY_ROOT, HASH_SIZE, ProofError, verify_consistency
from ledgerbase.ledger.note import Note, Signer, Verifier, open_note, sign_note

_SIZE = re.compile(r"0|[1-9][0-9]*")


class CheckpointError(ValueError):
    """A checkpoint is malformed, or does not extend the one it should."""


def _check_line(line: str, what: str) -> None:
    if not line or "\n" in line or any(c < " " for c in line):
        raise CheckpointError(f"invalid {what} line")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: the log's origin, tree size and root hash, and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if self.size < 0:
            raise CheckpointError("negative tree size")
        if len(self.root) != HASH_SIZE:
            raise CheckpointError(f"root hash of {len(self.root)} bytes")
        for line in self.extensions:
            _check_line(line, "extension")

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, each ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note text (signatures already removed, e.g. ``Note.text``).

    Raises ``CheckpointError`` unless: at least three lines, each ending in a newline;
    a non-empty origin; a decimal size without sign or leading zeroes; a root that is
    canonical base64 of 32 bytes; non-empty extension lines.
    """
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint does not end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint has fewer than three lines")
    origin, size_text, root_text, *extensions = lines
    if not _SIZE.fullmatch(size_text):
        raise CheckpointError("invalid tree size line")
    try:
        root = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise CheckpointError("invalid root hash line") from error
    if base64.b64encode(root).decode() != root_text:
        raise CheckpointError("invalid root hash line")
    return Checkpoint(origin, int(size_text), root, tuple(extensions))


def verify_extends(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``new`` is an append-only extension of ``old`` (same log), by ``proof``,
    the consistency proof from ``old.size`` to ``new.size``.

    An old empty tree needs an empty proof and the empty root; equal sizes need equal
    roots. Raises ``CheckpointError`` (other origin, smaller tree) or ``ProofError``.
    """
    if old.origin != new.origin:
        raise CheckpointError(f"checkpoint of {new.origin!r}, not {old.origin!r}")
    if new.size < old.size:
        raise CheckpointError(f"tree shrank from {old.size} to {new.size}")
    if old.size == 0:
        if old.root != EMPTY_ROOT or proof:
            raise ProofError("an empty tree has the empty root and needs no proof")
        return
    verify_consistency(old.size, new.size, proof, old.root, new.root)


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The signed note of ``checkpoint``: what ``GET /ledger/v1/checkpoint`` serves."""
    return sign_note(checkpoint.body(), [signer])


def open_checkpoint(signed: str | bytes, verifiers: Iterable[Verifier]) -> tuple[Checkpoint, Note]:
    """The checkpoint of a signed note and the opened note (its verified and unknown signatures).

    Raises ``NoteError`` (see ``open_note``) or ``CheckpointError``.
    """
    opened = open_note(signed, verifiers)
    return parse_checkpoint(opened.text), opened
