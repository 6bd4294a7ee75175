"""Sign-up, sign-in, profile, refresh and sign-out through supabase-py, sync and async."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import jwt
import pytest
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from tests.auth.helpers import FAST, PASSWORD, async_client, email, sync_client
from tests.conftest import RunningServer


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(None, **FAST)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_sign_up_returns_a_session_and_a_token_the_data_api_accepts(server: RunningServer) -> None:
    address = email()
    with sync_client(server) as client:
        response = client.auth.sign_up({"email": address.upper(), "password": PASSWORD,
                                        "options": {"data": {"plan": "free"}}})
        assert response.session is not None and response.user is not None
        user = response.user
        assert user.email == address and user.user_metadata == {"plan": "free"}
        assert user.app_metadata == {"provider": "email", "providers": ["email"]}
        assert user.aud == "authenticated" and user.role == "authenticated"
        assert user.email_confirmed_at is not None and user.identities and user.identities[0].provider == "email"
        session = response.session
        assert session.token_type == "bearer" and session.expires_in == 3600
        claims = jwt.decode(session.access_token, server.jwt_secret, algorithms=["HS256"],
                            audience="authenticated")
        assert claims["sub"] == user.id and claims["role"] == "authenticated" and claims["email"] == address
        assert claims["aal"] == "aal1" and claims["amr"][0]["method"] == "password"
        assert claims["iss"] == server.url + "/auth/v1" and claims["is_anonymous"] is False
        assert claims["exp"] - claims["iat"] == 3600 and claims["session_id"]
    # the data API takes the user's token (its verifier ignores aud)
    reply = httpx.get(server.rest_url + "/", headers={"apikey": server.anon_key,
                                                      "Authorization": f"Bearer {session.access_token}"})
    assert reply.status_code == 200


def test_sign_in_wrong_password_duplicate_and_weak(server: RunningServer) -> None:
    address = email()
    with sync_client(server) as client:
        client.auth.sign_up({"email": address, "password": PASSWORD})
        client.auth.sign_out()
        signed = client.auth.sign_in_with_password({"email": address, "password": PASSWORD})
        assert signed.session is not None and signed.user is not None and signed.user.last_sign_in_at
        with pytest.raises(AuthApiError) as wrong:
            client.auth.sign_in_with_password({"email": address, "password": PASSWORD + "!"})
        assert (wrong.value.status, wrong.value.code) == (400, "invalid_credentials")
        with pytest.raises(AuthApiError) as unknown:
            client.auth.sign_in_with_password({"email": email(), "password": PASSWORD})
        assert (unknown.value.status, unknown.value.code, unknown.value.message) == (
            wrong.value.status, wrong.value.code, wrong.value.message)
        with pytest.raises(AuthApiError) as duplicate:
            client.auth.sign_up({"email": address, "password": PASSWORD})
        assert (duplicate.value.status, duplicate.value.code) == (422, "user_already_exists")
        with pytest.raises(AuthWeakPasswordError) as short:
            client.auth.sign_up({"email": email(), "password": "short"})
        assert short.value.status == 422 and short.value.reasons == ["length"]
        with pytest.raises(AuthWeakPasswordError) as common:
            client.auth.sign_up({"email": email(), "password": "Password123"})
        assert common.value.reasons == ["pwned"]


def test_get_and_update_user_then_sign_in_with_the_new_password(server: RunningServer) -> None:
    address = email()
    with sync_client(server) as client:
        client.auth.sign_up({"email": address, "password": PASSWORD, "options": {"data": {"a": 1, "b": 2}}})
        fetched = client.auth.get_user()
        assert fetched is not None and fetched.user.email == address
        updated = client.auth.update_user({"data": {"b": None, "c": 3}})
        assert updated.user.user_metadata == {"a": 1, "c": 3}
        new_address = email()
        assert client.auth.update_user({"email": new_address}).user.email == new_address
        with pytest.raises(AuthWeakPasswordError):
            client.auth.update_user({"password": "qwerty"})
        with pytest.raises(AuthApiError) as same:
            client.auth.update_user({"password": PASSWORD})
        assert same.value.code == "same_password"
        client.auth.update_user({"password": PASSWORD + " 2"})
        client.auth.sign_out()
        with pytest.raises(AuthApiError):
            client.auth.sign_in_with_password({"email": new_address, "password": PASSWORD})
        again = client.auth.sign_in_with_password({"email": new_address, "password": PASSWORD + " 2"})
        assert again.user is not None and again.user.user_metadata == {"a": 1, "c": 3}


def test_refresh_rotates_the_refresh_token(server: RunningServer) -> None:
    with sync_client(server) as client:
        first = client.auth.sign_up({"email": email(), "password": PASSWORD}).session
        assert first is not None
        refreshed = client.auth.refresh_session().session
        assert refreshed is not None and refreshed.refresh_token != first.refresh_token
        assert refreshed.user.id == first.user.id
        again = client.auth.refresh_session().session
        assert again is not None and again.refresh_token not in (first.refresh_token, refreshed.refresh_token)
        # a rotated-out token within the reuse interval (10 s) still gets a session
        grace = client.auth.refresh_session(first.refresh_token).session
        assert grace is not None and grace.refresh_token != again.refresh_token
        with pytest.raises(AuthApiError) as unknown:
            client.auth.refresh_session("not-a-token")
        assert (unknown.value.status, unknown.value.code) == (400, "refresh_token_not_found")


def _signed_in_twice(server: RunningServer, address: str) -> tuple[str, str]:
    tokens = []
    for _ in range(2):
        reply = httpx.post(server.url + "/auth/v1/token?grant_type=password",
                           headers={"apikey": server.anon_key},
                           json={"email": address, "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        tokens.append(reply.json()["refresh_token"])
    return tokens[0], tokens[1]


@pytest.mark.parametrize("scope", ["local", "others", "global"])
def test_sign_out_scopes(server: RunningServer, scope: str) -> None:
    address = email()
    with sync_client(server) as client:
        current = client.auth.sign_up({"email": address, "password": PASSWORD}).session
        assert current is not None
        other_a, other_b = _signed_in_twice(server, address)
        client.auth.sign_out({"scope": scope})  # type: ignore[typeddict-item]

        def alive(token: str) -> bool:
            return httpx.post(server.url + "/auth/v1/token?grant_type=refresh_token",
                              headers={"apikey": server.anon_key}, json={"refresh_token": token}).status_code == 200

        assert alive(current.refresh_token) is (scope == "others")
        assert alive(other_a) is (scope == "local")
        assert alive(other_b) is (scope == "local")
        if scope != "others":
            # the signed-out session's access token no longer reaches /user
            reply = httpx.get(server.url + "/auth/v1/user", headers={
                "apikey": server.anon_key, "Authorization": f"Bearer {current.access_token}"})
            assert reply.status_code == 403 and reply.json()["error_code"] == "session_not_found"


@pytest.mark.anyio
async def test_async_client_flow(server: RunningServer) -> None:
    address = email()
    async with async_client(server) as client:
        signed_up = await client.auth.sign_up({"email": address, "password": PASSWORD,
                                               "options": {"data": {"lang": "fr"}}})
        assert signed_up.session is not None
        await client.auth.sign_out()
        with pytest.raises(AuthApiError) as wrong:
            await client.auth.sign_in_with_password({"email": address, "password": "nope-nope-nope"})
        assert wrong.value.code == "invalid_credentials"
        signed_in = await client.auth.sign_in_with_password({"email": address, "password": PASSWORD})
        assert signed_in.session is not None
        user = await client.auth.get_user()
        assert user is not None and user.user.user_metadata == {"lang": "fr"}
        updated = await client.auth.update_user({"data": {"theme": "dark"}})
        assert updated.user.user_metadata == {"lang": "fr", "theme": "dark"}
        refreshed = await client.auth.refresh_session()
        assert refreshed.session is not None
        assert refreshed.session.refresh_token != signed_in.session.refresh_token
        with pytest.raises(AuthApiError) as duplicate:
            await client.auth.sign_up({"email": address, "password": PASSWORD})
        assert duplicate.value.code == "user_already_exists"
        await client.auth.sign_out()
        assert await client.auth.get_session() is None
