"""Database engines, the schema cache, introspection and migrations."""
