"""Signed notes and cosignatures: golang.org/x/mod/sumdb/note's test vectors and the C2SP examples."""

from __future__ import annotations

import base64

import pytest

from ledgerbase.ledger import note
from ledgerbase.ledger.note import (
    CosignatureSigner,
    CosignatureVerifier,
    Ed25519Verifier,
    InvalidSignatureError,
    NoteError,
    Signature,
    Signer,
    UnverifiedNoteError,
)

# golang.org/x/mod/sumdb/note note_test.go
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6R"
             "yyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1Rv"
             "Mc+QQ=\n")
PETER = Signature("PeterNeumann", 0xC74F20A3, PETER_SIG.split()[2])
ENOCH = Signature("EnochRoot", 0xAF0CFE78, ENOCH_SIG.split()[2])

peter = note.parse_verifier_key(PETER_VKEY)
enoch = note.parse_verifier_key(ENOCH_VKEY)


def test_key_formats() -> None:
    assert isinstance(peter, Ed25519Verifier)
    assert (peter.name, peter.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert peter.key() == PETER_VKEY
    signer = Signer.from_key(PETER_SKEY)
    assert signer.key() == PETER_SKEY
    assert signer.verifier() == peter
    assert "AYEKFALV" not in repr(signer)  # the secret stays out of logs


def _mangled(key: str) -> list[str]:
    """Every proper substring and every one-byte change of ``key`` (as the Go tests try)."""
    raw = key.encode()
    out = {raw[i:j].decode() for i in range(len(raw) + 1) for j in range(i + 1, len(raw) + 1)} - {key}
    out |= {(raw[:i] + bytes([raw[i] + 1]) + raw[i + 1:]).decode() for i in range(len(raw))}
    return sorted(out)


def test_mangled_verifier_keys_fail() -> None:
    for bad in [*_mangled(PETER_VKEY),
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong length
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"]:  # unknown algorithm
        with pytest.raises(NoteError):
            note.parse_verifier_key(bad)


def test_mangled_signer_keys_fail() -> None:
    for bad in _mangled(PETER_SKEY):
        with pytest.raises(NoteError):
            Signer.from_key(bad)


def test_generate_key() -> None:
    skey, vkey = note.generate_key("EnochRoot")
    signer, verifier = Signer.from_key(skey), note.parse_verifier_key(vkey)
    assert signer.name == verifier.name == "EnochRoot"
    assert signer.key_id == verifier.key_id
    signature = signer.sign(b"hi")
    assert verifier.verify(b"hi", signature)
    assert not verifier.verify(b"hj", signature)
    assert not verifier.verify(b"hi", bytes([signature[0] ^ 1]) + signature[1:])
    for bad in ("", "a+b", "a b", "a\tb"):
        with pytest.raises(NoteError):
            note.generate_key(bad)


def test_sign_matches_go() -> None:
    signer = Signer.from_key(PETER_SKEY)
    want = TEXT + "\n" + PETER_SIG
    assert note.sign_note(TEXT, [signer]) == want
    # an existing signature by the same key is replaced
    assert note.sign_note(TEXT, [signer], keep=[Signature("PeterNeumann", 0xC74F20A3, "BADSIGN=")]) == want
    # other signatures are kept, before the new ones
    assert note.sign_note(TEXT, [signer], keep=[ENOCH]) == TEXT + "\n" + ENOCH_SIG + PETER_SIG
    for text, keep in (("abc", []), (TEXT, [Signature("a+b", 0, "ABCD")]),
                       (TEXT, [Signature("PeterNeumann", 0xC74F20A3, "BADHASH=")]), ("a\x01\n", [])):
        with pytest.raises(NoteError):
            note.sign_note(text, [] if keep else [signer], keep=keep)


def test_open_matches_go() -> None:
    message = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    opened = note.open_note(message, [peter])
    assert opened == note.Note(TEXT, (PETER,), (ENOCH,))
    assert note.open_note(message.encode(), [peter, enoch]) == note.Note(TEXT, (PETER, ENOCH), ())

    with pytest.raises(UnverifiedNoteError) as unverified:
        note.open_note(message, [])
    assert unverified.value.note == note.Note(TEXT, (), (PETER, ENOCH))

    with pytest.raises(NoteError, match="ambiguous key EnochRoot\\+af0cfe78"):
        note.open_note(TEXT + "\n" + ENOCH_SIG, [enoch, peter, enoch])
    note.open_note(TEXT + "\n" + PETER_SIG, [enoch, peter, enoch])  # an unused duplicate is fine

    for verifiers in ([peter], []):
        with pytest.raises(NoteError, match="malformed"):
            note.open_note(TEXT + "\n" + PETER_SIG * 101, verifiers)

    with pytest.raises(InvalidSignatureError):
        note.open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [peter])

    # repeated lines count once; a different bad signature by an unknown key is kept
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    opened = note.open_note(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd, [peter])
    assert opened.signatures == (PETER,)
    assert opened.unverified == (ENOCH, Signature("EnochRoot", 0xAF0CFE78, enoch_abcd.split()[2]))


@pytest.mark.parametrize("message", [
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name")[:-1],
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    TEXT + "\n" + "- PeterNeumann " + PETER_SIG.split()[2] + "\n",  # a hyphen, not an em dash
    TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",  # too short
    TEXT + "\n" + "\u2014 PeterNeumann not*base64\n",
])
def test_open_rejects_malformed(message: str) -> None:
    with pytest.raises(NoteError) as error:
        note.open_note(message, [peter])
    assert not isinstance(error.value, UnverifiedNoteError | InvalidSignatureError)


def test_open_rejects_invalid_utf8() -> None:
    with pytest.raises(NoteError):
        note.open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [peter])


# --- cosignatures (C2SP tlog-cosignature) -------------------------------------------------

CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
# the spec's example cosignature line
SPEC_COSIGNATURE = Signature("witness.example.com/w1", int.from_bytes(base64.b64decode("jWbPPw=="), "big"),
                             "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBI"
                             "fZ+qnA==")


def test_spec_cosignature_layout() -> None:
    assert note.cosignature_timestamp(SPEC_COSIGNATURE) == 1679315147  # the spec's "time 1679315147"
    assert note.cosigned_message(CHECKPOINT.encode(), 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")


def test_cosign_and_verify() -> None:
    log = Signer.generate("example.com/behind-the-sofa")
    witness = CosignatureSigner.generate("witness.example.com/w1")
    verifier = witness.verifier()
    signed = note.sign_note(CHECKPOINT, [log])
    cosigned = note.add_signature(signed, witness.cosign(CHECKPOINT, 1679315147))

    # the key id is computed with type byte 0x04, so it differs from the same key as a 0x01 signer
    assert verifier.key_id != Ed25519Verifier(verifier.name, verifier.public_key).key_id
    assert verifier.key_id == note.key_id(verifier.name, b"\x04" + verifier.public_key)
    assert note.parse_verifier_key(verifier.key()) == verifier
    assert isinstance(note.parse_verifier_key(verifier.key()), CosignatureVerifier)

    opened = note.open_note(cosigned, [log.verifier(), verifier])
    assert [s.name for s in opened.signatures] == [log.name, witness.name]
    assert note.cosignature_timestamp(opened.signatures[1]) == 1679315147
    # a log-only client keeps the cosignature as unverified
    assert note.open_note(cosigned, [log.verifier()]).unverified == (opened.signatures[1],)

    # a cosignature of another checkpoint, or with a changed timestamp, fails
    other = witness.cosign(CHECKPOINT.replace("20852163", "20852164"), 1679315147)
    with pytest.raises(InvalidSignatureError):
        note.open_note(note.add_signature(signed, other), [log.verifier(), verifier])
    raw = bytearray(base64.b64decode(opened.signatures[1].base64))
    raw[11] ^= 1
    tampered = Signature(witness.name, witness.key_id, base64.b64encode(raw).decode())
    with pytest.raises(InvalidSignatureError):
        note.open_note(note.add_signature(signed, tampered), [log.verifier(), verifier])
    with pytest.raises(NoteError):
        witness.cosign(CHECKPOINT, -1)
