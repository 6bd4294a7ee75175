"""Ledgerbase: a PostgREST-compatible back end on SQLite or PostgreSQL."""

__version__ = "0.1.0"
