"""The tables of Ledgerbase Auth: ``auth.*`` on PostgreSQL, ``_ledgerbase_auth_*`` on SQLite.

They are created before any migration runs, so migrations may reference
``auth.users (id)`` as Supabase projects do (on SQLite the translator maps
``auth.<name>`` to ``_ledgerbase_auth_<name>``).
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
)


def postgres_tables() -> tuple[str, ...]:
    """Idempotent DDL creating the auth tables on PostgreSQL (schema ``auth`` exists)."""
    return _POSTGRES


def sqlite_tables() -> tuple[str, ...]:
    """Idempotent DDL creating the auth tables on SQLite."""
    return _SQLITE
