"""A Supabase app, unchanged: supabase-py signs users up and works on a table under the
row-level policies of docs/policies.md, as anon, two users and service_role, on both databases."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from postgrest.exceptions import APIError

from tests.auth.helpers import FAST, PASSWORD, async_client, email, sync_client
from tests.conftest import RunningServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    """A server whose schema is the first SQL example of docs/policies.md, applied as a migration."""
    example = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.DOTALL)[0]
    migrations = tmp_path_factory.mktemp("todos")
    (migrations / "001_todos.sql").write_text(example)
    return server_factory(migrations, **FAST)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_each_user_sees_and_changes_only_their_own_rows(server: RunningServer) -> None:
    with sync_client(server) as ana, sync_client(server) as bo, sync_client(server) as anon, \
            sync_client(server, server.service_key) as admin:
        ana_id = ana.auth.sign_up({"email": email(), "password": PASSWORD}).user.id  # type: ignore[union-attr]
        bo_id = bo.auth.sign_up({"email": email(), "password": PASSWORD}).user.id  # type: ignore[union-attr]

        # user_id defaults to auth.uid(): the row is the signed-in user's
        mine = ana.table("todos").insert({"title": "ana's"}).execute().data
        assert [(row["title"], row["user_id"]) for row in mine] == [("ana's", ana_id)]
        bo.table("todos").insert([{"title": "bo 1"}, {"title": "bo 2"}]).execute()

        assert [row["title"] for row in ana.table("todos").select("*").execute().data] == ["ana's"]
        listed = bo.table("todos").select("title", count="exact").order("id").execute()
        assert [row["title"] for row in listed.data] == ["bo 1", "bo 2"] and listed.count == 2
        assert anon.table("todos").select("*").execute().data == []
        assert len(admin.table("todos").select("*").execute().data) == 3

        # another user's rows are invisible: changing them changes nothing
        target = mine[0]["id"]
        assert bo.table("todos").update({"done": True}).eq("id", target).execute().data == []
        assert bo.table("todos").delete().eq("id", target).execute().data == []
        assert ana.table("todos").select("done").eq("id", target).single().execute().data == {"done": False}

        # writing a row for someone else is refused (WITH CHECK): 42501, 403
        with pytest.raises(APIError) as refused:
            bo.table("todos").insert({"title": "forged", "user_id": ana_id}).execute()
        assert refused.value.code == "42501"
        with pytest.raises(APIError) as moved:
            ana.table("todos").update({"user_id": bo_id}).eq("id", target).execute()
        assert moved.value.code == "42501"
        with pytest.raises(APIError) as anonymous:
            anon.table("todos").insert({"title": "nobody's"}).execute()
        assert anonymous.value.code == "42501"

        # the owner may
        done = ana.table("todos").update({"done": True}).eq("id", target).execute().data
        assert [row["done"] for row in done] == [True]
        assert [row["id"] for row in ana.table("todos").delete().eq("id", target).execute().data] == [target]
        assert len(admin.table("todos").select("*").execute().data) == 2
        for client in (ana, bo, anon, admin):
            client.postgrest.aclose()  # supabase-py leaves its REST client open


@pytest.mark.anyio
async def test_the_async_client_gets_the_same_answers(server: RunningServer) -> None:
    async with async_client(server) as cy, async_client(server) as dee:
        await cy.auth.sign_up({"email": email(), "password": PASSWORD})
        await dee.auth.sign_up({"email": email(), "password": PASSWORD})
        await cy.table("todos").insert({"title": "cy's"}).execute()
        assert [row["title"] for row in (await cy.table("todos").select("*").execute()).data] == ["cy's"]
        assert (await dee.table("todos").select("*").execute()).data == []
        # supabase-py drops (without closing) its REST client on every auth event
        await cy.postgrest.aclose()
        await cy.auth.sign_out()
        # signed out, the client is anon again: nothing is visible
        assert (await cy.table("todos").select("*").execute()).data == []
        await cy.postgrest.aclose()
        await dee.postgrest.aclose()
