"""Where the ledger keeps what the integrator builds: tiles, entry bundles, checkpoints.

PostgreSQL: tables in the ``ledgerbase`` schema; SQLite: ``_ledgerbase_ledger_*`` tables.
A tile row holds the tile at its latest width: a tlog-tiles client asking for a
narrower partial tile gets its prefix (the hashes of a level never change once
written). The integrator writes tiles, bundles and the new checkpoint in one
transaction, so a crash never leaves a checkpoint without its tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledgerbase.db.dialect import Dialect


@dataclass(frozen=True, slots=True)
class LedgerTables:
    """Table names and placeholders of one dialect."""

    changes: str
    tiles: str
    bundles: str
    state: str
    cosignatures: str
    dialect: Dialect

    def p(self, index: int) -> str:
        """Placeholder number ``index`` (1-based)."""
        return self.dialect.placeholder(index)


POSTGRES_TABLES = (
    """CREATE TABLE IF NOT EXISTS ledgerbase.ledger_tiles (
  level int NOT NULL, idx bigint NOT NULL, width int NOT NULL, data bytea NOT NULL,
  PRIMARY KEY (level, idx))""",
    """CREATE TABLE IF NOT EXISTS ledgerbase.ledger_bundles (
  idx bigint PRIMARY KEY, width int NOT NULL, data bytea NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ledgerbase.ledger_state (
  id int PRIMARY KEY CHECK (id = 1), size bigint NOT NULL, root bytea NOT NULL,
  checkpoint text NOT NULL, published_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ledgerbase.ledger_cosignatures (
  witness text NOT NULL, size bigint NOT NULL, line text NOT NULL, received_at timestamptz NOT NULL,
  PRIMARY KEY (witness, size))""",
)

SQLITE_TABLES = (
    """CREATE TABLE IF NOT EXISTS _ledgerbase_ledger_tiles (
  level integer NOT NULL, idx integer NOT NULL, width integer NOT NULL, data blob NOT NULL,
  PRIMARY KEY (level, idx))""",
    """CREATE TABLE IF NOT EXISTS _ledgerbase_ledger_bundles (
  idx integer PRIMARY KEY, width integer NOT NULL, data blob NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS _ledgerbase_ledger_state (
  id integer PRIMARY KEY CHECK (id = 1), size integer NOT NULL, root blob NOT NULL,
  checkpoint text NOT NULL, published_at text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS _ledgerbase_ledger_cosignatures (
  witness text NOT NULL, size integer NOT NULL, line text NOT NULL, received_at text NOT NULL,
  PRIMARY KEY (witness, size))""",
)
