"""The tables of Ledgerbase Auth: ``auth.*`` on PostgreSQL, ``_ledgerbase_auth_*`` on SQLite.

They are created before any migration runs, so migrations may reference
``auth.users (id)`` as Supabase projects do (on SQLite the translator maps
``auth.<name>`` to ``_ledgerbase_auth_<name>``). Names follow Supabase Auth
(GoTrue) where they mean the same thing; refresh tokens are kept only as their
SHA-256 (``token_hash``), never in clear. Every statement is idempotent.
"""

from __future__ import annotations

SQLITE_PREFIX = "_ledgerbase_auth_"

_POSTGRES = (
    """CREATE TABLE IF NOT EXISTS auth.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  aud text NOT NULL DEFAULT 'authenticated',
  role text NOT NULL DEFAULT 'authenticated',
  email text UNIQUE,
  encrypted_password text,
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb NOT NULL DEFAULT '{}',
  raw_user_meta_data jsonb NOT NULL DEFAULT '{}',
  phone text,
  is_anonymous boolean NOT NULL DEFAULT false,
  banned_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
)""",
    # one per sign-in; not_after set = revoked (refresh-token reuse) or expired
    """CREATE TABLE IF NOT EXISTS auth.sessions (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  aal text NOT NULL DEFAULT 'aal1',
  not_after timestamptz,
  refreshed_at timestamptz,
  user_agent text,
  ip text,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON auth.sessions (user_id)",
    # the rotation chain of a session: parent = token_hash of the token this one replaced
    """CREATE TABLE IF NOT EXISTS auth.refresh_tokens (
  id bigserial PRIMARY KEY,
  token_hash text NOT NULL UNIQUE,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  session_id uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
  parent text,
  revoked boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS refresh_tokens_session_id_idx ON auth.refresh_tokens (session_id)",
    # payload: {"action", "actor_id", "actor_username", "log_type", "traits"}; never secrets
    """CREATE TABLE IF NOT EXISTS auth.audit_log_entries (
  id uuid PRIMARY KEY,
  payload jsonb NOT NULL,
  ip_address text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS audit_log_entries_created_at_idx ON auth.audit_log_entries (created_at)",
)

_SQLITE = (
    f"""CREATE TABLE IF NOT EXISTS {SQLITE_PREFIX}users (
  id text PRIMARY KEY,
  aud text NOT NULL DEFAULT 'authenticated',
  role text NOT NULL DEFAULT 'authenticated',
  email text UNIQUE,
  encrypted_password text,
  email_confirmed_at text,
  last_sign_in_at text,
  raw_app_meta_data text NOT NULL DEFAULT '{{}}',
  raw_user_meta_data text NOT NULL DEFAULT '{{}}',
  phone text,
  is_anonymous integer NOT NULL DEFAULT 0,
  banned_until text,
  created_at text NOT NULL,
  updated_at text NOT NULL
)""",
    f"""CREATE TABLE IF NOT EXISTS {SQLITE_PREFIX}sessions (
  id text PRIMARY KEY,
  user_id text NOT NULL REFERENCES {SQLITE_PREFIX}users (id) ON DELETE CASCADE,
  aal text NOT NULL DEFAULT 'aal1',
  not_after text,
  refreshed_at text,
  user_agent text,
  ip text,
  created_at text NOT NULL,
  updated_at text NOT NULL
)""",
    f"CREATE INDEX IF NOT EXISTS {SQLITE_PREFIX}sessions_user_id_idx ON {SQLITE_PREFIX}sessions (user_id)",
    f"""CREATE TABLE IF NOT EXISTS {SQLITE_PREFIX}refresh_tokens (
  id integer PRIMARY KEY,
  token_hash text NOT NULL UNIQUE,
  user_id text NOT NULL REFERENCES {SQLITE_PREFIX}users (id) ON DELETE CASCADE,
  session_id text NOT NULL REFERENCES {SQLITE_PREFIX}sessions (id) ON DELETE CASCADE,
  parent text,
  revoked integer NOT NULL DEFAULT 0,
  created_at text NOT NULL,
  updated_at text NOT NULL
)""",
    f"CREATE INDEX IF NOT EXISTS {SQLITE_PREFIX}refresh_tokens_session_id_idx "
    f"ON {SQLITE_PREFIX}refresh_tokens (session_id)",
    f"""CREATE TABLE IF NOT EXISTS {SQLITE_PREFIX}audit_log_entries (
  id text PRIMARY KEY,
  payload text NOT NULL,
  ip_address text NOT NULL DEFAULT '',
  created_at text NOT NULL
)""",
    f"CREATE INDEX IF NOT EXISTS {SQLITE_PREFIX}audit_log_entries_created_at_idx "
    f"ON {SQLITE_PREFIX}audit_log_entries (created_at)",
)


def postgres_tables() -> tuple[str, ...]:
    """Idempotent DDL creating the auth tables on PostgreSQL (schema ``auth`` exists)."""
    return _POSTGRES


def sqlite_tables() -> tuple[str, ...]:
    """Idempotent DDL creating the auth tables on SQLite."""
    return _SQLITE
