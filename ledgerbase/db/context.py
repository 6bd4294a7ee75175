"""Who a statement runs for: the role and JWT claims a request carries into the database."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The database role of a request and its claims.

    PostgreSQL gets them per transaction (``SET LOCAL ROLE`` and ``request.jwt.claims``,
    as PostgREST does); on SQLite the policy compiler binds them as parameters, and
    the writer exposes them to column defaults through ``lb_auth_*()``.
    """

    role: str
    claims_json: str
    uid: str | None = None
    email: str | None = None

    def helper(self, name: str) -> str | None:
        """The value of ``auth.<name>()``: uid, role, jwt (JSON text) or email."""
        if name == "uid":
            return self.uid
        if name == "role":
            return self.role
        if name == "jwt":
            return self.claims_json
        if name == "email":
            return self.email
        raise KeyError(name)


# The context of the transaction running in this thread (SQLite's writer thread).
current = threading.local()


def current_helper(name: str) -> str | None:
    """``auth.<name>()`` for the transaction running in this thread; None outside one."""
    context: RequestContext | None = getattr(current, "context", None)
    return context.helper(name) if context is not None else None


def current_actor() -> str:
    """Who the running transaction writes for, as ledger entries name it: the user id, else
    the role; ``ledgerbase`` for the server's own writes (migrations, Auth)."""
    context: RequestContext | None = getattr(current, "context", None)
    if context is None:
        return "ledgerbase"
    return context.uid or context.role
