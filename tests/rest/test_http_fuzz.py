"""Hypothesis through real HTTP: no query string, header or body makes the server answer 5xx."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "core"
TOKENS = ["select=", "id", "title", "price", "meta", "published_at", "authors", "books", "tags", "(", ")",
          ",", ".", ":", "::", "text", "int", "->", "->>", "*", "!inner", "!", "eq.", "neq.", "gt.", "in.",
          "is.", "null", "not.", "like.", "ilike.", "match.", "fts.", "cs.", "(any)", "(all)", "{", "}",
          '"', "and=", "or=", "order=", ".desc", ".nullsfirst", "limit=", "offset=", "&", "0", "1", "-1",
          "abc", "2024-01-01T00:00:00%2B02:00", "true", "...", "%25", "+", "\\", "%00", "'", ";", "é"]
queries = st.one_of(st.lists(st.sampled_from(TOKENS), max_size=20).map("".join),
                    st.text(max_size=40).map(lambda text: quote(text, safe="=&.,:()")))
bodies = st.one_of(st.none(), st.binary(max_size=60),
                   st.lists(st.sampled_from(['{"title":"x"}', '"s"', "1", "[", "{}", '[{"price":"abc"}]',
                                             '{"id":1,"title":"t","author_id":99}', "null"]),
                            max_size=3).map(lambda parts: "".join(parts).encode()))


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(FIXTURE)


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest_url, headers=server.headers(), timeout=30) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT"]),
       table=st.sampled_from(["books", "authors", "rpc/book_count", "rpc/cheap_books", "nope"]),
       query=queries, body=bodies,
       accept=st.sampled_from(["*/*", "text/csv", "application/vnd.pgrst.object+json", "x/y"]),
       prefer=st.sampled_from(["tx=rollback", "return=representation,tx=rollback",
                               "resolution=merge-duplicates,tx=rollback", "count=exact,tx=rollback"]))
def test_no_request_gets_a_server_error(http: httpx.Client, method: str, table: str, query: str,
                                        body: bytes | None, accept: str, prefer: str) -> None:
    headers = {"Accept": accept, "Prefer": prefer, "Content-Type": "application/json"}
    response = http.request(method, f"/{table}?{query}", headers=headers, content=body)
    assert response.status_code < 500, f"{method} /{table}?{query} {body!r} -> {response.text}"
    if response.status_code >= 400 and method != "HEAD":
        assert set(response.json()) == {"code", "message", "details", "hint"}
