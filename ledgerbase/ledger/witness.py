"""Witnessing (C2SP tlog-witness, tlog-cosignature/v1): a witness cosigns a checkpoint only after
checking it extends every checkpoint it cosigned before; the log publishes the cosignatures.

- ``witness_once``: the witness's side (``ledgerbase ledger witness``): fetch the log's
  checkpoint, verify its signature (trust on first use) and a consistency proof from the
  last checkpoint kept in its state, cosign, and POST the cosignature to the log.
- ``accept_cosignatures``: the log's side (``POST /ledger/v1/cosignature``): only
  configured witness keys, only valid cosignatures of a checkpoint this log signed.

A witness key file holds a standard note signer key
(``PRIVATE+KEY+name+hexkeyid+base64(0x01 || seed)``); the cosignature/v1 key made from
it has key id SHA-256(name || "\\n" || 0x04 || public key)[:4], as
transparency-dev/formats' ``NewSignerForCosignatureV1`` derives it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ledgerbase.errors import LedgerbaseError
from ledgerbase.ledger.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from ledgerbase.ledger.note import (
    SIGNATURE_PREFIX,
    CosignatureSigner,
    CosignatureVerifier,
    Ed25519Verifier,
    InvalidSignatureError,
    NoteError,
    Signer,
    UnverifiedNoteError,
    Verifier,
    open_note,
    parse_verifier_key,
)
from ledgerbase.ledger.verify import (
    LogState,
    VerifyError,
    check_extends,
    fetch_consistency,
    get_text,
    ledger_client,
    open_signed_checkpoint,
    trusted_key,
)
from ledgerbase.security import load_or_create_secret_file


def default_witness_name() -> str:
    """``<hostname>/witness``."""
    return f"{socket.gethostname()}/witness"


def load_or_create_witness_key(path: Path, name: str | None = None) -> tuple[CosignatureSigner, bool]:
    """The witness key in ``path``, generated there (mode 0600) on first use; and whether it is new.

    Raises VerifyError if the file cannot be written or does not hold a note signer key.
    """
    existed = path.exists()
    try:
        text = load_or_create_secret_file(path, lambda: Signer.generate(name or default_witness_name()).key().encode())
    except OSError as error:
        raise VerifyError(f"cannot read or create the witness key {path}: {error.strerror}") from None
    try:
        signer = Signer.from_key(text.decode().strip())
    except (NoteError, UnicodeDecodeError) as error:
        raise VerifyError(f"{path} does not hold a note signer key: {error}") from None
    return CosignatureSigner(signer.name, signer.private_key), not existed


@dataclass(frozen=True, slots=True)
class Witnessed:
    """What one witnessing round did."""

    checkpoint: Checkpoint
    earlier: Checkpoint | None
    line: str  # the cosignature line posted
    accepted: bool  # the log took it
    reply: str  # the log's answer


async def witness_once(url: str, signer: CosignatureSigner, *, state: LogState | None = None,
                       log_key: str | None = None, now: int | None = None) -> tuple[Witnessed, LogState]:
    """Check the log's checkpoint extends ``state``'s, cosign it and POST the cosignature.

    Returns what happened and the new state (to save: the witness never cosigns a
    checkpoint that does not extend it). Raises VerifyError for a bad signature, a
    smaller tree, another origin or a failed consistency proof, before cosigning.
    """
    async with ledger_client(url) as client:
        served = (await get_text(client, "key")).strip()
        verifier = trusted_key(served, log_key, state)
        signed = await get_text(client, "checkpoint")
        checkpoint = open_signed_checkpoint(signed, verifier)
        log_lines = open_note(signed, [verifier]).signatures  # verified just above
        earlier = state.parsed(verifier) if state is not None else None
        if earlier is not None:
            proof = []
            if 0 < earlier.size < checkpoint.size:
                proof = await fetch_consistency(client, earlier.size, checkpoint.size)
            check_extends(earlier, checkpoint, proof)
        cosignature = signer.cosign(checkpoint.body(), int(time.time()) if now is None else now)
        new_state = LogState(verifier.key(), signed)
        # the whole cosigned note: the log checks it signed this very checkpoint
        body = "".join([checkpoint.body(), "\n", *(s.line() for s in log_lines), cosignature.line()])
        try:
            response = await client.post("cosignature", content=body.encode(),
                                         headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as error:
            raise VerifyError(f"POST cosignature: {error}") from None
    accepted = response.status_code == 200
    return Witnessed(checkpoint, earlier, cosignature.line(), accepted, response.text), new_state




# --- the log's side ---------------------------------------------------------------------------


def parse_witness_keys(text: str) -> tuple[CosignatureVerifier, ...]:
    """The witness verifier keys of the ``ledger_witnesses`` setting (comma-separated).

    Raises LedgerbaseError naming a key that is malformed or not a cosignature/v1 key.
    """
    keys = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            verifier = parse_verifier_key(item)
        except NoteError as error:
            raise LedgerbaseError(f"LEDGERBASE_LEDGER_WITNESSES: {item!r} is not a verifier key: {error}",
                                  code="PGRST000", status=500) from None
        if not isinstance(verifier, CosignatureVerifier):
            raise LedgerbaseError(f"LEDGERBASE_LEDGER_WITNESSES: {item!r} is not a cosignature/v1 witness key",
                                  code="PGRST000", status=500)
        keys.append(verifier)
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified cosignature to keep: witness (``name+hexkeyid``), tree size, signature line."""

    witness: str
    size: int
    line: str


def _refused(message: str, status: int = 403) -> LedgerbaseError:
    return LedgerbaseError(message, code="42501" if status == 403 else "PGRST100", status=status)


def accept_cosignatures(body: bytes, current: str, log_key: Ed25519Verifier,
                        witnesses: Sequence[CosignatureVerifier]) -> list[Cosignature]:
    """The cosignatures in a ``POST /ledger/v1/cosignature`` body, verified.

    ``body``: cosignature lines for the checkpoint ``current`` (the log's latest signed
    note), or a whole cosigned checkpoint note carrying the log's own signature (a
    checkpoint it published, possibly an earlier one). Raises LedgerbaseError: 403 when
    no witness is configured, a line is from an unknown key, a cosignature does not
    verify, or the checkpoint is not signed by this log; 400 for a malformed body;
    409 for a checkpoint beyond or beside the current one.
    """
    if not witnesses:
        raise _refused("this log accepts no cosignatures: no witness keys are configured "
                       "(LEDGERBASE_LEDGER_WITNESSES)")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise _refused("the body is not UTF-8 text", 400) from None
    if text.startswith(SIGNATURE_PREFIX):
        text = current + text
    verifiers: list[Verifier] = [log_key, *witnesses]
    try:
        opened = open_note(text, verifiers)
    except InvalidSignatureError as error:
        raise _refused(f"refused: {error}") from None
    except UnverifiedNoteError:
        raise _refused("the checkpoint is not signed by this log") from None
    except NoteError as error:
        raise _refused(f"not cosignature lines or a cosigned checkpoint: {error}", 400) from None
    if not any(s.name == log_key.name and s.key_id == log_key.key_id for s in opened.signatures):
        raise _refused("the checkpoint is not signed by this log")
    if opened.unverified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in opened.unverified)
        raise _refused(f"not a configured witness: {names}")
    try:
        claimed = parse_checkpoint(opened.text)
        latest = parse_checkpoint(current.partition("\n\n")[0] + "\n")
    except CheckpointError as error:
        raise _refused(f"not a checkpoint: {error}", 400) from None
    if claimed.size > latest.size or (claimed.size == latest.size and claimed != latest):
        raise _refused(f"the checkpoint of size {claimed.size} is not one this log published", 409)
    cosignatures = [Cosignature(f"{s.name}+{s.key_id:08x}", claimed.size, s.line())
                    for s in opened.signatures if not (s.name == log_key.name and s.key_id == log_key.key_id)]
    if not cosignatures:
        raise _refused("no cosignature in the body", 400)
    return cosignatures
