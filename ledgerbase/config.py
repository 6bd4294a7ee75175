"""One Settings object, read from ``LEDGERBASE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Server configuration; every field has an embedded-mode default."""

    model_config = SettingsConfigDict(env_prefix="LEDGERBASE_", extra="ignore")

    data_dir: Path = Path("./ledgerbase-data")
    database_url: str = ""
    jwt_secret: str = ""
    redis_url: str = ""
    nats_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    db_schema: str = "public"
    max_body_bytes: int = 1024 * 1024
    sqlite_readers: int = 4
    pg_pool_size: int = 10
    statement_timeout_ms: int = 30_000
    log_level: str = "info"
    access_log: bool = False  # one JSON line per request; errors are always logged
    proxy_headers: bool = False  # trust X-Forwarded-* (only behind a proxy you run)
    db_max_rows: int | None = None

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ledgerbase.db'}"
