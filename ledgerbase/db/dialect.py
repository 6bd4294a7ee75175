"""SQL dialects as data: quoting, placeholders and the few functions that differ.

The compiler asks a dialect object instead of branching on the database name.
"""

from __future__ import annotations

from dataclasses import dataclass


def quote_ident(name: str) -> str:
    """Quote an identifier that has already been resolved against the schema cache."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the SQL compiler needs to know about one database."""

    name: str
    numbered_params: bool  # $1, $2 (PostgreSQL) instead of ? (SQLite)
    supports_arrays: bool
    supports_fts: bool
    supports_regex: bool = True

    def placeholder(self, index: int) -> str:
        """The placeholder for the ``index``-th (1-based) parameter."""
        # SQLite's ?NNN form lets a statement reuse a parameter, as $N does on PostgreSQL
        return f"${index}" if self.numbered_params else f"?{index}"


SQLITE = Dialect(name="sqlite", numbered_params=False, supports_arrays=False, supports_fts=False)
POSTGRES = Dialect(name="postgres", numbered_params=True, supports_arrays=True, supports_fts=True)
