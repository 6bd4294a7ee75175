"""The data API gives PostgreSQL's answers on both databases (PostgreSQL is the reference).

Every case runs against SQLite and PostgreSQL with the same fixture; the
expected answers are what PostgreSQL and PostgREST 12 give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer

FIXTURE = Path(__file__).parent.parent / "fixtures" / "core"
ANY = object()


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    status: int = 200
    json: Any = ANY
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    text: str | None = None
    contains: dict[str, Any] = field(default_factory=dict)  # subset of the JSON object
    response_headers: dict[str, str] = field(default_factory=dict)
    role: str = "service_role"
    only: str | None = None  # "sqlite" or "postgres" when the databases legitimately differ
    check: Callable[[httpx.Response], None] | None = None


def ids(*values: int) -> list[dict[str, int]]:
    return [{"id": value} for value in values]


ROLLBACK = {"Prefer": "tx=rollback"}

CASES = [
    # ordering puts NULLs last ascending and first descending, as PostgreSQL does
    Case("nulls last ascending", "/books?select=id&order=price", json=ids(6, 2, 5, 1, 3, 4)),
    Case("nulls first descending", "/books?select=id&order=price.desc", json=ids(4, 3, 1, 5, 2, 6)),
    Case("nullsfirst ascending", "/books?select=id&order=price.asc.nullsfirst", json=ids(4, 6, 2, 5, 1, 3)),
    Case("nullslast descending", "/books?select=id&order=price.desc.nullslast", json=ids(3, 1, 5, 2, 6, 4)),
    Case("numeric keeps its scale", "/books?select=id,price&id=in.(1,6)&order=id",
         check=lambda r: (r.text.replace(" ", "").replace("\n", "")
                          == '[{"id":1,"price":12.50},{"id":6,"price":0.00}]') or pytest.fail(r.text)),
    Case("boolean to text", "/books?select=id,available::text&id=eq.2", json=[{"id": 2, "available": "false"}]),
    Case("numeric to text", "/books?select=price::text&id=eq.1", json=[{"price": "12.50"}]),
    Case("timestamptz to text", "/books?select=published_at::text&id=eq.3",
         json=[{"published_at": "1972-11-01 14:30:00+00"}]),
    Case("csv", "/books?select=id,available,price&id=in.(1,2)&order=id", headers={"Accept": "text/csv"},
         text="id,available,price\n1,t,12.50\n2,f,9.99",
         response_headers={"content-type": "text/csv; charset=utf-8"}),
    Case("timestamptz comes back in UTC", "/books?select=id,published_at&id=in.(1,3)&order=id",
         json=[{"id": 1, "published_at": "1974-05-01T10:00:00+00:00"},
               {"id": 3, "published_at": "1972-11-01T14:30:00+00:00"}]),
    Case("timestamptz compared as instants", "/books?select=id&published_at=eq.1974-05-01T12:00:00%2B02:00",
         json=ids(1)),
    Case("timestamptz other offset notation", "/books?select=id&published_at=eq.1974-05-01 05:00:00-05",
         json=ids(1)),
    Case("timestamptz range", "/books?select=id&published_at=gt.1970-01-01T00:00:00Z&order=id", json=ids(1, 3)),
    Case("bad timestamp", "/books?published_at=eq.yesterday-ish", status=400, contains={"code": "22007"}),
    Case("bad integer", "/books?id=eq.abc", status=400,
         json={"code": "22P02", "details": None, "hint": None,
               "message": 'invalid input syntax for type bigint: "abc"'}),
    Case("bad boolean", "/books?available=eq.maybe", status=400, contains={"code": "22P02"}),
    Case("bad uuid", "/books?isbn=eq.nope", status=400, contains={"code": "22P02"}),
    Case("regex match", "/books?select=id&title=match.^The&order=id", json=ids(1, 2, 6)),
    Case("regex imatch", "/books?select=id&title=imatch.^the c", json=ids(6)),
    Case("like is case sensitive", "/books?select=id&title=like.the*", json=[]),
    Case("like with wildcards", "/books?select=id&title=like.*Cit*", json=ids(3)),
    Case("ilike folds non-ASCII", "/tags?select=id&name=ilike.ä*", json=ids(3)),
    Case("in list", "/books?select=id&id=in.(2,4,99)&order=id", json=ids(2, 4)),
    Case("in with quoted comma", "/tags?select=id&name=in.(\"science fiction\",classic)&order=id", json=ids(1, 2)),
    Case("is null", "/books?select=id&price=is.null", json=ids(4)),
    Case("is false", "/books?select=id&available=is.false&order=id", json=ids(2, 6)),
    Case("not is null", "/books?select=id&price=not.is.null&order=id", json=ids(1, 2, 3, 5, 6)),
    Case("isdistinct counts nulls", "/books?select=id&price=isdistinct.12.50&order=id", json=ids(2, 3, 4, 5, 6)),
    Case("not eq", "/books?select=id&author_id=not.eq.1&order=id", json=ids(3, 4, 5, 6)),
    Case("neq skips nulls", "/people?select=id&nickname=neq.ada&order=id", json=ids(3)),
    Case("or and nested and", "/books?select=id&or=(price.lt.10,and(available.is.false,price.gt.5))&order=id",
         json=ids(2, 6)),
    Case("not.or", "/books?select=id&not.or=(id.lt.3,id.gt.4)&order=id", json=ids(3, 4)),
    Case("like any", "/books?select=id&title=like(any).{*Cities,Sol*}&order=id", json=ids(3, 5)),
    Case("gt all", "/books?select=id&id=gt(all).{1,2}&order=id", json=ids(3, 4, 5, 6)),
    Case("eq any", "/books?select=id&id=eq(any).{1,5}&order=id", json=ids(1, 5)),
    # JSON paths
    Case("json paths", "/books?select=id,meta->>series,pages:meta->pages&id=eq.1",
         json=[{"id": 1, "series": "Hainish", "pages": 387}]),
    Case("json path filter", "/books?select=id&meta->>series=eq.Hainish&order=id", json=ids(1, 2)),
    Case("json array index", "/books?select=id&meta->awards->>0=eq.Hugo", json=ids(1)),
    Case("json object out", "/books?select=meta->awards&id=eq.1", json=[{"awards": ["Hugo", "Nebula"]}]),
    # embedding
    Case("many-to-one", "/books?select=title,authors(name)&id=eq.3",
         json=[{"title": "Invisible Cities", "authors": {"name": "Italo Calvino"}}]),
    Case("many-to-one null", "/books?select=id,authors(name)&id=eq.4",
         json=[{"id": 4, "authors": {"name": "Italo Calvino"}}]),
    Case("one-to-many ordered", "/authors?select=name,books(id)&id=eq.2&books.order=id.desc",
         json=[{"name": "Italo Calvino", "books": ids(4, 3)}]),
    Case("one-to-many empty", "/authors?select=name,books(id)&id=eq.4", json=[{"name": "Nobody Yet", "books": []}]),
    Case("many-to-many", "/books?select=id,tags(name)&id=eq.6&tags.order=id",
         json=[{"id": 6, "tags": [{"name": "science fiction"}, {"name": "Ästhetik"}]}]),
    Case("nested and aliased",
         "/authors?select=name,works:books(title,tags(id))&id=eq.3&works.order=id&works.tags.order=id",
         json=[{"name": "Stanisław Lem", "works": [{"title": "Solaris", "tags": ids(1)},
                                                   {"title": "The Cyberiad", "tags": ids(1, 3)}]}]),
    Case("ambiguous embed", "/loans?select=*,people(*)", status=300, contains={"code": "PGRST201"}),
    Case("hint by constraint", "/loans?select=id,borrower:people!loans_borrower_id_fkey(name)&id=eq.1",
         json=[{"id": 1, "borrower": {"name": "Ada"}}]),
    Case("hint by column", "/loans?select=id,lender:people!lender_id(name)&order=id",
         json=[{"id": 1, "lender": {"name": "Grace"}}, {"id": 2, "lender": None},
               {"id": 3, "lender": {"name": "Ada"}}]),
    Case("embed through a foreign key column", "/loans?select=id,lender_id(name)&id=eq.1",
         json=[{"id": 1, "lender_id": {"name": "Grace"}}]),
    Case("inner embed filters parents", "/authors?select=name,books!inner(title)&books.price=gt.13",
         json=[{"name": "Italo Calvino", "books": [{"title": "Invisible Cities"}]}]),
    Case("embed filter keeps parents", "/authors?select=id,books(id)&books.price=gt.13&order=id",
         json=[{"id": 1, "books": []}, {"id": 2, "books": ids(3)}, {"id": 3, "books": []},
               {"id": 4, "books": []}]),
    Case("spread", "/books?select=title,...authors(author:name,country)&id=eq.5",
         json=[{"title": "Solaris", "author": "Stanisław Lem", "country": "PL"}]),
    Case("spread with a JSON path", "/loans?select=id,...books(title,pages:meta->pages)&id=eq.1",
         json=[{"id": 1, "title": "The Dispossessed", "pages": 387}]),
    Case("spread on to-many", "/authors?select=...books(title)", status=400, contains={"code": "PGRST119"}),
    Case("order by embedded column", "/books?select=id&order=authors(name).desc,id", json=ids(1, 2, 5, 6, 3, 4)),
    Case("embedded limit", "/authors?select=id,books(id)&books.order=id.desc&books.limit=1&id=in.(1,2)&order=id",
         json=[{"id": 1, "books": ids(2)}, {"id": 2, "books": ids(4)}]),
    Case("parents without related rows", "/authors?select=name,books(id)&books=is.null",
         json=[{"name": "Nobody Yet", "books": []}]),
    Case("parents with related rows", "/authors?select=id,books()&books=not.is.null&order=id", json=ids(1, 2, 3)),
    Case("parents with matching related rows", "/authors?select=id,books(id)&books.price=gt.13&books=not.is.null",
         json=[{"id": 2, "books": ids(3)}]),
    Case("only null checks on embeds", "/authors?select=id,books(id)&books=eq.1", status=400,
         contains={"code": "PGRST120"}),
    Case("unknown schema profile", "/books", headers={"Accept-Profile": "private"}, status=406,
         contains={"code": "PGRST106"}),
    Case("unknown relationship", "/books?select=*,nothing(*)", status=400, contains={"code": "PGRST200"}),
    Case("filter on a resource not embedded", "/books?select=id&tags.id=eq.1", status=400,
         contains={"code": "PGRST108"}),
    # paging, ranges and counts
    Case("limit and offset", "/books?select=id&order=id&limit=2&offset=1", json=ids(2, 3),
         response_headers={"content-range": "1-2/*"}),
    Case("exact count partial", "/books?select=id&order=id&limit=2", headers={"Prefer": "count=exact"},
         status=206, json=ids(1, 2), response_headers={"content-range": "0-1/6", "preference-applied": "count=exact"}),
    Case("range header", "/books?select=id&order=id", headers={"Range": "2-3", "Prefer": "count=exact"},
         status=206, json=ids(3, 4), response_headers={"content-range": "2-3/6"}),
    Case("full page with count", "/books?select=id&order=id", headers={"Prefer": "count=exact"},
         response_headers={"content-range": "0-5/6"}),
    Case("offset past the end", "/books?select=id&offset=10", headers={"Prefer": "count=exact"}, status=416,
         contains={"code": "PGRST103"}, response_headers={"content-range": "*/6"}),
    Case("empty page", "/books?select=id&id=gt.100", json=[], response_headers={"content-range": "*/*"}),
    Case("limit must be a number", "/books?limit=ten", status=400, contains={"code": "PGRST100"}),
    Case("offset must not be negative", "/books?offset=-1", status=400, contains={"code": "PGRST100"}),
    # singular and formats
    Case("singular", "/books?select=id,title&id=eq.5", headers={"Accept": "application/vnd.pgrst.object+json"},
         json={"id": 5, "title": "Solaris"},
         response_headers={"content-type": "application/vnd.pgrst.object+json; charset=utf-8"}),
    Case("singular with many rows", "/books?id=gt.1", headers={"Accept": "application/vnd.pgrst.object+json"},
         status=406, json={"code": "PGRST116", "details": "The result contains 5 rows", "hint": None,
                           "message": "JSON object requested, multiple (or no) rows returned"}),
    Case("unsupported accept", "/books", headers={"Accept": "text/html"}, status=406, contains={"code": "PGRST107"}),
    Case("accept anything", "/books?select=id&id=eq.1", headers={"Accept": "*/*"}, json=ids(1)),
    Case("head", "/books?id=eq.1", method="HEAD", text="", response_headers={"content-range": "0-0/*"}),
    Case("options", "/books", method="OPTIONS", text="",
         response_headers={"allow": "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"}),
    # full-text search is PostgreSQL's
    Case("fts", "/books?select=id&title=fts.cities", json=ids(3), only="postgres"),
    Case("fts refused on sqlite", "/books?select=id&title=fts.cities", status=400,
         contains={"code": "PGRST127"}, only="sqlite"),
    Case("containment on jsonb", "/books?select=id&meta=cs.{\"series\":\"Hainish\"}&order=id", json=ids(1, 2),
         only="postgres"),
    # unknown names and bad requests
    Case("unknown table", "/nope", status=404, contains={"code": "42P01"}),
    Case("unknown column", "/books?select=nope", status=400, contains={"code": "42703"}),
    Case("unknown filter column", "/books?nope=eq.1", status=400, contains={"code": "42703"}),
    Case("unknown operator", "/books?id=equals.1", status=400, contains={"code": "PGRST100"}),
    Case("junk after a cast", "/books?select=id::text junk", status=400, contains={"code": "PGRST100"}),
    Case("unknown cast", "/books?select=id::nosuchtype", status=400, contains={"code": "42704"}),
    Case("unbalanced select", "/books?select=id,authors(name", status=400, contains={"code": "PGRST100"}),
    Case("like on an integer", "/books?id=like.1*", status=404, contains={"code": "42883"}),
    # RPC
    Case("rpc scalar by GET", "/rpc/book_count?author=1", json=2),
    Case("rpc scalar by POST", "/rpc/book_count", method="POST", body={"author": 3}, json=2),
    Case("rpc set with select and filter", "/rpc/cheap_books?select=id&id=gt.2", method="POST",
         body={"max_price": 12}, json=ids(5, 6)),
    Case("rpc that writes, by POST", "/rpc/add_tag", method="POST", headers=ROLLBACK,
         body={"tag_id": 70, "tag_name": "new"}, json=70, only="postgres"),
    Case("rpc that writes, by GET, is read-only", "/rpc/add_tag?tag_id=71&tag_name=new", status=405,
         contains={"code": "25006"}, only="postgres"),
    Case("rpc unknown function", "/rpc/nope", method="POST", body={}, status=404, contains={"code": "PGRST202"}),
    Case("rpc unknown argument", "/rpc/book_count?writer=1", status=404, contains={"code": "PGRST202"}),
    Case("rpc bad argument type", "/rpc/book_count?author=x", status=400, contains={"code": "22P02"}),
    # writes (rolled back, so cases stay independent)
    Case("insert returns representation", "/authors?select=name,country", method="POST",
         headers={"Prefer": "return=representation,tx=rollback"}, body={"name": "Ted Chiang", "country": "US"},
         status=201, json=[{"name": "Ted Chiang", "country": "US"}],
         response_headers={"preference-applied": "return=representation, tx=rollback", "content-range": "*/*"}),
    Case("insert minimal", "/tags", method="POST", headers=ROLLBACK, body={"id": 20, "name": "x"}, status=201, text=""),
    Case("insert headers-only gives Location", "/tags", method="POST",
         headers={"Prefer": "return=headers-only,tx=rollback"}, body={"id": 21, "name": "y"}, status=201,
         response_headers={"location": "/tags?id=eq.21"}),
    Case("bulk insert", "/tags?select=id", method="POST", headers={"Prefer": "return=representation,tx=rollback"},
         body=[{"id": 30, "name": "a"}, {"id": 31, "name": "b"}], status=201, json=ids(30, 31)),
    Case("bulk insert keys must match", "/tags", method="POST", headers=ROLLBACK,
         body=[{"id": 30, "name": "a"}, {"id": 31}], status=400, contains={"code": "PGRST102"}),
    Case("csv insert", "/tags?select=id,name", method="POST",
         headers={"Prefer": "return=representation,tx=rollback", "Content-Type": "text/csv"},
         body="id,name\n40,alpha\n41,beta", status=201, json=[{"id": 40, "name": "alpha"}, {"id": 41, "name": "beta"}]),
    Case("columns ignores other keys", "/tags?columns=id,name&select=id,name", method="POST",
         headers={"Prefer": "return=representation,tx=rollback"}, body={"id": 42, "name": "z", "junk": 1},
         status=201, json=[{"id": 42, "name": "z"}]),
    Case("missing=default uses defaults", "/books?columns=title,available&select=title,available", method="POST",
         headers={"Prefer": "return=representation,missing=default,tx=rollback"}, body=[{"title": "Untitled"}],
         status=201, json=[{"title": "Untitled", "available": True}]),
    Case("identity and uuid defaults", "/books?select=id,isbn", method="POST",
         headers={"Prefer": "return=representation,tx=rollback"}, body={"title": "New"}, status=201,
         check=lambda r: (r.json()[0]["id"] > 6 and len(r.json()[0]["isbn"]) == 36) or pytest.fail(r.text)),
    Case("unknown column in body", "/tags", method="POST", headers=ROLLBACK, body={"id": 50, "nope": 1},
         status=400, contains={"code": "PGRST204"}),
    Case("wrong type in body", "/tags", method="POST", headers=ROLLBACK, body={"id": "x", "name": "n"},
         status=400, contains={"code": "22P02"}),
    Case("invalid json", "/tags", method="POST", headers={**ROLLBACK, "Content-Type": "application/json"},
         body="{nope", status=400, contains={"code": "PGRST102"}),
    Case("scalar json body", "/tags", method="POST", headers={**ROLLBACK, "Content-Type": "application/json"},
         body="42", status=400, contains={"code": "PGRST102"}),
    Case("unsupported content type", "/tags", method="POST", headers={**ROLLBACK, "Content-Type": "application/xml"},
         body="<a/>", status=415),
    Case("unique violation", "/authors", method="POST", headers=ROLLBACK, body={"name": "Italo Calvino"},
         status=409, contains={"code": "23505"}),
    Case("foreign key violation", "/books", method="POST", headers=ROLLBACK, body={"author_id": 99, "title": "x"},
         status=409, contains={"code": "23503"}),
    Case("not null violation", "/books", method="POST", headers=ROLLBACK, body={"title": None},
         status=400, contains={"code": "23502"}),
    Case("check violation", "/books", method="POST", headers=ROLLBACK, body={"title": "x", "price": -1},
         status=400, contains={"code": "23514"}),
    Case("upsert of existing rows answers 200", "/tags?select=id,name", method="POST",
         headers={"Prefer": "resolution=merge-duplicates,return=representation,tx=rollback"},
         body=[{"id": 1, "name": "sf"}], status=200, json=[{"id": 1, "name": "sf"}],
         response_headers={"preference-applied": "resolution=merge-duplicates, return=representation, tx=rollback"}),
    Case("upsert inserting answers 201", "/tags?select=id,name", method="POST",
         headers={"Prefer": "resolution=merge-duplicates,return=representation,tx=rollback"},
         body=[{"id": 1, "name": "sf"}, {"id": 9, "name": "new"}], status=201,
         json=[{"id": 1, "name": "sf"}, {"id": 9, "name": "new"}]),
    Case("upsert ignoring duplicates", "/tags?select=id", method="POST",
         headers={"Prefer": "resolution=ignore-duplicates,return=representation,tx=rollback"},
         body=[{"id": 1, "name": "sf"}, {"id": 9, "name": "new"}], status=201, json=ids(9)),
    Case("upsert on another key", "/authors?on_conflict=name&select=name,country", method="POST",
         headers={"Prefer": "resolution=merge-duplicates,return=representation,tx=rollback"},
         body={"name": "Italo Calvino", "country": "FR"}, status=200,
         json=[{"name": "Italo Calvino", "country": "FR"}]),
    Case("upsert without a matching constraint", "/authors?on_conflict=country", method="POST",
         headers={"Prefer": "resolution=merge-duplicates,tx=rollback"}, body={"name": "x", "country": "FR"},
         status=400, contains={"code": "42P10"}),
    Case("patch representation", "/books?id=eq.2&select=id,available", method="PATCH",
         headers={"Prefer": "return=representation,tx=rollback"}, body={"available": True},
         json=[{"id": 2, "available": True}], response_headers={"content-range": "0-0/*"}),
    Case("patch minimal", "/books?author_id=eq.1", method="PATCH", headers=ROLLBACK, body={"price": 1},
         status=204, response_headers={"content-range": "0-1/*"}),
    Case("patch with limit needs order", "/books?limit=1", method="PATCH", headers=ROLLBACK, body={"price": 1},
         status=400, contains={"code": "PGRST109"}),
    Case("patch with order and limit", "/books?order=id.desc&limit=2&select=id", method="PATCH",
         headers={"Prefer": "return=representation,tx=rollback"}, body={"price": 1}, json=ids(6, 5)),
    Case("singular patch of two rows fails", "/books?author_id=eq.1", method="PATCH",
         headers={"Accept": "application/vnd.pgrst.object+json"}, body={"title": "Same"}, status=406,
         contains={"code": "PGRST116"}),
    Case("delete representation", "/loans?id=eq.2&select=id,due", method="DELETE",
         headers={"Prefer": "return=representation,tx=rollback"}, json=[{"id": 2, "due": "2024-03-15"}]),
    Case("delete count", "/loans", method="DELETE", headers={"Prefer": "count=exact,tx=rollback"}, status=204,
         response_headers={"content-range": "*/3"}),
    Case("anon cannot write", "/tags", method="POST", role="anon", body={"id": 60, "name": "x"}, status=401,
         contains={"code": "42501"}),
    Case("anon can read", "/tags?select=id&id=eq.1", role="anon", json=ids(1)),
    Case("strict handling rejects bad preferences", "/books?id=eq.1",
         headers={"Prefer": "handling=strict, nonsense=1"}, status=400, contains={"code": "PGRST122"}),
    Case("lenient handling ignores them", "/books?select=id&id=eq.1", headers={"Prefer": "nonsense=1"}, json=ids(1)),
]


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(FIXTURE)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest_url, timeout=30) as http:
        yield http


PARAMS = [pytest.param(dialect, case, id=f"{dialect}-{case.name}")
          for dialect in ("sqlite", "postgres") for case in CASES if case.only in (None, dialect)]


@pytest.mark.parametrize(("dialect", "case"), PARAMS, indirect=["dialect"], scope="module")
def test_case(dialect: str, case: Case, server: RunningServer, client: httpx.Client) -> None:
    headers = {**server.headers(case.role), **case.headers}
    content: bytes | None = None
    if case.body is not None:
        if isinstance(case.body, str):
            content = case.body.encode()
        else:
            import json

            content = json.dumps(case.body).encode()
            headers.setdefault("Content-Type", "application/json")
    response = client.request(case.method, case.path, headers=headers, content=content)
    context = f"{case.method} {case.path} -> {response.status_code} {response.text[:500]}"
    assert response.status_code == case.status, context
    if case.json is not ANY:
        assert response.json() == case.json, context
    for key, value in case.contains.items():
        assert response.json()[key] == value, context
    if case.text is not None:
        assert response.text == case.text, context
    for name, value in case.response_headers.items():
        assert response.headers.get(name) == value, f"{name}: {response.headers.get(name)!r}; {context}"
    if case.check is not None:
        case.check(response)


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"], indirect=True, scope="module")
def test_reads_of_one_shape(dialect: str, server: RunningServer, client: httpx.Client) -> None:
    """Reads that differ only in their filter values, limit or offset share a parsed request
    (the shape cache); each still gets its own answer, and its own errors."""
    headers = server.headers()

    def get(path: str, **extra: str) -> httpx.Response:
        return client.get(path, headers={**headers, **extra})

    everything = get("/books?select=id,title&order=id").json()
    titles = {row["id"]: row["title"] for row in everything}
    for _ in range(2):  # the second pass answers from the shape cache
        for book_id, title in titles.items():
            assert get(f"/books?select=id,title&id=eq.{book_id}").json() == [{"id": book_id, "title": title}]
        assert get("/books?select=id&id=gt.4&order=id").json() == ids(5, 6)
        assert get("/books?select=id&id=gt.1&order=id").json() == ids(2, 3, 4, 5, 6)
        for limit, offset in ((2, 0), (3, 1), (1, 5), (4, 4)):
            response = get(f"/books?select=id&order=id&limit={limit}&offset={offset}")
            expected = [{"id": row["id"]} for row in everything[offset:offset + limit]]
            assert response.json() == expected
            assert response.headers["content-range"] == f"{offset}-{offset + len(expected) - 1}/*"
        assert get("/books?select=id&order=id&limit=2&offset=9").json() == []
        wrong = get("/books?select=id,title&id=eq.abc")
        assert wrong.status_code == 400 and wrong.json()["code"] == "22P02", wrong.text
        assert get("/books?select=id&title=like.*Cities").json() == ids(3)
        assert get("/books?select=id&title=like.*Darkness").json() == ids(2)
        # the same query with other headers is another shape
        single = get("/books?select=id,title&id=eq.1", Accept="application/vnd.pgrst.object+json")
        assert single.json() == {"id": 1, "title": titles[1]}
        none = get("/books?select=id,title&id=eq.99", Accept="application/vnd.pgrst.object+json")
        assert none.status_code == 406 and none.json()["code"] == "PGRST116"
        ranged = get("/books?select=id&order=id&limit=4&offset=0", Range="1-2")
        assert ranged.json() == ids(2, 3) and ranged.headers["content-range"] == "1-2/*"
        counted = get("/books?select=id&id=lt.3&order=id", Prefer="count=exact")
        assert counted.json() == ids(1, 2) and counted.headers["content-range"] == "0-1/2"
        head = client.head("/books?select=id,title&id=eq.2", headers=headers)
        assert head.status_code == 200 and head.content == b""
