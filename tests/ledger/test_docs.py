"""The Python example of docs/ledger.md runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "ledger.md"


def test_formats_example_runs() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {})
    assert len(out.getvalue().strip()) == 44  # the base64 root hash


def test_entry_example_is_what_make_entry_writes() -> None:
    from ledgerbase.ledger.entry import make_entry

    (line,) = [line for line in DOC.read_text().splitlines() if line.startswith('{"actor"')]
    digest = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    written = make_entry(7, "2026-01-02T03:04:05.123456Z", "orders", "update", {"id": 42}, digest, "user-1")
    assert written == line.encode()
