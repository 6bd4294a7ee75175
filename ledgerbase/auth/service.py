"""Ledgerbase Auth: the ASGI handler of /auth/v1, wire-compatible with Supabase Auth (GoTrue).

Every endpoint but ``/health`` needs a valid ``apikey`` header (the anon or
service_role key, or any token signed with the server's secret), as Supabase's
gateway asks. ``/signup`` and ``/token`` ignore ``Authorization`` (clients send a
user's token there, even a stale one); ``/user`` and ``/logout`` need a user's
access token; ``/admin/*`` needs the service_role key as bearer token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from ledgerbase import __version__
from ledgerbase.auth.accounts import Accounts, Client, SignedIn
from ledgerbase.auth.admin import AdminApi
from ledgerbase.auth.errors import (
    API_VERSION_HEADER,
    AuthApiError,
    api_version,
    bad_jwt,
    error_body,
    no_authorization,
    not_admin,
    not_found,
    rate_limited,
    user_not_found,
    validation_failed,
)
from ledgerbase.auth.http import AuthReply, AuthRequest, Receive, Scope, Send, read_request, send_reply
from ledgerbase.auth.keys import TokenVerifier
from ledgerbase.auth.passwords import Argon2Parameters, PasswordHasher, PasswordPolicy
from ledgerbase.auth.ratelimit import RateLimiter
from ledgerbase.auth.store import AuthStore, UserRecord, utc_now
from ledgerbase.auth.tokens import (
    AccessTokens,
    Sessions,
    refresh_token_already_used,
    refresh_token_not_found,
    token_hash,
)
from ledgerbase.auth.users import parse_uuid, user_json
from ledgerbase.config import Settings
from ledgerbase.db.engine import Database
from ledgerbase.errors import LedgerbaseError

log = structlog.get_logger("ledgerbase.auth")

Handler = Callable[..., Awaitable[AuthReply]]
_EXTERNAL_PROVIDERS = ("anonymous_users", "apple", "azure", "bitbucket", "discord", "facebook", "figma", "fly",
                       "github", "gitlab", "google", "kakao", "keycloak", "linkedin", "linkedin_oidc", "notion",
                       "phone", "slack", "slack_oidc", "spotify", "twitch", "twitter", "workos", "zoom")


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    access: str  # "open" (no key), "key" (apikey), "admin" (apikey + service_role bearer)


@dataclass(frozen=True, slots=True)
class _Caller:
    """The signed-in user of a request and the session of their token."""

    user: UserRecord
    session_id: str | None


class _Limits:
    """The rate limits of sign-up, sign-in and refresh, per client address and per account."""

    def __init__(self, settings: Settings) -> None:
        window = settings.auth_rate_limit_window
        self.sign_up_ip = RateLimiter(settings.auth_rate_limit_sign_up_per_ip, window)
        self.sign_up_account = RateLimiter(settings.auth_rate_limit_sign_up_per_account, window)
        self.sign_in_ip = RateLimiter(settings.auth_rate_limit_sign_in_per_ip, window)
        self.sign_in_account = RateLimiter(settings.auth_rate_limit_sign_in_per_account, window)
        self.refresh_ip = RateLimiter(settings.auth_rate_limit_refresh_per_ip, window)
        self.refresh_account = RateLimiter(settings.auth_rate_limit_refresh_per_account, window)

    @staticmethod
    def check(limiter: RateLimiter, key: str) -> None:
        """Raises over_request_rate_limit (429, Retry-After) when ``key`` has no request left."""
        wait = limiter.take(key)
        if wait > 0:
            raise rate_limited(max(1, math.ceil(wait)))


class AuthService:
    """The /auth/v1 sub-application."""

    def __init__(self, settings: Settings, database: Database, verifier: TokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.store = AuthStore(database)
        self.hasher = PasswordHasher(Argon2Parameters(
            memory_kib=settings.auth_argon2_memory_kib, time_cost=settings.auth_argon2_time_cost,
            parallelism=settings.auth_argon2_parallelism))
        self.access = AccessTokens(verifier.secret, settings.jwt_expiry_seconds)
        self.sessions = Sessions(self.store, self.access, settings.auth_refresh_reuse_interval)
        self.accounts = Accounts(self.store, self.hasher,
                                 PasswordPolicy(settings.auth_password_min_length, settings.auth_password_deny_list),
                                 self.sessions, disable_signup=settings.auth_disable_signup)
        self.admin = AdminApi(self.accounts)
        self.limits = _Limits(settings)
        uuid_part = r"([^/]+)"
        self._routes = [
            _Route("GET", re.compile(r"/health"), self.health, "open"),
            _Route("GET", re.compile(r"/settings"), self.public_settings, "key"),
            _Route("POST", re.compile(r"/signup"), self.sign_up, "key"),
            _Route("POST", re.compile(r"/token"), self.token, "key"),
            _Route("GET", re.compile(r"/user"), self.get_user, "key"),
            _Route("PUT", re.compile(r"/user"), self.update_user, "key"),
            _Route("POST", re.compile(r"/logout"), self.logout, "key"),
            _Route("GET", re.compile(r"/admin/users"), self.admin.list_users, "admin"),
            _Route("POST", re.compile(r"/admin/users"), self.admin.create_user, "admin"),
            _Route("GET", re.compile(rf"/admin/users/{uuid_part}"), self.admin.get_user, "admin"),
            _Route("PUT", re.compile(rf"/admin/users/{uuid_part}"), self.admin.update_user, "admin"),
            _Route("DELETE", re.compile(rf"/admin/users/{uuid_part}"), self.admin.delete_user, "admin"),
            _Route("GET", re.compile(rf"/admin/users/{uuid_part}/sessions"), self.admin.list_sessions, "admin"),
            _Route("DELETE", re.compile(rf"/admin/users/{uuid_part}/sessions"), self.admin.end_user_sessions,
                   "admin"),
            _Route("DELETE", re.compile(rf"/admin/sessions/{uuid_part}"), self.admin.end_session, "admin"),
            _Route("GET", re.compile(r"/admin/audit"), self.admin.audit_log, "admin"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request below /auth/v1; every error is a JSON object."""
        raw_headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        version = api_version(raw_headers.get(API_VERSION_HEADER))
        try:
            request = await read_request(scope, receive, max_body=self.settings.max_body_bytes,
                                         trust_proxy=self.settings.proxy_headers)
            reply = await self._dispatch(request)
        except AuthApiError as error:
            reply = AuthReply(error.status, error_body(error, version), error.headers)
        except LedgerbaseError as error:  # the database: unavailable (503) or failing
            if error.status == 503:
                failure = AuthApiError(503, "service_unavailable", "The database is unavailable, try again",
                                       headers=dict(error.headers))
            else:
                log.error("auth_database_error", code=error.code, error=error.message)
                failure = AuthApiError(500, "unexpected_failure", "Unexpected failure, please try again")
            reply = AuthReply(failure.status, error_body(failure, version), failure.headers)
        except Exception:  # a bug must not leak a traceback to the client
            log.exception("auth_unhandled_error", path=scope.get("path"))
            failure = AuthApiError(500, "unexpected_failure", "Unexpected failure, please try again")
            reply = AuthReply(500, error_body(failure, version))
        await send_reply(send, reply, version=version)

    async def _dispatch(self, request: AuthRequest) -> AuthReply:
        path = request.path.rstrip("/") or "/"
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method != request.method and not (route.method == "GET" and request.method == "HEAD"):
                allowed.append(route.method)
                continue
            if route.access != "open":
                self._check_api_key(request)
            if route.access == "admin":
                self._check_admin(request)
            return await route.handler(request, *match.groups())
        if allowed:
            raise AuthApiError(405, "method_not_allowed", "Method not allowed",
                               headers={"Allow": ", ".join(sorted(set(allowed)))})
        raise not_found()

    # --- access -------------------------------------------------------------------------

    def _check_api_key(self, request: AuthRequest) -> None:
        key = request.headers.get("apikey")
        if not key:
            raise AuthApiError(401, "no_authorization", "No API key found in request")
        try:
            self.verifier.verify(key)
        except LedgerbaseError:
            raise AuthApiError(401, "bad_jwt", "Invalid API key") from None

    def _check_admin(self, request: AuthRequest) -> None:
        token = request.bearer()
        if token is None:
            raise no_authorization()
        if self.access.verify(token).get("role") != "service_role":
            raise not_admin()

    async def _caller(self, request: AuthRequest) -> _Caller:
        """The user of the request's access token (GoTrue's 401/403 answers otherwise)."""
        token = request.bearer()
        if token is None:
            raise no_authorization()
        claims = self.access.verify(token)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise bad_jwt("invalid claim: missing sub claim")
        user_id = parse_uuid(subject)
        user = await self.store.user_by_id(user_id) if user_id is not None else None
        if user is None:
            raise user_not_found(403, "User from sub claim in JWT does not exist")
        session_id = claims.get("session_id")
        if session_id is not None:
            session_uuid = parse_uuid(str(session_id))
            session = await self.store.session(session_uuid) if session_uuid is not None else None
            if session is None or session.user_id != user.id or not session.active(utc_now()):
                raise AuthApiError(403, "session_not_found", "Session from session_id claim in JWT does not exist")
            return _Caller(user, session.id)
        return _Caller(user, None)

    def _issuer(self, request: AuthRequest) -> str:
        if self.settings.auth_issuer:
            return self.settings.auth_issuer
        return (self.settings.site_url.rstrip("/") or request.base_url) + "/auth/v1"

    def _signed_in(self, request: AuthRequest, signed: SignedIn) -> AuthReply:
        return AuthReply(200, self.sessions.session_json(signed.user, signed.session_id, signed.refresh_token,
                                                         signed.signed_in_at, self._issuer(request)))

    # --- endpoints ----------------------------------------------------------------------

    async def health(self, request: AuthRequest) -> AuthReply:
        return AuthReply(200, {"version": __version__, "name": "Ledgerbase Auth",
                               "description": "Ledgerbase Auth is a user registration and authentication API "
                                              "compatible with Supabase Auth"})

    async def public_settings(self, request: AuthRequest) -> AuthReply:
        external: dict[str, Any] = dict.fromkeys(_EXTERNAL_PROVIDERS, False)
        external["email"] = True
        return AuthReply(200, {"external": external, "disable_signup": self.settings.auth_disable_signup,
                               "mailer_autoconfirm": True, "phone_autoconfirm": False, "sms_provider": "",
                               "saml_enabled": False})

    async def sign_up(self, request: AuthRequest) -> AuthReply:
        body = request.json()
        self.limits.check(self.limits.sign_up_ip, request.ip)
        if isinstance(body.get("email"), str):
            self.limits.check(self.limits.sign_up_account, body["email"].strip().lower())
        signed = await self.accounts.sign_up(body, self._client(request))
        return self._signed_in(request, signed)

    async def token(self, request: AuthRequest) -> AuthReply:
        grant = request.query.get("grant_type")
        body = request.json()
        if grant == "password":
            self.limits.check(self.limits.sign_in_ip, request.ip)
            if isinstance(body.get("email"), str):
                self.limits.check(self.limits.sign_in_account, body["email"].strip().lower())
            return self._signed_in(request, await self.accounts.sign_in(body, self._client(request)))
        if grant == "refresh_token":
            return await self._refresh(request, body)
        raise validation_failed("unsupported_grant_type")

    async def _refresh(self, request: AuthRequest, body: dict[str, Any]) -> AuthReply:
        token = body.get("refresh_token")
        if not isinstance(token, str) or not token:
            raise validation_failed("refresh_token required")
        self.limits.check(self.limits.refresh_ip, request.ip)
        hashed = token_hash(token)
        known = await self.store.refresh_token(hashed)
        if known is None:
            raise refresh_token_not_found()
        self.limits.check(self.limits.refresh_account, known.user_id)
        rotation = await self.store.database.write(lambda tx: self.sessions.rotate(tx, hashed, request.ip))
        if rotation.token is None:
            raise refresh_token_already_used()
        user = await self.store.user_by_id(rotation.user_id)
        if user is None:
            raise refresh_token_not_found()
        if user.banned_until is not None and user.banned_until > utc_now():
            raise AuthApiError(400, "user_banned", "User is banned")
        return AuthReply(200, self.sessions.session_json(user, rotation.session_id, rotation.token,
                                                         rotation.signed_in_at, self._issuer(request)))

    async def get_user(self, request: AuthRequest) -> AuthReply:
        caller = await self._caller(request)
        return AuthReply(200, user_json(caller.user))

    async def update_user(self, request: AuthRequest) -> AuthReply:
        caller = await self._caller(request)
        updated = await self.accounts.update_self(caller.user, caller.session_id, request.json(),
                                                  self._client(request))
        return AuthReply(200, user_json(updated))

    async def logout(self, request: AuthRequest) -> AuthReply:
        caller = await self._caller(request)
        await self.accounts.sign_out(caller.user, caller.session_id, request.query.get("scope", "global"),
                                     self._client(request))
        return AuthReply(204)

    @staticmethod
    def _client(request: AuthRequest) -> Client:
        return Client(request.ip, (request.headers.get("user-agent") or "")[:512] or None)
