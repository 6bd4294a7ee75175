"""The admin endpoints of /auth/v1 (service_role key only): users, sessions, audit log.

``GET/POST /admin/users``, ``GET/PUT/DELETE /admin/users/{id}`` as GoTrue;
Ledgerbase adds ``GET/DELETE /admin/users/{id}/sessions`` and
``DELETE /admin/sessions/{id}`` to list and revoke sign-ins, and serves the
audit log at ``GET /admin/audit`` as GoTrue does. The caller's role is checked
by the service before any of these run.
"""

from __future__ import annotations

import math
from typing import Any

from ledgerbase.auth.accounts import Accounts, Client
from ledgerbase.auth.errors import AuthApiError, user_not_found, validation_failed
from ledgerbase.auth.http import AuthReply, AuthRequest
from ledgerbase.auth.store import SessionRecord, utc_now
from ledgerbase.auth.users import iso, parse_uuid, user_json

_DEFAULT_PER_PAGE = 50
_MAX_PER_PAGE = 1000


def _page(request: AuthRequest) -> tuple[int, int]:
    """GoTrue's ``page`` (1-based) and ``per_page`` query parameters."""
    try:
        page = int(request.query.get("page") or 1)
        per_page = int(request.query.get("per_page") or _DEFAULT_PER_PAGE)
    except ValueError:
        raise validation_failed("Bad Pagination Parameters") from None
    if page < 1 or per_page < 1:
        raise validation_failed("Bad Pagination Parameters")
    return page, min(per_page, _MAX_PER_PAGE)


def _paging_headers(request: AuthRequest, path: str, page: int, per_page: int, total: int) -> dict[str, str]:
    """``X-Total-Count`` and a ``Link`` header with next/last pages, as GoTrue sends them."""
    last = max(1, math.ceil(total / per_page))
    base = f"{request.base_url}/auth/v1{path}"
    links = []
    if page < last:
        links.append(f'<{base}?page={page + 1}&per_page={per_page}>; rel="next"')
    links.append(f'<{base}?page={last}&per_page={per_page}>; rel="last"')
    return {"X-Total-Count": str(total), "Link": ", ".join(links)}


def _session_json(session: SessionRecord) -> dict[str, Any]:
    return {"id": session.id, "user_id": session.user_id, "aal": session.aal,
            "created_at": iso(session.created_at), "updated_at": iso(session.updated_at),
            "refreshed_at": iso(session.refreshed_at), "not_after": iso(session.not_after),
            "user_agent": session.user_agent, "ip": session.ip, "active": session.active(utc_now())}


def _user_id(raw: str) -> str:
    user_id = parse_uuid(raw)
    if user_id is None:
        raise user_not_found()
    return user_id


class AdminApi:
    """Handlers of the admin routes."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self.store = accounts.store

    async def list_users(self, request: AuthRequest) -> AuthReply:
        page, per_page = _page(request)
        users = await self.store.list_users(per_page, (page - 1) * per_page)
        total = await self.store.count_users()
        return AuthReply(200, {"users": [user_json(user) for user in users], "aud": "authenticated"},
                         _paging_headers(request, "/admin/users", page, per_page, total))

    async def create_user(self, request: AuthRequest) -> AuthReply:
        user = await self.accounts.admin_create(request.json(), Client(request.ip, request.headers.get("user-agent")))
        return AuthReply(200, user_json(user))

    async def get_user(self, request: AuthRequest, raw_id: str) -> AuthReply:
        user = await self.store.user_by_id(_user_id(raw_id))
        if user is None:
            raise user_not_found()
        return AuthReply(200, user_json(user))

    async def update_user(self, request: AuthRequest, raw_id: str) -> AuthReply:
        user = await self.accounts.admin_update(_user_id(raw_id), request.json(), Client(request.ip))
        return AuthReply(200, user_json(user))

    async def delete_user(self, request: AuthRequest, raw_id: str) -> AuthReply:
        body = request.json()
        if body.get("should_soft_delete") is True:
            raise validation_failed("Soft deletion is not supported: delete the user", 422)
        await self.accounts.admin_delete(_user_id(raw_id), Client(request.ip))
        return AuthReply(200, {})

    async def list_sessions(self, request: AuthRequest, raw_id: str) -> AuthReply:
        user_id = _user_id(raw_id)
        if await self.store.user_by_id(user_id) is None:
            raise user_not_found()
        sessions = await self.store.sessions_of(user_id)
        return AuthReply(200, {"sessions": [_session_json(session) for session in sessions]})

    async def end_user_sessions(self, request: AuthRequest, raw_id: str) -> AuthReply:
        user_id = _user_id(raw_id)
        if await self.store.user_by_id(user_id) is None:
            raise user_not_found()
        await self.accounts.admin_end_sessions(Client(request.ip), user_id=user_id)
        return AuthReply(204)

    async def end_session(self, request: AuthRequest, raw_id: str) -> AuthReply:
        session_id = parse_uuid(raw_id)
        ended = await self.accounts.admin_end_sessions(Client(request.ip), session_id=session_id) \
            if session_id is not None else 0
        if not ended:
            raise AuthApiError(404, "session_not_found", "Session not found")
        return AuthReply(204)

    async def audit_log(self, request: AuthRequest) -> AuthReply:
        page, per_page = _page(request)
        entries = await self.store.audit_entries(per_page, (page - 1) * per_page)
        total = await self.store.count_audit_entries()
        body = [{"id": entry.id, "payload": entry.payload, "created_at": iso(entry.created_at),
                 "ip_address": entry.ip_address} for entry in entries]
        return AuthReply(200, body, _paging_headers(request, "/admin/audit", page, per_page, total))
