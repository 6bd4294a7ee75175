"""What Ledgerbase sets up in a database before any migration: roles, grants, ``auth`` helpers.

PostgreSQL gets what Supabase's images ship: the roles ``anon``, ``authenticated``
and ``service_role`` (``service_role`` bypasses row-level security), the schema
``auth`` with ``auth.uid()``, ``auth.role()``, ``auth.jwt()`` and ``auth.email()``
reading the claims each request sets (``request.jwt.claims``), and default
privileges so that tables created by migrations are usable by the three roles,
row-level policies deciding which rows. SQLite has no roles: there Ledgerbase
compiles the policies into its statements (``ledgerbase.auth.policies``).
"""

from __future__ import annotations

API_ROLES = ("anon", "authenticated", "service_role")

_CREATE_ROLES = """
DO $lb$
DECLARE
  wanted text;
BEGIN
  FOREACH wanted IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = wanted) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', wanted);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at the same moment for another database of the cluster
      END;
    END IF;
  END LOOP;
  IF NOT (SELECT rolbypassrls FROM pg_roles WHERE rolname = 'service_role') THEN
    ALTER ROLE service_role BYPASSRLS;
  END IF;
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    -- the connecting role must be allowed to SET ROLE to each of them
    EXECUTE format('GRANT anon, authenticated, service_role TO %I', current_user);
  END IF;
END
$lb$
"""

# Claims arrive per transaction in request.jwt.claims (as PostgREST sets them); the
# request.jwt.claim.* form is what older PostgREST versions set, and Supabase reads both.
_AUTH_FUNCTIONS = (
    "CREATE SCHEMA IF NOT EXISTS auth",
    """CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb
$$""",
    """CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$""",
    """CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.role', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'))::text
$$""",
    """CREATE OR REPLACE FUNCTION auth.email() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.email', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email'))::text
$$""",
    "GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role",
    "GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role(), auth.email() "
    "TO anon, authenticated, service_role",
)

# Tables migrations create are granted to all three roles, as Supabase does; the rows
# each role sees are the policies' business. Ledgerbase itself keeps anon read-only on
# tables without row-level security (Settings.anon_writes_without_rls).
_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO anon, authenticated, service_role",
)
# Run once per database (recorded), so a REVOKE in a later migration stays revoked.
_FIRST_GRANTS = (
    "GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role",
    "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role",
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated, service_role",
)


def postgres_setup(first_time: bool) -> tuple[str, ...]:
    """Statements preparing a PostgreSQL database (idempotent); ``first_time`` adds the grants on
    objects that existed before Ledgerbase managed the database."""
    return (_CREATE_ROLES, *_AUTH_FUNCTIONS, *_GRANTS, *(_FIRST_GRANTS if first_time else ()))
