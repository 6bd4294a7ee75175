"""Admin endpoints with the service_role key, refused to the anon key and to users."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from supabase_auth.errors import AuthApiError

from tests.auth.helpers import FAST, PASSWORD, email, sync_client
from tests.conftest import RunningServer


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(None, **FAST)


def _admin_headers(server: RunningServer) -> dict[str, str]:
    return {"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}


def test_create_get_update_list_delete(server: RunningServer) -> None:
    address = email()
    with sync_client(server, server.service_key) as client:
        created = client.auth.admin.create_user({
            "email": address, "password": PASSWORD, "email_confirm": True,
            "user_metadata": {"name": "Ada"}, "app_metadata": {"tier": "gold"}}).user
        assert created.email == address and created.user_metadata == {"name": "Ada"}
        assert created.app_metadata == {"provider": "email", "providers": ["email"], "tier": "gold"}
        assert client.auth.admin.get_user_by_id(created.id).user.id == created.id
        updated = client.auth.admin.update_user_by_id(created.id, {"user_metadata": {"age": 36}}).user
        assert updated.user_metadata == {"name": "Ada", "age": 36}
        with pytest.raises(AuthApiError) as duplicate:
            client.auth.admin.create_user({"email": address, "password": PASSWORD})
        assert (duplicate.value.status, duplicate.value.code) == (422, "email_exists")
        for _ in range(2):
            client.auth.admin.create_user({"email": email(), "email_confirm": True})
        everyone = client.auth.admin.list_users(page=1, per_page=50)
        assert created.id in {user.id for user in everyone}
        first = client.auth.admin.list_users(page=1, per_page=2)
        second = client.auth.admin.list_users(page=2, per_page=2)
        assert len(first) == 2 and not {u.id for u in first} & {u.id for u in second}
    with sync_client(server) as user_client:
        signed = user_client.auth.sign_in_with_password({"email": address, "password": PASSWORD})
        assert signed.user is not None and signed.user.id == created.id
    with sync_client(server, server.service_key) as client:
        client.auth.admin.delete_user(created.id)
        with pytest.raises(AuthApiError) as gone:
            client.auth.admin.get_user_by_id(created.id)
        assert (gone.value.status, gone.value.code) == (404, "user_not_found")


def test_unconfirmed_and_banned_users_cannot_sign_in(server: RunningServer) -> None:
    address = email()
    with sync_client(server, server.service_key) as admin:
        user = admin.auth.admin.create_user({"email": address, "password": PASSWORD}).user
        with sync_client(server) as client, pytest.raises(AuthApiError) as unconfirmed:
            client.auth.sign_in_with_password({"email": address, "password": PASSWORD})
        assert unconfirmed.value.code == "email_not_confirmed"
        admin.auth.admin.update_user_by_id(user.id, {"email_confirm": True, "ban_duration": "24h"})
        with sync_client(server) as client, pytest.raises(AuthApiError) as banned:
            client.auth.sign_in_with_password({"email": address, "password": PASSWORD})
        assert banned.value.code == "user_banned"
        admin.auth.admin.update_user_by_id(user.id, {"ban_duration": "none"})
        with sync_client(server) as client:
            assert client.auth.sign_in_with_password({"email": address, "password": PASSWORD}).session


def test_admin_is_refused_to_the_anon_key_and_to_users(server: RunningServer) -> None:
    with sync_client(server) as client:
        with pytest.raises(AuthApiError) as anon:
            client.auth.admin.list_users()
        assert (anon.value.status, anon.value.code) == (403, "not_admin")
        session = client.auth.sign_up({"email": email(), "password": PASSWORD}).session
        assert session is not None
        with pytest.raises(AuthApiError) as user:
            client.auth.admin.list_users()  # the client now sends the user's token
        assert (user.value.status, user.value.code) == (403, "not_admin")
    missing = httpx.get(server.url + "/auth/v1/admin/users", headers={"apikey": server.service_key})
    assert missing.status_code == 401 and missing.json()["error_code"] == "no_authorization"


def test_sessions_listing_and_revocation(server: RunningServer) -> None:
    address = email()
    with sync_client(server) as client:
        first = client.auth.sign_up({"email": address, "password": PASSWORD}).session
        assert first is not None
    second = httpx.post(server.url + "/auth/v1/token?grant_type=password", headers={"apikey": server.anon_key},
                        json={"email": address, "password": PASSWORD}).json()
    admin = _admin_headers(server)
    listed = httpx.get(f"{server.url}/auth/v1/admin/users/{first.user.id}/sessions", headers=admin)
    assert listed.status_code == 200
    sessions = listed.json()["sessions"]
    assert len(sessions) == 2 and all(session["active"] for session in sessions)
    assert sessions[0]["ip"] == "127.0.0.1"
    revoked = httpx.delete(f"{server.url}/auth/v1/admin/sessions/{sessions[0]['id']}", headers=admin)
    assert revoked.status_code == 204
    again = httpx.delete(f"{server.url}/auth/v1/admin/sessions/{sessions[0]['id']}", headers=admin)
    assert again.status_code == 404 and again.json()["error_code"] == "session_not_found"
    refused = httpx.post(server.url + "/auth/v1/token?grant_type=refresh_token",
                         headers={"apikey": server.anon_key}, json={"refresh_token": first.refresh_token})
    assert refused.status_code == 400
    assert httpx.delete(f"{server.url}/auth/v1/admin/users/{first.user.id}/sessions",
                        headers=admin).status_code == 204
    refused = httpx.post(server.url + "/auth/v1/token?grant_type=refresh_token",
                         headers={"apikey": server.anon_key}, json={"refresh_token": second["refresh_token"]})
    assert refused.status_code == 400
    left = httpx.get(f"{server.url}/auth/v1/admin/users/{first.user.id}/sessions", headers=admin)
    assert left.json() == {"sessions": []}


def test_audit_log_records_events_without_secrets(server: RunningServer) -> None:
    address = email()
    with sync_client(server) as client:
        session = client.auth.sign_up({"email": address, "password": PASSWORD}).session
        assert session is not None
        with pytest.raises(AuthApiError):
            client.auth.sign_in_with_password({"email": address, "password": "wrong password!"})
        client.auth.refresh_session()
        client.auth.sign_out()
    reply = httpx.get(server.url + "/auth/v1/admin/audit?per_page=1000", headers=_admin_headers(server))
    assert reply.status_code == 200 and int(reply.headers["x-total-count"]) >= 5
    mine = [entry for entry in reply.json()
            if entry["payload"]["actor_id"] == session.user.id or entry["payload"]["actor_username"] == address]
    actions = {entry["payload"]["action"] for entry in mine}
    assert {"user_signedup", "login", "login_failed", "token_refreshed", "logout"} <= actions
    assert all(entry["ip_address"] == "127.0.0.1" and entry["created_at"] for entry in mine)
    text = reply.text
    assert PASSWORD not in text and "wrong password!" not in text and session.refresh_token not in text
