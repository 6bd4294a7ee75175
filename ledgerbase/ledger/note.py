"""C2SP signed notes with Ed25519 keys, and C2SP tlog-cosignature witness cosignatures.

Key and note formats are those of golang.org/x/mod/sumdb/note (BSD-licensed; the
parsing rules here follow its ``NewVerifier``, ``NewSigner``, ``Sign`` and ``Open``):

- signer key: ``PRIVATE+KEY+<name>+<hex key id>+base64(0x01 || 32-byte seed)``
- verifier key: ``<name>+<hex key id>+base64(0x01 || 32-byte public key)``
- key id: the first 4 bytes (big-endian) of SHA-256(name || "\\n" || type || public key)
- a signed note: the text (ending in a newline), a blank line, then one line per
  signature: ``— <name> base64(key id || signature)`` (U+2014 em dash).

A cosignature (type 0x04, ``cosignature/v1``) signs
``"cosignature/v1\\ntime <timestamp>\\n" || note text`` and its signature bytes are the
8-byte big-endian POSIX timestamp followed by the Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
MAX_SIGNATURES = 100
SIGNATURE_PREFIX = "\u2014 "
COSIGNATURE_HEADER = "cosignature/v1"


class NoteError(ValueError):
    """A key or note is malformed."""


class InvalidSignatureError(NoteError):
    """A signature by a known key does not verify."""


class UnverifiedNoteError(NoteError):
    """No signature of the note is by a known key; ``note`` holds what was parsed."""

    def __init__(self, note: Note) -> None:
        super().__init__("note has no verifiable signatures")
        self.note = note


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, key: bytes) -> int:
    """The key id of ``key`` (type byte || public key) named ``name``: SHA-256(name || "\\n" || key)[:4]."""
    return int.from_bytes(hashlib.sha256(name.encode() + b"\n" + key).digest()[:4], "big")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as error:
        raise NoteError("invalid base64") from error


class Verifier(Protocol):
    """Anything that checks note signatures of one key (name and key id)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key id) signs the note text ``message``."""
        ...


@dataclass(frozen=True, slots=True)
class Ed25519Verifier:
    """A signed-note verifier of type 0x01 (plain Ed25519 over the note text)."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> int:
        """The key id signatures by this key carry."""
        return key_id(self.name, bytes([ALG_ED25519]) + self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def key(self) -> str:
        """The verifier key text: ``name+hexkeyid+base64(0x01||pubkey)``."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the time line, then the note text."""
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n".encode() + text


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A verifier of tlog-cosignature/v1 (type 0x04) cosignatures by one witness key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> int:
        """The key id cosignatures by this key carry (computed with type byte 0x04)."""
        return key_id(self.name, bytes([ALG_COSIGNATURE_V1]) + self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (timestamp || Ed25519 signature) cosigns the checkpoint ``message``."""
        if len(signature) != 8 + 64:
            return False
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp >= 1 << 63:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                signature[8:], cosigned_message(message, timestamp))
        except InvalidSignature:
            return False
        return True

    def key(self) -> str:
        """The verifier key text: ``name+hexkeyid+base64(0x04||pubkey)``."""
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"


def parse_verifier_key(vkey: str) -> Ed25519Verifier | CosignatureVerifier:
    """The verifier a key text ``name+hexkeyid+base64(type||pubkey)`` describes (type 0x01 or 0x04).

    Raises ``NoteError`` if it is malformed, its key id does not match, or the type is unknown.
    """
    name, _, rest = vkey.partition("+")
    hex_id, _, encoded = rest.partition("+")
    if not _valid_name(name) or len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
        raise NoteError("malformed verifier key")
    key = _b64decode(encoded)
    if not key:
        raise NoteError("malformed verifier key")
    if int(hex_id, 16) != key_id(name, key):
        raise NoteError("verifier key id does not match the key")
    if len(key) != 33:
        raise NoteError("malformed verifier key")
    if key[0] not in (ALG_ED25519, ALG_COSIGNATURE_V1):
        raise NoteError(f"unknown verifier key type {key[0]:#04x}")
    try:
        Ed25519PublicKey.from_public_bytes(key[1:])
    except ValueError as error:
        raise NoteError("malformed verifier key") from error
    if key[0] == ALG_ED25519:
        return Ed25519Verifier(name, key[1:])
    return CosignatureVerifier(name, key[1:])


@dataclass(frozen=True, slots=True)
class Signer:
    """An Ed25519 note signer (the private key never appears in ``repr``)."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def from_key(cls, skey: str) -> Signer:
        """The signer of a key text ``PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)``.

        Raises ``NoteError`` if it is malformed or its key id does not match.
        """
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("malformed signer key")
        _, _, name, hex_id, encoded = parts
        if not _valid_name(name) or len(hex_id) != 8 or any(c not in "0123456789abcdefABCDEF" for c in hex_id):
            raise NoteError("malformed signer key")
        key = _b64decode(encoded)
        if len(key) != 33 or key[0] != ALG_ED25519:
            raise NoteError("malformed signer key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(key[1:]))
        if int(hex_id, 16) != signer.key_id:
            raise NoteError("signer key id does not match the key")
        return signer

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key named ``name``. Raises ``NoteError`` for an invalid name."""
        if not _valid_name(name):
            raise NoteError(f"invalid key name {name!r}")
        return cls(name, Ed25519PrivateKey.generate())

    def verifier(self) -> Ed25519Verifier:
        """The matching verifier."""
        return Ed25519Verifier(self.name, self.private_key.public_key().public_bytes_raw())

    @property
    def key_id(self) -> int:
        """The key id signatures by this key carry."""
        return self.verifier().key_id

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    def key(self) -> str:
        """The signer key text (secret): ``PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)``."""
        encoded = base64.b64encode(bytes([ALG_ED25519]) + self.private_key.private_bytes_raw()).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{encoded}"


def generate_key(name: str) -> tuple[str, str]:
    """A new key pair as texts: (signer key, verifier key)."""
    signer = Signer.generate(name)
    return signer.key(), signer.verifier().key()


@dataclass(frozen=True, slots=True)
class CosignatureSigner:
    """A witness key making tlog-cosignature/v1 cosignatures."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls, name: str) -> CosignatureSigner:
        """A new random witness key named ``name``. Raises ``NoteError`` for an invalid name."""
        if not _valid_name(name):
            raise NoteError(f"invalid key name {name!r}")
        return cls(name, Ed25519PrivateKey.generate())

    def verifier(self) -> CosignatureVerifier:
        """The matching verifier."""
        return CosignatureVerifier(self.name, self.private_key.public_key().public_bytes_raw())

    @property
    def key_id(self) -> int:
        """The key id cosignatures by this key carry."""
        return self.verifier().key_id

    def cosign(self, text: str, timestamp: int) -> Signature:
        """The cosignature of checkpoint note ``text`` at POSIX time ``timestamp``."""
        if not 0 <= timestamp < 1 << 63:
            raise NoteError(f"timestamp {timestamp} out of range")
        signature = self.private_key.sign(cosigned_message(text.encode(), timestamp))
        raw = self.key_id.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + signature
        return Signature(self.name, self.key_id, base64.b64encode(raw).decode())


# --- notes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, key id and base64(key id || signature) as written."""

    name: str
    key_id: int
    base64: str

    def line(self) -> str:
        """The signature line, ending in a newline."""
        return f"{SIGNATURE_PREFIX}{self.name} {self.base64}\n"

    def signature(self) -> bytes:
        """The signature bytes after the key id."""
        return _b64decode(self.base64)[4:]


def cosignature_timestamp(signature: Signature) -> int:
    """The POSIX timestamp of a cosignature/v1. Raises ``NoteError`` if it is not one."""
    raw = signature.signature()
    if len(raw) != 8 + 64:
        raise NoteError("not a cosignature")
    return int.from_bytes(raw[:8], "big")


@dataclass(frozen=True, slots=True)
class Note:
    """An opened note: its text, the signatures verified, and those by unknown keys (kept as is)."""

    text: str
    signatures: tuple[Signature, ...]
    unverified: tuple[Signature, ...] = ()


def _check_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NoteError("malformed note") from error
    if any(c < " " and c != "\n" for c in text):
        raise NoteError("malformed note")
    return text


def sign_note(text: str, signers: Sequence[Signer], keep: Iterable[Signature] = ()) -> str:
    """The signed note: ``text``, a blank line, the ``keep`` signatures not replaced by a
    signer's key, then one signature line per signer.

    Raises ``NoteError`` if the text does not end in a newline, has control characters,
    or a kept signature is malformed.
    """
    if not text.endswith("\n"):
        raise NoteError("malformed note")
    message = _check_text(text.encode())
    replaced = {(signer.name, signer.key_id) for signer in signers}
    lines = [message, "\n"]
    for signature in keep:
        if not _valid_name(signature.name):
            raise NoteError("malformed note")
        if (signature.name, signature.key_id) in replaced:
            continue
        raw = _b64decode(signature.base64)
        if len(raw) < 4 or int.from_bytes(raw[:4], "big") != signature.key_id:
            raise NoteError("malformed note")
        lines.append(signature.line())
    for signer in signers:
        raw = signer.key_id.to_bytes(4, "big") + signer.sign(message.encode())
        lines.append(Signature(signer.name, signer.key_id, base64.b64encode(raw).decode()).line())
    return "".join(lines)


def add_signature(note: str, signature: Signature) -> str:
    """``note`` (a signed note) with one more signature line, e.g. a witness's cosignature."""
    if not note.endswith("\n"):
        raise NoteError("malformed note")
    return note + signature.line()


def open_note(message: str | bytes, verifiers: Iterable[Verifier]) -> Note:
    """Parse a signed note and verify its signatures by the known ``verifiers``.

    Signatures by unknown keys are kept in ``Note.unverified``; repeated lines count once.
    Raises ``NoteError`` if the note is malformed or has more than 100 signatures,
    ``InvalidSignatureError`` if a known key's signature fails, ``UnverifiedNoteError``
    if no known key signed it, and ``NoteError`` if two verifiers share a name and key id
    that a signature uses.
    """
    data = message.encode() if isinstance(message, str) else message
    _check_text(data)
    split = data.rfind(b"\n\n")
    if split < 0:
        raise NoteError("malformed note")
    text, lines = data[:split + 1], data[split + 2:]
    if not lines.endswith(b"\n"):
        raise NoteError("malformed note")
    known: dict[tuple[str, int], list[Verifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)

    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    seen_unverified: set[str] = set()
    count = 0
    for line in lines.decode().split("\n")[:-1]:
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError("malformed note")
        name, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        if not _valid_name(name) or not encoded:
            raise NoteError("malformed note")
        try:
            raw = _b64decode(encoded)
        except NoteError as error:
            raise NoteError("malformed note") from error
        if len(raw) < 5:
            raise NoteError("malformed note")
        count += 1
        if count > MAX_SIGNATURES:
            raise NoteError("malformed note")
        signature = Signature(name, int.from_bytes(raw[:4], "big"), encoded)
        candidates = known.get((signature.name, signature.key_id))
        if candidates is None:
            if line not in seen_unverified:
                seen_unverified.add(line)
                unverified.append(signature)
            continue
        if len(candidates) > 1:
            raise NoteError(f"ambiguous key {name}+{signature.key_id:08x}")
        if (name, signature.key_id) in seen:
            continue
        seen.add((name, signature.key_id))
        if not candidates[0].verify(text, raw[4:]):
            raise InvalidSignatureError(f"invalid signature for key {name}+{signature.key_id:08x}")
        verified.append(signature)
    note = Note(text.decode(), tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(note)
    return note
