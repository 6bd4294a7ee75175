"""The official clients work unchanged: postgrest-py (sync and async) and supabase-py's raw headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from postgrest import AsyncPostgrestClient, SyncPostgrestClient
from postgrest.exceptions import APIError

from tests.conftest import RunningServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "core"


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(FIXTURE)


def sync_client(server: RunningServer, role: str = "service_role") -> SyncPostgrestClient:
    return SyncPostgrestClient(server.rest_url, headers=server.headers(role))


def test_select_filter_order_limit(server: RunningServer) -> None:
    with sync_client(server, "anon") as client:
        response = (client.from_("books").select("id,title,authors(name)")
                    .eq("available", True).gt("price", 10).order("price", desc=True).limit(2).execute())
    assert response.data == [
        {"id": 3, "title": "Invisible Cities", "authors": {"name": "Italo Calvino"}},
        {"id": 1, "title": "The Dispossessed", "authors": {"name": "Ursula K. Le Guin"}},
    ]


def test_range_count_and_in(server: RunningServer) -> None:
    with sync_client(server) as client:
        response = (client.from_("books").select("id", count="exact").in_("author_id", [1, 3])
                    .order("id").range(1, 2).execute())
    assert response.data == [{"id": 2}, {"id": 5}]
    assert response.count == 4


def test_single_and_maybe_single(server: RunningServer) -> None:
    with sync_client(server) as client:
        one = client.from_("authors").select("name").eq("id", 3).single().execute()
        assert one.data == {"name": "Stanisław Lem"}
        with pytest.raises(APIError) as raised:
            client.from_("authors").select("name").gt("id", 1).single().execute()
        assert raised.value.code == "PGRST116"
        missing = client.from_("authors").select("name").eq("id", 99).maybe_single().execute()
        assert missing is None or missing.data is None


def test_or_not_like_and_is(server: RunningServer) -> None:
    with sync_client(server) as client:
        either = (client.from_("books").select("id").or_("price.lt.5,title.ilike.*cities*")
                  .order("id").execute())
        assert either.data == [{"id": 3}, {"id": 6}]
        priced = client.from_("books").select("id").not_.is_("price", "null").order("id").execute()
        assert [row["id"] for row in priced.data] == [1, 2, 3, 5, 6]
        spaced = client.from_("books").select("id").eq("title", "Invisible Cities").execute()
        assert spaced.data == [{"id": 3}]


def test_write_cycle(server: RunningServer) -> None:
    with sync_client(server) as client:
        created = client.from_("tags").insert({"id": 100, "name": "poetry"}).execute()
        assert created.data == [{"id": 100, "name": "poetry"}]
        upserted = client.from_("tags").upsert([{"id": 100, "name": "verse"},
                                                {"id": 101, "name": "drama"}]).execute()
        assert upserted.data == [{"id": 100, "name": "verse"}, {"id": 101, "name": "drama"}]
        updated = client.from_("tags").update({"name": "plays"}).eq("id", 101).execute()
        assert updated.data == [{"id": 101, "name": "plays"}]
        deleted = client.from_("tags").delete().in_("id", [100, 101]).execute()
        assert sorted(row["id"] for row in deleted.data) == [100, 101]
        left = client.from_("tags").select("id", count="exact").gte("id", 100).execute()
        assert left.count == 0


def test_errors_are_api_errors(server: RunningServer) -> None:
    with sync_client(server) as client:
        with pytest.raises(APIError) as raised:
            client.from_("authors").insert({"name": "Italo Calvino"}).execute()
        assert raised.value.code == "23505"
        with pytest.raises(APIError) as raised:
            client.from_("books").select("nope").execute()
        assert raised.value.code == "42703"


def test_rpc(server: RunningServer) -> None:
    with sync_client(server) as client:
        assert client.rpc("book_count", {"author": 2}).execute().data == 2
        cheap = client.rpc("cheap_books", {"max_price": 10}).select("id").order("id").execute()
        assert cheap.data == [{"id": 2}, {"id": 6}]


@pytest.mark.anyio
async def test_async_client(server: RunningServer) -> None:
    async with AsyncPostgrestClient(server.rest_url, headers=server.headers()) as client:
        response = await (client.from_("authors").select("name,books(title)")
                          .eq("id", 2).order("id", foreign_table="books").execute())
        assert response.data == [{"name": "Italo Calvino", "books": [
            {"title": "Invisible Cities"}, {"title": "If on a winter's night a traveler"}]}]
        inserted = await client.from_("people").insert({"id": 50, "name": "Zoë"}).execute()
        assert inserted.data == [{"id": 50, "name": "Zoë", "nickname": None}]
        await client.from_("people").delete().eq("id", 50).execute()


def test_supabase_py_wire_habits(server: RunningServer) -> None:
    """Exactly what supabase-py sends: apikey + Bearer, Accept */*, '+' for spaces, {} on DELETE."""
    key = server.anon_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Accept": "*/*",
               "Accept-Profile": "public"}
    with httpx.Client(timeout=30) as http:
        response = http.get(server.rest_url + "/books?select=id&title=eq.Invisible+Cities", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == [{"id": 3}]
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        service = server.headers()
        delete = http.request("DELETE", server.rest_url + "/loans?id=eq.99",
                              headers={**service, "Content-Type": "application/json",
                                       "Prefer": "count=exact"}, content=b"{}")
        assert delete.status_code == 204, delete.text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
