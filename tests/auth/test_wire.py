"""Raw HTTP: error shapes with and without X-Supabase-Api-Version, API keys, reuse
detection, rate limits and the absence of user enumeration."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import jwt
import pytest

from tests.auth.helpers import FAST, PASSWORD, email
from tests.conftest import RunningServer

VERSIONED = {"X-Supabase-Api-Version": "2024-01-01"}


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    # no reuse interval: a rotated-out refresh token is a reuse at once
    return server_factory(None, **{**FAST, "auth_refresh_reuse_interval": 0})


@pytest.fixture(scope="module")
def limited(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(None, **{**FAST, "auth_rate_limit_sign_in_per_ip": 3,
                                   "auth_rate_limit_sign_up_per_ip": 2, "auth_rate_limit_refresh_per_ip": 2})


def _post(server: RunningServer, path: str, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url + "/auth/v1" + path, json=body,
                      headers={"apikey": server.anon_key, **(headers or {})})


def _sign_up(server: RunningServer) -> dict[str, object]:
    reply = _post(server, "/signup", {"email": email(), "password": PASSWORD})
    assert reply.status_code == 200, reply.text
    body: dict[str, object] = reply.json()
    return body


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/token?grant_type=password", {"email": "nobody@example.com", "password": "whatever-it-is"}, 400,
     "invalid_credentials"),
    ("/signup", {"email": "new@example.com", "password": "abc"}, 422, "weak_password"),
    ("/signup", {"email": "not an email", "password": PASSWORD}, 400, "validation_failed"),
    ("/token?grant_type=refresh_token", {"refresh_token": "unknown"}, 400, "refresh_token_not_found"),
    ("/token?grant_type=magic", {}, 400, "validation_failed"),
])
def test_error_shapes(server: RunningServer, path: str, body: object, status: int, code: str) -> None:
    versioned = _post(server, path, body, VERSIONED)
    assert versioned.status_code == status
    assert versioned.headers["x-supabase-api-version"] == "2024-01-01"
    assert versioned.json()["code"] == code and isinstance(versioned.json()["message"], str)
    legacy = _post(server, path, body)
    assert legacy.status_code == status and "x-supabase-api-version" not in legacy.headers
    shape = legacy.json()
    assert shape["code"] == status and shape["error_code"] == code and isinstance(shape["msg"], str)
    if code == "weak_password":
        assert versioned.json()["weak_password"] == {"reasons": ["length"]}
        assert shape["weak_password"] == {"reasons": ["length"]}


def test_unknown_email_and_wrong_password_answer_alike(server: RunningServer) -> None:
    known = _sign_up(server)
    user = known["user"]
    assert isinstance(user, dict)
    wrong = _post(server, "/token?grant_type=password", {"email": user["email"], "password": "not-the-one"})
    unknown = _post(server, "/token?grant_type=password", {"email": email(), "password": "not-the-one"})
    assert (wrong.status_code, wrong.json()) == (unknown.status_code, unknown.json())


def test_api_key_is_required_except_for_health(server: RunningServer) -> None:
    assert httpx.get(server.url + "/auth/v1/health").json()["name"] == "Ledgerbase Auth"
    missing = httpx.get(server.url + "/auth/v1/settings")
    assert missing.status_code == 401 and missing.json()["error_code"] == "no_authorization"
    forged = jwt.encode({"role": "anon", "exp": 9999999999}, "another secret, at least thirty-two bytes",
                        algorithm="HS256")
    bad = httpx.get(server.url + "/auth/v1/settings", headers={"apikey": forged, **VERSIONED})
    assert bad.status_code == 401 and bad.json()["code"] == "bad_jwt"
    settings = httpx.get(server.url + "/auth/v1/settings", headers={"apikey": server.anon_key}).json()
    assert settings["external"]["email"] is True and settings["mailer_autoconfirm"] is True
    nowhere = httpx.get(server.url + "/auth/v1/nowhere", headers={"apikey": server.anon_key})
    assert nowhere.status_code == 404 and nowhere.json()["error_code"] == "not_found"
    wrong_method = httpx.delete(server.url + "/auth/v1/signup", headers={"apikey": server.anon_key})
    assert wrong_method.status_code == 405


def test_sign_in_ignores_a_stale_user_token(server: RunningServer) -> None:
    session = _sign_up(server)
    user = session["user"]
    assert isinstance(user, dict)
    expired = jwt.encode({"sub": user["id"], "role": "authenticated", "exp": 1}, server.jwt_secret,
                         algorithm="HS256")
    reply = _post(server, "/token?grant_type=password", {"email": user["email"], "password": PASSWORD},
                  {"Authorization": f"Bearer {expired}"})
    assert reply.status_code == 200
    for token, status, code in ((expired, 403, "bad_jwt"), (server.anon_key, 403, "bad_jwt"), (None, 401,
                                                                                                "no_authorization")):
        headers = {"apikey": server.anon_key, **({"Authorization": f"Bearer {token}"} if token else {})}
        answer = httpx.get(server.url + "/auth/v1/user", headers=headers)
        assert (answer.status_code, answer.json()["error_code"]) == (status, code)


def test_malformed_bodies_are_json_errors(server: RunningServer) -> None:
    reply = httpx.post(server.url + "/auth/v1/signup", content=b"{not json",
                       headers={"apikey": server.anon_key, "Content-Type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error_code"] == "validation_failed"
    listed = httpx.post(server.url + "/auth/v1/signup", content=b"[1, 2]", headers={"apikey": server.anon_key})
    assert listed.status_code == 400
    admin = {"apikey": server.service_key, "Authorization": f"Bearer {server.service_key}"}
    missing = httpx.get(server.url + "/auth/v1/admin/users/not-a-uuid", headers=admin)
    assert missing.status_code == 404 and missing.json()["error_code"] == "user_not_found"
    pages = httpx.get(server.url + "/auth/v1/admin/users?page=zero", headers=admin)
    assert pages.status_code == 400


def test_refresh_token_reuse_revokes_the_session(server: RunningServer) -> None:
    session = _sign_up(server)
    first = session["refresh_token"]
    rotated = _post(server, "/token?grant_type=refresh_token", {"refresh_token": first})
    assert rotated.status_code == 200
    child = rotated.json()["refresh_token"]
    reuse = _post(server, "/token?grant_type=refresh_token", {"refresh_token": first}, VERSIONED)
    assert reuse.status_code == 400 and reuse.json()["code"] == "refresh_token_already_used"
    # the whole family is revoked: the child no longer works, nor does the access token
    after = _post(server, "/token?grant_type=refresh_token", {"refresh_token": child}, VERSIONED)
    assert after.status_code == 400 and after.json()["code"] == "refresh_token_already_used"
    user = httpx.get(server.url + "/auth/v1/user", headers={
        "apikey": server.anon_key, "Authorization": f"Bearer {rotated.json()['access_token']}"})
    assert user.status_code == 403 and user.json()["error_code"] == "session_not_found"


def test_rate_limits(limited: RunningServer) -> None:
    statuses = [_post(limited, "/token?grant_type=password",
                      {"email": email(), "password": "wrong-password"}).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    blocked = _post(limited, "/token?grant_type=password", {"email": email(), "password": "x" * 10}, VERSIONED)
    assert blocked.status_code == 429 and blocked.json()["code"] == "over_request_rate_limit"
    assert int(blocked.headers["retry-after"]) >= 1
    first = _sign_up(limited)
    _sign_up(limited)
    third = _post(limited, "/signup", {"email": email(), "password": PASSWORD})
    assert third.status_code == 429 and third.json()["error_code"] == "over_request_rate_limit"
    token = first["refresh_token"]
    for _ in range(2):
        reply = _post(limited, "/token?grant_type=refresh_token", {"refresh_token": token})
        assert reply.status_code == 200
        token = reply.json()["refresh_token"]
    assert _post(limited, "/token?grant_type=refresh_token", {"refresh_token": token}).status_code == 429
