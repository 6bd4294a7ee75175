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
    request_timeout_seconds: float = 30.0  # a request not answered by then gets 504 (0: no limit)
    cors_origins: str = "*"  # "*" or a comma-separated list of allowed browser origins
    sqlite_readers: int = 4
    pg_pool_size: int = 10
    statement_timeout_ms: int = 30_000
    log_level: str = "info"
    access_log: bool = False  # one JSON line per request; errors are always logged
    proxy_headers: bool = False  # trust X-Forwarded-* (only behind a proxy you run)
    db_max_rows: int | None = None
    # anon may write tables without row-level security (tables with it: the policies decide)
    anon_writes_without_rls: bool = False
    # --- ledger ---
    ledger_enabled: bool = True  # capture every write in the ledger (off only to measure its cost)
    ledger_origin: str = ""  # the log's name in checkpoints (default: <hostname>/ledgerbase)
    ledger_key: str = ""  # note signer key text; default: generated into the data directory (0600)
    ledger_interval_seconds: float = 1.0  # at most one checkpoint per interval, when there are new entries
    ledger_public: bool = True  # /ledger/v1 readable without an API key, like a transparency log
    # comma-separated cosignature/v1 verifier keys whose cosignatures POST /ledger/v1/cosignature takes
    ledger_witnesses: str = ""
    # --- auth ---
    jwt_expiry_seconds: int = 3600  # lifetime of the access tokens /auth/v1 issues
    site_url: str = ""  # public URL of this server; issuer default: site_url + "/auth/v1"
    auth_issuer: str = ""  # "iss" of access tokens (default: site_url or the request's URL + "/auth/v1")
    auth_disable_signup: bool = False  # refuse POST /auth/v1/signup (admins can still create users)
    auth_password_min_length: int = 8
    auth_password_deny_list: bool = True  # refuse the ~1,000 most common passwords
    # argon2id cost, OWASP's recommendation by default (19 MiB, 2 passes, 1 lane)
    auth_argon2_memory_kib: int = 19_456
    auth_argon2_time_cost: int = 2
    auth_argon2_parallelism: int = 1
    auth_refresh_reuse_interval: float = 10.0  # seconds a rotated-out refresh token still works
    # token buckets: at most N requests per window, refilled continuously; 0 = no limit
    auth_rate_limit_window: float = 300.0
    auth_rate_limit_sign_up_per_ip: int = 30
    auth_rate_limit_sign_up_per_account: int = 5  # per email address
    auth_rate_limit_sign_in_per_ip: int = 30
    auth_rate_limit_sign_in_per_account: int = 15
    auth_rate_limit_refresh_per_ip: int = 150
    auth_rate_limit_refresh_per_account: int = 60
    # --- realtime ---
    realtime_enabled: bool = True  # serve /realtime/v1/websocket
    realtime_poll_interval: float = 0.05  # seconds between reads of new changes (postgres_changes)
    realtime_queue_limit: int = 10_000  # frames queued for one client before it is disconnected
    realtime_relay_channel: str = "ledgerbase:realtime"  # Redis pub/sub channel between servers (broadcast, presence)
    # a server not heard from for this long (killed, cut off) is gone: its presences leave (heartbeats every third)
    realtime_presence_timeout_seconds: float = 15.0
    # --- events ---
    events_enabled: bool = True  # publish committed changes to nats_url / redis_url when set
    events_nats_stream: str = "LEDGERBASE"  # JetStream stream (created if missing)
    events_nats_subject_prefix: str = "ledgerbase"  # subjects <prefix>.<table>.<op>; the stream takes <prefix>.>
    events_redis_key: str = "ledgerbase:changes"  # Redis stream key
    events_redis_maxlen: int = 1_000_000  # XADD MAXLEN ~ N: the stream is trimmed to about N entries
    events_batch_size: int = 500  # changes read and published per round
    events_poll_interval: float = 0.05  # seconds between reads of the outbox when it is drained
    events_retry_max_seconds: float = 30.0  # cap of the exponential backoff while a broker is down
    events_lease_seconds: float = 10.0  # a dead publisher's sinks are taken over after this long
    events_from_start: bool = True  # a new sink gets every change from the first (else from now on)
    webhooks: list[dict[str, object]] = []  # JSON list of {name, table, events, url, secret} (docs/events.md)
    webhooks_max_attempts: int = 5  # a change that fails this often becomes a dead letter
    webhooks_retry_initial_seconds: float = 1.0  # first wait after a failed delivery; doubles each time
    webhooks_retry_max_seconds: float = 60.0  # cap of that wait
    webhooks_timeout_seconds: float = 5.0  # a receiver that takes longer has failed

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ledgerbase.db'}"
