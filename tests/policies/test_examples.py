"""Row-level security through the data API, on SQLite and PostgreSQL alike.

The expected answers follow PostgreSQL's row-level security as PostgREST
exposes it (PostgreSQL 15 docs, "Row Security Policies" and CREATE POLICY):
rows a policy hides are absent (SELECT -> [], UPDATE/DELETE -> 200 []); a new
row failing WITH CHECK is 42501, answered 403 to a signed-in user and 401 to
anon; permissive policies are OR-ed, restrictive ones AND-ed to them; no
applicable policy means no rows; service_role bypasses row-level security;
the subqueries of a policy and embedded resources see only what their own
table's policies allow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.policies.support import ANON, FIXTURE, SERVICE, User, Who, headers_for, load

ALICE = User("a11ce000-0000-4000-8000-000000000001", "alice@example.com")  # staff (example.com)
BOB = User("b0b00000-0000-4000-8000-000000000002", "bob@mail.test")
CAROL = User("ca201000-0000-4000-8000-000000000003", "carol@mail.test")
DAVE = User("da5e0000-0000-4000-8000-000000000004", "dave@mail.test")  # in no team
EVE = User("e5e00000-0000-4000-8000-000000000005", "eve@mail.test")  # banned profile

SEED: dict[str, list[dict[str, Any]]] = {
    "profiles": [
        {"id": ALICE.id, "username": "alice", "public": True},
        {"id": BOB.id, "username": "bob", "public": False},
        {"id": CAROL.id, "username": "carol", "public": True},
        {"id": EVE.id, "username": "banned_eve", "public": True},
    ],
    "teams": [
        {"id": 1, "name": "Red", "created_by": ALICE.id},
        {"id": 2, "name": "Blue", "created_by": BOB.id},
    ],
    "members": [
        {"team_id": 1, "user_id": ALICE.id, "role": "owner"},
        {"team_id": 1, "user_id": BOB.id, "role": "member"},
        {"team_id": 2, "user_id": BOB.id, "role": "owner"},
        {"team_id": 2, "user_id": CAROL.id, "role": "member"},
    ],
    "projects": [
        {"id": 1, "team_id": 1, "owner": ALICE.id, "name": "Website", "archived": False},
        {"id": 2, "team_id": 1, "owner": BOB.id, "name": "Old site", "archived": True},
        {"id": 3, "team_id": 2, "owner": BOB.id, "name": "App", "archived": False},
        {"id": 4, "team_id": 2, "owner": CAROL.id, "name": "Docs", "archived": False},
    ],
    "tasks": [
        {"id": 1, "project_id": 1, "owner": ALICE.id, "title": "Design", "done": False},
        {"id": 2, "project_id": 1, "owner": BOB.id, "title": "Copy", "done": True},
        {"id": 3, "project_id": 2, "owner": BOB.id, "title": "Archive", "done": False},
        {"id": 4, "project_id": 3, "owner": BOB.id, "title": "Login", "done": False},
        {"id": 5, "project_id": 3, "owner": CAROL.id, "title": "Logout", "done": False},
        {"id": 6, "project_id": 4, "owner": CAROL.id, "title": "Guide", "done": True},
        {"id": 7, "project_id": 4, "owner": DAVE.id, "title": "Typo", "done": False},
    ],
    "notes": [
        {"id": 1, "owner": ALICE.id, "body": "alice private", "shared": False},
        {"id": 2, "owner": ALICE.id, "body": "alice shared", "shared": True},
        {"id": 3, "owner": BOB.id, "body": "bob private", "shared": False},
        {"id": 4, "owner": CAROL.id, "body": "carol shared", "shared": True},
    ],
    "announcements": [
        {"id": 1, "body": "Welcome", "staff_only": False},
        {"id": 2, "body": "Staff party", "staff_only": True},
    ],
    "feedback": [{"id": 1, "message": "first"}],
    "tags": [{"id": 1, "name": "urgent"}, {"id": 2, "name": "later"}],
    "secrets": [{"id": 1, "value": "s3cret"}],
}

ROLLBACK = "tx=rollback"
RETURN = "return=representation"
ANY = object()


def ids(*values: int) -> list[dict[str, int]]:
    return [{"id": value} for value in values]


@dataclass(frozen=True)
class Case:
    name: str
    who: Who
    path: str
    status: int = 200
    json: Any = ANY
    code: str | None = None  # the error code, when the answer is an error
    method: str = "GET"
    body: Any = None
    prefer: str = ""
    accept: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


READS = [
    # each user sees their own tasks and the tasks of their teams' projects
    Case("anon sees no tasks", ANON, "/tasks?select=id", json=[]),
    Case("alice: own and team tasks", ALICE, "/tasks?select=id&order=id", json=ids(1, 2, 3)),
    Case("bob: two teams", BOB, "/tasks?select=id&order=id", json=ids(1, 2, 3, 4, 5, 6, 7)),
    Case("carol: one team", CAROL, "/tasks?select=id&order=id", json=ids(4, 5, 6, 7)),
    Case("dave: only his own task", DAVE, "/tasks?select=id&order=id", json=ids(7)),
    Case("service_role bypasses", SERVICE, "/tasks?select=id&order=id", json=ids(1, 2, 3, 4, 5, 6, 7)),
    Case("filter on an invisible row", ALICE, "/tasks?select=id&id=eq.5", json=[]),
    Case("filter on another owner", ALICE, "/tasks?select=id&owner=eq." + BOB.id + "&order=id", json=ids(2, 3)),
    Case("or over visible rows", CAROL, "/tasks?select=id&or=(done.eq.true,owner.eq." + DAVE.id + ")&order=id",
         json=ids(6, 7)),
    Case("projects through membership", ALICE, "/projects?select=id,archived&order=id",
         json=[{"id": 1, "archived": False}, {"id": 2, "archived": True}]),
    Case("no membership, no projects", DAVE, "/projects?select=id", json=[]),
    Case("teams: creator or member", ALICE, "/teams?select=id,name", json=[{"id": 1, "name": "Red"}]),
    Case("teams of bob", BOB, "/teams?select=id&order=id", json=ids(1, 2)),
    Case("teams of dave", DAVE, "/teams?select=id", json=[]),
    Case("own memberships only", BOB, "/members?select=team_id,user_id&order=team_id",
         json=[{"team_id": 1, "user_id": BOB.id}, {"team_id": 2, "user_id": BOB.id}]),
    # profiles: a default TO public policy, a TO authenticated one, a restrictive one
    Case("anon reads public profiles", ANON, "/profiles?select=username&order=username",
         json=[{"username": "alice"}, {"username": "carol"}]),
    Case("bob also reads his private profile", BOB, "/profiles?select=username&order=username",
         json=[{"username": "alice"}, {"username": "bob"}, {"username": "carol"}]),
    Case("a policy's subquery sees only what members' policy allows", CAROL,
         "/profiles?select=username&order=username", json=[{"username": "alice"}, {"username": "carol"}]),
    Case("restrictive policy hides a profile from its owner", EVE, "/profiles?select=username&id=eq." + EVE.id,
         json=[]),
    Case("service_role sees banned profiles", SERVICE, "/profiles?select=username&order=username",
         json=[{"username": "alice"}, {"username": "banned_eve"}, {"username": "bob"}, {"username": "carol"}]),
    # notes: FOR ALL to owners, shared ones when auth.role() = 'authenticated'
    Case("anon: auth.role() is not authenticated", ANON, "/notes?select=id", json=[]),
    Case("alice: own notes and shared ones", ALICE, "/notes?select=id&order=id", json=ids(1, 2, 4)),
    Case("bob: own note and shared ones", BOB, "/notes?select=id&order=id", json=ids(2, 3, 4)),
    Case("dave: shared notes", DAVE, "/notes?select=id,body&order=id",
         json=[{"id": 2, "body": "alice shared"}, {"id": 4, "body": "carol shared"}]),
    Case("service_role reads every note", SERVICE, "/notes?select=id&order=id", json=ids(1, 2, 3, 4)),
    # announcements: TO anon, authenticated; staff by e-mail domain from auth.jwt()
    Case("anon reads public announcements", ANON, "/announcements?select=id", json=ids(1)),
    Case("bob is not staff", BOB, "/announcements?select=id&order=id", json=ids(1)),
    Case("alice is staff", ALICE, "/announcements?select=id&order=id", json=ids(1, 2)),
    # no policy at all
    Case("no policy: anon sees nothing", ANON, "/secrets", json=[]),
    Case("no policy: a user sees nothing", ALICE, "/secrets", json=[]),
    Case("no policy: service_role sees all", SERVICE, "/secrets?select=id,value", json=[{"id": 1, "value": "s3cret"}]),
    Case("insert-only table: nothing to read", ANON, "/feedback", json=[]),
    Case("insert-only table: users read nothing", BOB, "/feedback", json=[]),
    # no row-level security
    Case("table without RLS: anon reads", ANON, "/tags?select=id&order=id", json=ids(1, 2)),
    Case("table without RLS: user reads", BOB, "/tags?select=id&order=id", json=ids(1, 2)),
    # embedded resources are filtered by their own table's policies
    Case("embedded to-many filtered", BOB, "/teams?select=id,members(user_id)&order=id",
         json=[{"id": 1, "members": [{"user_id": BOB.id}]}, {"id": 2, "members": [{"user_id": BOB.id}]}]),
    Case("embedded to-one hidden is null", DAVE, "/tasks?select=id,projects(id)",
         json=[{"id": 7, "projects": None}]),
    Case("inner embed of a hidden parent drops the row", DAVE, "/tasks?select=id,projects!inner(id)", json=[]),
    Case("embedded tasks of visible projects", CAROL, "/projects?select=id,tasks(id)&tasks.order=id&order=id",
         json=[{"id": 3, "tasks": ids(4, 5)}, {"id": 4, "tasks": ids(6, 7)}]),
    Case("inner embed with a filter", ALICE,
         "/projects?select=id,tasks!inner(id)&tasks.done=eq.true&order=id", json=[{"id": 1, "tasks": ids(2)}]),
    Case("embed from a table without RLS into nothing", DAVE, "/projects?select=id,tasks(id)", json=[]),
    # counts only count visible rows
    Case("exact count of visible rows", CAROL, "/tasks?select=id&order=id", prefer="count=exact",
         json=ids(4, 5, 6, 7), response_headers={"content-range": "0-3/4"}),
    Case("exact count for anon", ANON, "/tasks?select=id", prefer="count=exact", json=[],
         response_headers={"content-range": "*/0"}),
    Case("exact count with a limit", ALICE, "/tasks?select=id&order=id&limit=1", prefer="count=exact",
         status=206, json=ids(1), response_headers={"content-range": "0-0/3"}),
    Case("single object of a hidden row", DAVE, "/tasks?id=eq.1", accept="application/vnd.pgrst.object+json",
         status=406, code="PGRST116"),
]

WRITES = [
    # invisible rows are not updated or deleted, without an error
    Case("update of another user's private note", ALICE, "/notes?id=eq.3", method="PATCH",
         body={"body": "hacked"}, prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("update of a readable but not writable note", ALICE, "/notes?id=eq.4", method="PATCH",
         body={"body": "hacked"}, prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("delete of another user's note", ALICE, "/notes?id=eq.3", method="DELETE",
         prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("delete of a team task owned by another", ALICE, "/tasks?id=eq.2", method="DELETE",
         prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("anon update finds nothing", ANON, "/notes?id=eq.1", method="PATCH", body={"body": "x"},
         prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("anon delete finds nothing", ANON, "/secrets?id=eq.1", method="DELETE",
         prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("update of an own note", ALICE, "/notes?id=eq.1&select=id,body", method="PATCH", body={"body": "mine"},
         prefer=f"{RETURN},{ROLLBACK}", json=[{"id": 1, "body": "mine"}]),
    Case("bulk update touches own rows only", CAROL, "/tasks?id=gt.0&select=id,done&order=id", method="PATCH",
         body={"done": True}, prefer=f"{RETURN},{ROLLBACK}",
         json=[{"id": 5, "done": True}, {"id": 6, "done": True}]),
    Case("bulk delete touches own rows only", BOB, "/tasks?done=eq.true&select=id", method="DELETE",
         prefer=f"{RETURN},{ROLLBACK}", json=ids(2)),
    # WITH CHECK
    Case("update giving a note away", ALICE, "/notes?id=eq.1", method="PATCH", body={"owner": BOB.id},
         prefer=f"{RETURN},{ROLLBACK}", status=403, code="42501"),
    Case("insert for another owner", ALICE, "/notes", method="POST",
         body={"id": 100, "owner": BOB.id, "body": "x"}, prefer=f"{RETURN},{ROLLBACK}", status=403, code="42501"),
    Case("insert for oneself", ALICE, "/notes?select=id,owner", method="POST",
         body={"id": 100, "owner": ALICE.id, "body": "x"}, prefer=f"{RETURN},{ROLLBACK}", status=201,
         json=[{"id": 100, "owner": ALICE.id}]),
    Case("bulk insert with one bad row", ALICE, "/notes", method="POST",
         body=[{"id": 100, "owner": ALICE.id, "body": "x"}, {"id": 101, "owner": BOB.id, "body": "y"}],
         prefer=f"{RETURN},{ROLLBACK}", status=403, code="42501"),
    Case("anon insert is 401", ANON, "/notes", method="POST", body={"id": 100, "owner": ALICE.id, "body": "x"},
         prefer=ROLLBACK, status=401, code="42501"),
    Case("profile for oneself", DAVE, "/profiles?select=username", method="POST",
         body={"id": DAVE.id, "username": "dave"}, prefer=f"{RETURN},{ROLLBACK}", status=201,
         json=[{"username": "dave"}]),
    Case("profile for someone else", DAVE, "/profiles", method="POST",
         body={"id": "00000000-0000-4000-8000-000000000099", "username": "mallory"}, prefer=ROLLBACK,
         status=403, code="42501"),
    Case("staff posts an announcement", ALICE, "/announcements?select=id", method="POST",
         body={"id": 10, "body": "Hi", "staff_only": True}, prefer=f"{RETURN},{ROLLBACK}", status=201,
         json=ids(10)),
    Case("non-staff may not post", BOB, "/announcements", method="POST", body={"id": 10, "body": "Hi"},
         prefer=ROLLBACK, status=403, code="42501"),
    # WITH CHECK with subqueries, which see only what the other tables' policies allow
    Case("task in a live project of one's team", ALICE, "/tasks?select=id", method="POST",
         body={"id": 100, "project_id": 1, "owner": ALICE.id, "title": "New"}, prefer=f"{RETURN},{ROLLBACK}",
         status=201, json=ids(100)),
    Case("task in an archived project", ALICE, "/tasks", method="POST",
         body={"id": 100, "project_id": 2, "owner": ALICE.id, "title": "New"}, prefer=ROLLBACK,
         status=403, code="42501"),
    Case("task in a project the EXISTS cannot see", ALICE, "/tasks", method="POST",
         body={"id": 100, "project_id": 3, "owner": ALICE.id, "title": "New"}, prefer=ROLLBACK,
         status=403, code="42501"),
    Case("team creator adds a member", ALICE, "/members", method="POST",
         body={"team_id": 1, "user_id": DAVE.id}, prefer=f"return=minimal,{ROLLBACK}", status=201),
    Case("the added member is not readable back", ALICE, "/members", method="POST",
         body={"team_id": 1, "user_id": DAVE.id}, prefer=f"{RETURN},{ROLLBACK}", status=403, code="42501"),
    Case("a member may not add members", BOB, "/members", method="POST",
         body={"team_id": 1, "user_id": DAVE.id}, prefer=ROLLBACK, status=403, code="42501"),
    Case("project in one's team", CAROL, "/projects?select=id", method="POST",
         body={"id": 10, "team_id": 2, "owner": CAROL.id, "name": "New"}, prefer=f"{RETURN},{ROLLBACK}",
         status=201, json=ids(10)),
    Case("project in another team", CAROL, "/projects", method="POST",
         body={"id": 10, "team_id": 1, "owner": CAROL.id, "name": "New"}, prefer=ROLLBACK,
         status=403, code="42501"),
    # a restrictive policy AND-ed to the permissive ones
    Case("restrictive: archived project is not updatable", BOB, "/projects?id=eq.2", method="PATCH",
         body={"name": "Renamed"}, prefer=f"{RETURN},{ROLLBACK}", json=[]),
    Case("restrictive: archiving fails the check", BOB, "/projects?id=eq.3", method="PATCH",
         body={"archived": True}, prefer=f"{RETURN},{ROLLBACK}", status=403, code="42501"),
    Case("restrictive: live project renamed", BOB, "/projects?id=eq.3&select=id,name", method="PATCH",
         body={"name": "App 2"}, prefer=f"{RETURN},{ROLLBACK}", json=[{"id": 3, "name": "App 2"}]),
    Case("update of a visible project owned by another", ALICE, "/projects?id=eq.2", method="PATCH",
         body={"name": "Mine"}, prefer=f"{RETURN},{ROLLBACK}", json=[]),
    # TO anon only: anon may insert without reading back
    Case("anon leaves feedback", ANON, "/feedback", method="POST", body={"id": 50, "message": "hi"},
         prefer=f"return=minimal,{ROLLBACK}", status=201),
    Case("anon cannot read the feedback back", ANON, "/feedback", method="POST",
         body={"id": 50, "message": "hi"}, prefer=f"{RETURN},{ROLLBACK}", status=401, code="42501"),
    Case("policy is TO anon only", BOB, "/feedback", method="POST", body={"id": 50, "message": "hi"},
         prefer=f"return=minimal,{ROLLBACK}", status=403, code="42501"),
    # upserts
    Case("upsert over another user's row", BOB, "/notes", method="POST",
         body={"id": 1, "owner": BOB.id, "body": "mine now"},
         prefer=f"{RETURN},resolution=merge-duplicates,{ROLLBACK}", status=403, code="42501"),
    Case("upsert over a readable row of another user", BOB, "/notes", method="POST",
         body={"id": 4, "owner": BOB.id, "body": "mine now"},
         prefer=f"{RETURN},resolution=merge-duplicates,{ROLLBACK}", status=403, code="42501"),
    Case("upsert of an own row", ALICE, "/notes?select=id,body", method="POST",
         body={"id": 1, "owner": ALICE.id, "body": "upserted"},
         prefer=f"{RETURN},resolution=merge-duplicates,{ROLLBACK}", status=200,
         json=[{"id": 1, "body": "upserted"}]),
    Case("upsert inserting a new own row", ALICE, "/notes?select=id", method="POST",
         body={"id": 100, "owner": ALICE.id, "body": "new"},
         prefer=f"{RETURN},resolution=merge-duplicates,{ROLLBACK}", status=201, json=ids(100)),
    Case("ignore-duplicates over another user's row", BOB, "/notes", method="POST",
         body={"id": 1, "owner": BOB.id, "body": "mine now"},
         prefer=f"{RETURN},resolution=ignore-duplicates,{ROLLBACK}", status=201, json=[]),
    Case("ignore-duplicates with a row failing the check", BOB, "/notes", method="POST",
         body={"id": 1, "owner": ALICE.id, "body": "x"},
         prefer=f"{RETURN},resolution=ignore-duplicates,{ROLLBACK}", status=403, code="42501"),
    # no policy at all
    Case("no policy: user insert", ALICE, "/secrets", method="POST", body={"id": 2, "value": "x"},
         prefer=ROLLBACK, status=403, code="42501"),
    Case("no policy: service_role insert", SERVICE, "/secrets?select=id", method="POST",
         body={"id": 2, "value": "x"}, prefer=f"{RETURN},{ROLLBACK}", status=201, json=ids(2)),
    Case("service_role updates any note", SERVICE, "/notes?id=eq.3&select=id,body", method="PATCH",
         body={"body": "moderated"}, prefer=f"{RETURN},{ROLLBACK}", json=[{"id": 3, "body": "moderated"}]),
    # no row-level security: anon reads only, signed-in users write
    Case("table without RLS: anon insert", ANON, "/tags", method="POST", body={"id": 10, "name": "new"},
         prefer=ROLLBACK, status=401, code="42501"),
    Case("table without RLS: anon update", ANON, "/tags?id=eq.1", method="PATCH", body={"name": "x"},
         prefer=ROLLBACK, status=401, code="42501"),
    Case("table without RLS: anon delete", ANON, "/tags?id=eq.1", method="DELETE", prefer=ROLLBACK,
         status=401, code="42501"),
    Case("table without RLS: user insert", BOB, "/tags?select=id,name", method="POST",
         body={"id": 10, "name": "new"}, prefer=f"{RETURN},{ROLLBACK}", status=201,
         json=[{"id": 10, "name": "new"}]),
    Case("table without RLS: user update", BOB, "/tags?id=eq.1&select=id,name", method="PATCH",
         body={"name": "now"}, prefer=f"{RETURN},{ROLLBACK}", json=[{"id": 1, "name": "now"}]),
    Case("table without RLS: user delete", BOB, "/tags?id=eq.2&select=id", method="DELETE",
         prefer=f"{RETURN},{ROLLBACK}", json=ids(2)),
]


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(FIXTURE)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        load(http, server, SEED)
        yield http


@pytest.fixture
def reload_after(server: RunningServer, client: httpx.Client) -> Iterator[httpx.Client]:
    """For a test that writes for real: the seed data is loaded again afterwards."""
    yield client
    load(client, server, SEED)


def request(client: httpx.Client, server: RunningServer, case: Case) -> httpx.Response:
    headers = headers_for(server, case.who)
    if case.prefer:
        headers["Prefer"] = case.prefer
    if case.accept:
        headers["Accept"] = case.accept
    return client.request(case.method, server.rest_url + case.path, headers=headers,
                          json=case.body if case.body is not None else None)


def check(response: httpx.Response, case: Case) -> None:
    where = f"{case.method} {case.path} as {getattr(case.who, 'email', case.who)}"
    assert response.status_code == case.status, f"{where}: {response.status_code} {response.text}"
    if case.code is not None:
        assert response.json().get("code") == case.code, f"{where}: {response.text}"
    if case.json is not ANY:
        assert response.json() == case.json, where
    for name, value in case.response_headers.items():
        assert response.headers.get(name) == value, f"{where}: {name}: {response.headers.get(name)}"


@pytest.mark.parametrize("case", READS, ids=[case.name for case in READS])
def test_read(client: httpx.Client, server: RunningServer, case: Case) -> None:
    check(request(client, server, case), case)


@pytest.mark.parametrize("case", WRITES, ids=[case.name for case in WRITES])
def test_write(client: httpx.Client, server: RunningServer, case: Case) -> None:
    check(request(client, server, case), case)


UNTOUCHABLE = [
    Case("update another user's note", ALICE, "/notes?id=eq.3", method="PATCH", body={"body": "hacked"},
         prefer=RETURN, json=[]),
    Case("update a shared note of another user", ALICE, "/notes?id=eq.4", method="PATCH", body={"body": "hacked"},
         prefer=RETURN, json=[]),
    Case("update every note", DAVE, "/notes?id=gt.0", method="PATCH", body={"body": "hacked"}, prefer=RETURN,
         json=[]),
    Case("delete every note", DAVE, "/notes?id=gt.0", method="DELETE", prefer=RETURN, json=[]),
    Case("delete a team task of another user", ALICE, "/tasks?id=eq.2", method="DELETE", prefer=RETURN, json=[]),
    Case("update an archived project", BOB, "/projects?id=eq.2", method="PATCH", body={"name": "x"},
         prefer=RETURN, json=[]),
    Case("anon deletes secrets", ANON, "/secrets?id=gt.0", method="DELETE", prefer=RETURN, json=[]),
    Case("user deletes secrets", BOB, "/secrets?id=gt.0", method="DELETE", status=204),
    Case("anon updates profiles", ANON, "/profiles?username=neq.x", method="PATCH", body={"public": False},
         prefer=RETURN, json=[]),
]


@pytest.mark.parametrize("case", UNTOUCHABLE, ids=[case.name for case in UNTOUCHABLE])
def test_hidden_rows_stay_unchanged(reload_after: httpx.Client, server: RunningServer, case: Case) -> None:
    client = reload_after
    table = case.path.split("?")[0].strip("/")
    check(request(client, server, case), case)
    response = client.get(f"{server.rest_url}/{table}?select=*&order=id", headers=headers_for(server, SERVICE))
    stored = [{name: row[name] for name in SEED[table][0]} for row in response.json()]
    assert stored == SEED[table], f"{case.method} {case.path} changed {table}"
