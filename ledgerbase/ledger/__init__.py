"""The verifiable ledger: every committed write a leaf of an RFC 9162 Merkle log."""
