"""How policies combine per role and command (PostgreSQL's rules), as pure values."""

from __future__ import annotations

import orjson
import pytest

from ledgerbase.auth.policies import PolicySet
from ledgerbase.db.schema import Column, PgType, SchemaCache, StoredPolicy, Table


def _policy(name: str, command: str = "ALL", roles: tuple[str, ...] = ("public",), *, permissive: bool = True,
            using: str | None = None, check: str | None = None) -> StoredPolicy:
    return StoredPolicy(table="notes", name=name, compiled=orjson.dumps({
        "permissive": permissive, "command": command, "roles": list(roles), "using": using, "check": check,
    }).decode())


def _guards(role: str, *policies: StoredPolicy, rls: bool = True) -> PolicySet:
    table = Table(name="notes", schema="public", columns=(Column(name="id", type=PgType.parse("bigint")),),
                  rls=rls)
    return PolicySet(SchemaCache(schema="public", tables={"notes": table}, relationships={},
                                 policies=policies))


def _render(policy_set: PolicySet, role: str, command: str, *, check: bool = False) -> str | None:
    guards = policy_set.for_role(role)
    assert guards is not None
    predicate = guards.check("notes", command) if check else guards.using("notes", command)  # type: ignore[arg-type]
    return None if predicate is None else predicate.render("t0", lambda name: f"<{name}>")


OWN = "(__lb_self__.owner = LB_AUTH_UID())"
CASES = [
    # (policies, role, command, with_check, expected SQL)
    ((), "authenticated", "SELECT", False, "0"),  # RLS on, no policy: nothing
    ((_policy("own", using=OWN),), "authenticated", "SELECT", False, '(((\"t0\".owner = <uid>)))'),
    ((_policy("own", using=OWN),), "authenticated", "DELETE", False, '(((\"t0\".owner = <uid>)))'),
    ((_policy("own", "SELECT", ("authenticated",), using=OWN),), "anon", "SELECT", False, "0"),
    ((_policy("own", "SELECT", using=OWN),), "authenticated", "UPDATE", False, "0"),
    # two permissive policies OR-ed, a restrictive one AND-ed
    ((_policy("a", using="(__lb_self__.shared)"), _policy("b", using=OWN),
      _policy("r", permissive=False, using="(NOT __lb_self__.archived)")), "authenticated", "SELECT", False,
     '((("t0".shared)) OR (("t0".owner = <uid>))) AND ((NOT "t0".archived))'),
    # a restrictive policy alone allows nothing
    ((_policy("r", permissive=False, using="(1)"),), "authenticated", "SELECT", False, "0"),
    # WITH CHECK falls back to USING
    ((_policy("own", using=OWN),), "authenticated", "INSERT", True, '(((\"t0\".owner = <uid>)))'),
    ((_policy("ins", "INSERT", check="(LB_AUTH_ROLE() = 'authenticated')"),), "anon", "INSERT", True,
     "(((<role> = 'authenticated')))"),
    # an INSERT-only policy gives no USING for SELECT
    ((_policy("ins", "INSERT", check="(1)"),), "authenticated", "SELECT", False, "0"),
]


@pytest.mark.parametrize(("policies", "role", "command", "check", "expected"), CASES)
def test_policies_combine_as_postgresql_does(policies: tuple[StoredPolicy, ...], role: str, command: str,
                                             check: bool, expected: str) -> None:
    assert _render(_guards(role, *policies), role, command, check=check) == expected


def test_service_role_bypasses_and_tables_without_rls_are_not_filtered() -> None:
    assert _guards("service_role", _policy("own", using=OWN)).for_role("service_role") is None
    assert _render(_guards("anon", rls=False), "anon", "SELECT") is None


def test_a_policy_stored_before_compilation_allows_nothing() -> None:
    stale = StoredPolicy(table="notes", name="old", compiled=None)
    assert _render(_guards("authenticated", stale), "authenticated", "SELECT") == "0"
