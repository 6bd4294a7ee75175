"""The benchmark's users: tokens and owned rows for the row-level security workloads,
accounts for the sign-in workload, and the checks of those workloads' answers.

The RLS workloads need no auth endpoint: their users are owners drawn by bench/load.py
(seeded, so their rows are known without asking the database) and their tokens are
minted here with the run's JWT secret, as Supabase Auth would issue them (HS256,
``sub``, ``role`` and ``aud`` "authenticated"). The sign-in accounts are created on each
server through its admin API (``POST /auth/v1/admin/users``) before it is timed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import load
from harness import Check, Running, auth_headers, row_problem

TOKEN_LIFETIME = 2 * 86400  # longer than any run, --rounds included
LIST_LIMIT = 20
# The request of each user workload, for user ``u`` and one of its posts ``{post}``.
USER_PATHS = {
    "user_get_by_id": "/posts?id=eq.{post}&select=*",
    "rls_get_by_id": "/private_posts?id=eq.{post}&select=*",
    "user_list": "/posts?select=*&user_id=eq.{user}&order=id&limit=20",
    "rls_list": "/private_posts?select=*&order=id&limit=20",
}
# Each RLS workload's answer must equal its counterpart's on the table without RLS.
WITHOUT_RLS = {"rls_get_by_id": "user_get_by_id", "rls_list": "user_list"}


@dataclass(frozen=True, slots=True)
class User:
    """A post owner with an access token and the ids of their posts (ascending)."""

    id: str
    token: str
    posts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UserSet:
    """The users the RLS workloads rotate through, and the file the wrk scripts read."""

    users: tuple[User, ...]
    path: Path  # one line per user: token, user id, ids of their posts


@dataclass(frozen=True, slots=True)
class Account:
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class AccountSet:
    """The sign-in accounts, and the file the sign-in wrk script reads."""

    accounts: tuple[Account, ...]
    path: Path  # one line per account: email, password


def make_users(secret: str, *, posts: int, count: int, path: Path) -> UserSet:
    """The first ``count`` owners of bench/load.py's data, their tokens and posts; writes ``path``."""
    owned: dict[str, list[int]] = {user: [] for user in load.user_ids(load.SEED, load.USERS)[:count]}
    for post_id, owner in enumerate(load.post_owners(load.SEED, posts, load.USERS), start=1):
        if owner in owned:
            owned[owner].append(post_id)
    now = int(time.time())
    users = tuple(
        User(user, jwt.encode({"sub": user, "role": "authenticated", "aud": "authenticated",
                               "iat": now, "exp": now + TOKEN_LIFETIME}, secret, algorithm="HS256"),
             tuple(ids))
        for user, ids in owned.items())
    path.write_text("".join(f"{u.token} {u.id} {' '.join(map(str, u.posts))}\n" for u in users))
    return UserSet(users, path)


def make_accounts(count: int, path: Path) -> AccountSet:
    """``count`` accounts with random passwords (never in the deny list); writes ``path``."""
    accounts = tuple(Account(f"bench-{i}@example.com", secrets.token_hex(12))
                     for i in range(1, count + 1))
    path.write_text("".join(f"{a.email} {a.password}\n" for a in accounts))
    return AccountSet(accounts, path)


# -- checks ------------------------------------------------------------------------------

def check_user_workload(running: Running, workload: str, users: UserSet) -> Check:
    """Send the workload's request as the first user and check the rows it answers.

    By id: exactly the requested row, owned by the user. List: the user's first 20 posts
    by id. RLS workloads must also hide other users' rows and answer exactly what their
    counterpart without RLS answers.
    """
    user, other = users.users[0], users.users[1]
    answer, status, problem, detail = get_json(running, path_for(workload, user), user.token)
    if not problem:
        problem = rows_problem(workload, user, answer)
    if not problem and workload in WITHOUT_RLS:
        twin, _, problem, _ = get_json(running, path_for(WITHOUT_RLS[workload], user), user.token)
        if not problem and twin != answer:
            problem = f"differs from the same query without RLS ({str(twin)[:120]})"
        if not problem and workload == "rls_get_by_id":
            foreign, _, problem, _ = get_json(
                running, USER_PATHS[workload].format(post=other.posts[0]), user.token)
            if not problem and foreign != []:
                problem = f"row {other.posts[0]} of another user is visible: RLS not applied"
    return Check(running.server.name, workload, not problem, status,
                 f"{detail} ({problem})" if problem else detail)


def path_for(workload: str, user: User) -> str:
    return USER_PATHS[workload].format(post=user.posts[0], user=user.id)


def get_json(running: Running, path: str, token: str) -> tuple[Any, int | None, str, str]:
    """(answer, status, problem or '', one-line description) of a GET as the token's user."""
    url = running.base_url + running.server.prefix + path
    try:
        response = httpx.get(url, timeout=10.0, headers={
            "apikey": running.server.keys.read, "Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        return None, None, repr(error), f"GET {path}"
    detail = f"GET {path} -> {response.status_code} {response.text[:200]}".replace("\n", " ")
    if response.status_code != 200:
        return None, response.status_code, "expected 200", detail
    try:
        return response.json(), 200, "", detail
    except ValueError:
        return None, 200, "not JSON", detail


def rows_problem(workload: str, user: User, answer: Any) -> str:
    if not isinstance(answer, list) or not all(isinstance(row, dict) for row in answer):
        return "expected a JSON array of objects"
    wanted = list(user.posts[:1] if workload.endswith("get_by_id") else user.posts[:LIST_LIMIT])
    if [row.get("id") for row in answer] != wanted:
        return f"expected the rows {wanted}"
    if any(row.get("user_id") != user.id for row in answer):
        return f"expected only rows of user {user.id}"
    return next((problem for row in answer if (problem := row_problem(row))), "")


def check_sign_in(running: Running, accounts: AccountSet) -> Check:
    """Create the accounts with the admin API, then sign in once as the first.

    Skipped (not failed) when the server has no /auth/v1 (404).
    """
    server = running.server
    admin = {**auth_headers(server.keys.write), "Content-Type": "application/json"}
    created: dict[str, str] = {}
    try:
        for account in accounts.accounts:
            response = httpx.post(f"{running.base_url}/auth/v1/admin/users", headers=admin,
                                  timeout=30.0, json={"email": account.email,
                                                      "password": account.password,
                                                      "email_confirm": True})
            if response.status_code == 404:
                return Check(server.name, "sign_in", False, 404,
                             f"POST /auth/v1/admin/users -> 404: no auth endpoint in this "
                             f"build ({response.text[:120]})", skipped=True)
            if response.status_code not in (200, 201):
                return Check(server.name, "sign_in", False, response.status_code,
                             f"POST /auth/v1/admin/users -> {response.status_code} "
                             f"{response.text[:200]}")
            created[account.email] = response.json().get("id", "")
        first = accounts.accounts[0]
        path = "/auth/v1/token?grant_type=password"
        response = httpx.post(running.base_url + path, timeout=30.0,
                              headers={"apikey": server.keys.read,
                                       "Content-Type": "application/json"},
                              json={"email": first.email, "password": first.password})
    except httpx.HTTPError as error:
        return Check(server.name, "sign_in", False, None, f"auth setup: {error!r}")
    detail = f"POST {path} -> {response.status_code} {response.text[:120]}".replace("\n", " ")
    problem = sign_in_problem(response, first, created.get(first.email, ""))
    return Check(server.name, "sign_in", not problem, response.status_code,
                 f"{detail} ({problem})" if problem else detail)


def sign_in_problem(response: httpx.Response, account: Account, user_id: str) -> str:
    """What is wrong with a password sign-in's answer (GoTrue's session object), or ''."""
    if response.status_code != 200:
        return "expected 200"
    try:
        session = response.json()
        claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as error:
        return f"expected a session with an access token ({error!r})"
    if session.get("token_type") != "bearer" or not session.get("refresh_token"):
        return "expected token_type bearer and a refresh token"
    if (session.get("user") or {}).get("email") != account.email:
        return "the session's user is not the account signed in"
    if claims.get("sub") != user_id or claims.get("role") != "authenticated":
        return f"unexpected access token claims sub={claims.get('sub')} role={claims.get('role')}"
    return ""
