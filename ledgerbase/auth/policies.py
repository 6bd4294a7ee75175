"""Row-level policies on SQLite, with PostgreSQL's semantics.

PostgreSQL enforces ``CREATE POLICY`` itself (requests run as the role of their
token). SQLite has no such thing, so the translator stores each policy compiled
(``ledgerbase.db.translate``: its clauses, and USING / WITH CHECK as SQLite SQL
with the policy's own table written as ``__lb_self__`` and ``auth.uid()`` as
``LB_AUTH_UID()``), and the statements of a request are compiled with the
resulting predicates (``Guards``), the auth helpers becoming bound parameters.

The rules are PostgreSQL's (``src/backend/rewrite/rowsecurity.c``):
- a table with row-level security and no policy for the role and command: no rows;
- permissive policies are OR-ed, restrictive ones AND-ed onto that;
- USING filters the rows a command sees; WITH CHECK (USING when there is none)
  must hold for every row an INSERT or UPDATE writes, or the statement fails (42501);
- ``service_role`` bypasses row-level security; a table without it is not filtered.
Ledgerbase's writes return their rows (as PostgreSQL's RETURNING does), so, as on
PostgreSQL, UPDATE and DELETE also only see rows the SELECT policies show, and a
written row must be visible under them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import orjson
import sqlglot
import structlog
from sqlglot import exp

from ledgerbase.db.dialect import quote_ident
from ledgerbase.db.schema import SchemaCache
from ledgerbase.db.translate import POLICY_SELF
from ledgerbase.errors import LedgerbaseError

Command = Literal["SELECT", "INSERT", "UPDATE", "DELETE"]
BYPASS_ROLES = frozenset({"service_role"})

log = structlog.get_logger("ledgerbase.policies")
_MARKERS = re.compile(rf"{POLICY_SELF}\.|LB_AUTH_(UID|ROLE|JWT|EMAIL)\(\)", re.IGNORECASE)
_DENY = "0"


@dataclass(frozen=True, slots=True)
class Policy:
    """One compiled policy of a table."""

    table: str
    name: str
    permissive: bool
    command: str  # ALL, SELECT, INSERT, UPDATE or DELETE
    roles: frozenset[str]
    using: str | None
    check: str | None

    def applies(self, role: str, command: Command) -> bool:
        """Whether this policy concerns ``role`` running ``command``."""
        return (self.command in ("ALL", command)) and (role in self.roles or "public" in self.roles)


@dataclass(frozen=True, slots=True)
class Predicate:
    """A condition over one table, to be rendered for the alias a statement gives it.

    ``parts`` are literal SQL, ``SELF`` (the table's alias) or ``("helper", name)``
    for an auth helper (uid, role, jwt, email) whose value is bound.
    """

    parts: tuple[str | tuple[str, str], ...]

    @classmethod
    def of(cls, sql: str) -> Predicate:
        """Split compiled SQL at its markers."""
        parts: list[str | tuple[str, str]] = []
        position = 0
        for match in _MARKERS.finditer(sql):
            parts.append(sql[position:match.start()])
            parts.append(("helper", match.group(1).lower()) if match.group(1) else ("self", ""))
            position = match.end()
        parts.append(sql[position:])
        return cls(parts=tuple(part for part in parts if part != ""))

    @property
    def denies_all(self) -> bool:
        """Whether no row can pass (no policy allows the command)."""
        return self.parts == (_DENY,)

    def render(self, alias: str, bind_helper: Callable[[str], str]) -> str:
        """The SQL of the condition with ``alias`` for the table and helpers bound."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif part[0] == "self":
                out.append(quote_ident(alias) + ".")
            else:
                out.append(bind_helper(part[1]))
        return "".join(out)


class Guards:
    """The predicates row-level security adds for one role (``None`` = no restriction)."""

    def __init__(self, role: str, rls_tables: frozenset[str], policies: dict[str, tuple[Policy, ...]]) -> None:
        self.role = role
        self._rls = rls_tables
        self._policies = policies
        self._using: dict[tuple[str, str], Predicate | None] = {}
        self._check: dict[tuple[str, str], Predicate | None] = {}

    def protects(self, table: str) -> bool:
        """Whether ``table`` has row-level security (for this role, which does not bypass it)."""
        return table in self._rls

    def using(self, table: str, command: Command) -> Predicate | None:
        """Rows of ``table`` that ``command`` may see: permissive USING OR-ed, restrictive AND-ed.

        Raises LedgerbaseError 42P17 when the policies refer back to themselves.
        """
        key = (table, command)
        if key not in self._using:
            sql = self._combined(table, command, with_check=False, active=())
            self._using[key] = Predicate.of(sql) if sql is not None else None
        return self._using[key]

    def check(self, table: str, command: Command) -> Predicate | None:
        """What a row written by ``command`` must satisfy (WITH CHECK, else USING)."""
        key = (table, command)
        if key not in self._check:
            sql = self._combined(table, command, with_check=True, active=())
            self._check[key] = Predicate.of(sql) if sql is not None else None
        return self._check[key]

    def _combined(self, table: str, command: Command, *, with_check: bool,
                  active: tuple[str, ...]) -> str | None:
        """The combined condition as SQL with markers, the tables it reads under their own
        SELECT policies (as PostgreSQL expands policies inside policies)."""
        sql = self._combine(table, command, with_check=with_check)
        if sql is None or "SELECT" not in sql.upper():
            return sql
        parsed = sqlglot.parse_one(f"SELECT 1 WHERE {sql}", read="sqlite")
        if not any(found.name in self._rls for found in parsed.find_all(exp.Table)):
            return sql
        if table in active:
            # PostgreSQL: a policy with sub-queries reached again while it is being expanded
            raise LedgerbaseError(f'infinite recursion detected in policy for relation "{table}"',
                                  code="42P17", status=500)
        count = 0

        def guard(node: exp.Expr) -> exp.Expr:
            nonlocal count
            if not isinstance(node, exp.Table) or node.name not in self._rls:
                return node
            inner = self._combined(node.name, "SELECT", with_check=False, active=(*active, table))
            if inner is None:
                return node
            count += 1
            alias = f"_lb_p{len(active)}_{count}"
            condition = inner.replace(f"{POLICY_SELF}.", f'"{alias}".')
            rows = sqlglot.parse_one(f'SELECT * FROM {quote_ident(node.name)} AS "{alias}" WHERE {condition}',
                                     read="sqlite")
            return exp.Subquery(this=rows, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name)))

        expanded = parsed.transform(guard)
        return str(expanded.args["where"].this.sql(dialect="sqlite"))

    def _combine(self, table: str, command: Command, *, with_check: bool) -> str | None:
        if table not in self._rls:
            return None
        permissive: list[str] = []
        restrictive: list[str] = []
        for policy in self._policies.get(table, ()):
            if not policy.applies(self.role, command):
                continue
            condition = (policy.check or policy.using) if with_check else policy.using
            if condition is None:
                continue
            (permissive if policy.permissive else restrictive).append(condition)
        if not permissive:
            return _DENY
        sql = "(" + " OR ".join(f"({c})" for c in permissive) + ")"
        for condition in restrictive:
            sql += f" AND ({condition})"
        return sql


class PolicySet:
    """The compiled policies of one schema cache, with a ``Guards`` per role."""

    def __init__(self, cache: SchemaCache) -> None:
        self._rls = frozenset(name for name, table in cache.tables.items() if table.rls)
        policies: dict[str, list[Policy]] = {}
        for stored in cache.policies:
            if stored.compiled is None:
                log.warning("policy_not_compiled", table=stored.table, policy=stored.name,
                            hint="re-apply the migration that creates it; until then it allows nothing")
                continue
            data = orjson.loads(stored.compiled)
            policies.setdefault(stored.table, []).append(Policy(
                table=stored.table, name=stored.name, permissive=bool(data["permissive"]),
                command=str(data["command"]), roles=frozenset(data["roles"]),
                using=data["using"], check=data["check"],
            ))
        self._policies = {table: tuple(found) for table, found in policies.items()}
        self._by_role: dict[str, Guards] = {}

    def for_role(self, role: str) -> Guards | None:
        """The guards of ``role``; None when it bypasses row-level security."""
        if role in BYPASS_ROLES:
            return None
        guards = self._by_role.get(role)
        if guards is None:
            guards = self._by_role[role] = Guards(role, self._rls, self._policies)
        return guards
