"""Cases from PostgREST 12's test/spec/Feature/Query/RangeSpec.hs.

Upstream's ``rangeHdrs`` sends ``Range-Unit: items`` with ``Range: a-b``;
``rangeHdrsWithCount`` adds ``Prefer: count=exact``. ``menagerie`` is empty.
"""

from __future__ import annotations

from typing import Any

from . import CT_JSON, Case, error, get, head

ALL_ITEMS = [{"id": i} for i in range(1, 16)]


def rng(spec: str, count: bool = False) -> dict[str, str]:
    headers = {"Range-Unit": "items", "Range": spec}
    if count:
        headers["Prefer"] = "count=exact"
    return headers


def cr(value: str, **more: Any) -> dict[str, Any]:
    return {"Content-Range": value, **more}


def not_satisfiable(details: str) -> dict[str, Any]:
    return error("PGRST103", "Requested range not satisfiable", details=details)


CASES: list[Case] = [
    # GET /rpc/getitemrange
    get("rpc without range headers returns whole range", "/rpc/getitemrange?min=0&max=15", 200),
    get("rpc returns Content-Range */* for empty range", "/rpc/getitemrange?min=2&max=2",
        json=[], response_headers=cr("*/*")),
    get("rpc returns Content-Range range/*", "/rpc/getitemrange?order=id&min=0&max=15",
        json=ALL_ITEMS, response_headers=cr("0-14/*")),
    get("rpc refuses an offset with no items", "/rpc/getitemrange?offset=1&min=2&max=2", 416,
        not_satisfiable("An offset of 1 was requested, but there are only 0 rows."),
        headers={"Prefer": "count=exact"}, response_headers=cr("*/0")),
    get("rpc refuses an offset past the last item", "/rpc/getitemrange?offset=100&min=0&max=15",
        416, not_satisfiable("An offset of 100 was requested, but there are only 15 rows."),
        headers={"Prefer": "count=exact"}, response_headers=cr("*/15")),
    get("rpc range header succeeds with partial content", "/rpc/getitemrange?min=0&max=15", 200,
        headers=rng("0-1"), response_headers=cr("0-1/*")),
    get("rpc understands open-ended ranges", "/rpc/getitemrange?min=0&max=15", 200,
        headers=rng("0-")),
    get("rpc returns an empty body when there are no results", "/rpc/getitemrange?min=2&max=2",
        200, [], headers=rng("0-1"), response_headers=cr("*/*")),
    get("rpc allows one-item requests", "/rpc/getitemrange?min=0&max=15", 200,
        headers=rng("0-0"), response_headers=cr("0-0/*")),
    get("rpc handles ranges beyond collection length via truncation",
        "/rpc/getitemrange?min=0&max=15", 200, headers=rng("10-100"),
        response_headers=cr("10-14/*")),
    get("rpc fails with 416 for offside range", "/rpc/getitemrange?min=2&max=2", 416,
        not_satisfiable("The lower boundary must be lower than or equal to the upper boundary "
                        "in the Range header."),
        headers=rng("1-0")),
    get("rpc range header refuses a nonzero start with no items", "/rpc/getitemrange?min=2&max=2",
        416, not_satisfiable("An offset of 1 was requested, but there are only 0 rows."),
        headers=rng("1-2", count=True), response_headers=cr("*/0")),
    get("rpc range header refuses a start past the last item", "/rpc/getitemrange?min=0&max=15",
        416, not_satisfiable("An offset of 100 was requested, but there are only 15 rows."),
        headers=rng("100-199", count=True), response_headers=cr("*/15")),

    # GET /items without range headers
    get("items without range headers returns whole range", "/items", 200),
    get("count with an empty body gives Content-Range */0", "/items?id=eq.0", json=[],
        headers={"Prefer": "count=exact"}, response_headers=cr("*/0")),
    get("count=none on an empty table gives */*", "/menagerie", json=[],
        headers={"Prefer": "count=none"}, response_headers=cr("*/*")),
    get("count=none gives range/*", "/items?order=id", json=ALL_ITEMS,
        headers={"Prefer": "count=none"}, response_headers=cr("0-14/*")),
    get("count=none gives range/* with other filters", "/items?id=eq.1&order=id",
        json=[{"id": 1}], headers={"Prefer": "count=none"}, response_headers=cr("0-0/*")),

    # limit/offset parameters
    get("no limit/offset parameters return everything", "/items?select=id&order=id.asc",
        json=ALL_ITEMS, response_headers=cr("0-14/*")),
    get("top level limit with parameter", "/items?select=id&order=id.asc&limit=3",
        json=ALL_ITEMS[:3], response_headers=cr("0-2/*")),
    get("range headers override limit parameter", "/items?select=id&order=id.asc&limit=3",
        json=ALL_ITEMS[:2], headers=rng("0-1"), response_headers=cr("0-1/*")),
    get("limit works on all levels",
        "/clients?select=id,projects(id,tasks(id))&order=id.asc&limit=1&projects.order=id.asc"
        "&projects.limit=2&projects.tasks.order=id.asc&projects.tasks.limit=1",
        json=[{"id": 1, "projects": [{"id": 1, "tasks": [{"id": 1}]},
                                     {"id": 2, "tasks": [{"id": 3}]}]}],
        response_headers=cr("0-0/*")),
    get("limit and offset work on first level", "/items?select=id&order=id.asc&limit=3&offset=2",
        json=ALL_ITEMS[2:5], response_headers=cr("2-4/*")),
    head("HEAD with limit and offset", "/items?select=id&order=id.asc&limit=3&offset=2",
         text="", response_headers=cr("2-4/*", **{"Content-Type": CT_JSON})),
    get("offset 0 is a no-op with no items", "/items?offset=0&id=eq.0", json=[],
        response_headers=cr("*/*")),
    get("offset 0 is a no-op with no items and count", "/items?offset=0&id=eq.0", json=[],
        headers={"Prefer": "count=exact"}, response_headers=cr("*/0")),
    get("offset 0 is a no-op with items", "/items?select=id&offset=0&order=id", json=ALL_ITEMS,
        response_headers=cr("0-14/*")),
    get("negative offset is refused", "/items?select=id&offset=-4&order=id", 400,
        json_contains={"code": "PGRST100"},
        note="upstream ignores a negative offset; Ledgerbase answers 400 on purpose"),
    get("limit 0 returns an empty array", "/items?select=id&limit=0", json=[],
        response_headers=cr("*/*")),
    get("negative limit fails", "/items?select=id&limit=-1", 416,
        not_satisfiable("Limit should be greater than or equal to zero."),
        response_headers={"Content-Type": CT_JSON}),
    get("offset refuses a nonzero start with no items", "/menagerie?offset=1", 416,
        not_satisfiable("An offset of 1 was requested, but there are only 0 rows."),
        headers={"Prefer": "count=exact"}, response_headers=cr("*/0")),
    get("offset refuses a start past the last item", "/items?offset=100", 416,
        not_satisfiable("An offset of 100 was requested, but there are only 15 rows."),
        headers={"Prefer": "count=exact"}, response_headers=cr("*/15")),

    # with range headers
    get("range header succeeds with partial content", "/items", 200, headers=rng("0-1"),
        response_headers=cr("0-1/*")),
    get("range header understands open-ended ranges", "/items", 200, headers=rng("0-")),
    get("range header returns an empty body when there are no results", "/menagerie", 200, [],
        headers=rng("0-1"), response_headers=cr("*/*")),
    get("range header allows one-item requests", "/items", 200, headers=rng("0-0"),
        response_headers=cr("0-0/*")),
    get("range header handles ranges beyond collection length via truncation", "/items", 200,
        headers=rng("10-100"), response_headers=cr("10-14/*")),
    get("range header fails with 416 for offside range", "/items", 416,
        not_satisfiable("The lower boundary must be lower than or equal to the upper boundary "
                        "in the Range header."),
        headers=rng("1-0")),
    get("range header refuses a nonzero start with no items", "/menagerie", 416,
        not_satisfiable("An offset of 1 was requested, but there are only 0 rows."),
        headers=rng("1-2", count=True), response_headers=cr("*/0")),
    get("range header refuses a start past the last item", "/items", 416,
        not_satisfiable("An offset of 100 was requested, but there are only 15 rows."),
        headers=rng("100-199", count=True), response_headers=cr("*/15")),

    # exact count, from the same spec's count cases and the pagination docs
    get("count=exact with a range header gives 206", "/items?order=id", 206, ALL_ITEMS[:2],
        headers=rng("0-1", count=True), response_headers=cr("0-1/15")),
    get("count=exact on the whole table gives 200", "/items?select=id&order=id", 200, ALL_ITEMS,
        headers={"Prefer": "count=exact"}, response_headers=cr("0-14/15")),
]
