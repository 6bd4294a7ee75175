"""Cases from PostgREST 12's test/spec/Feature/Query/SingularSpec.hs.

Upstream checks with ``Prefer: tx=commit`` that a refused singular write left no
trace; here every write is rolled back, so only the refusals themselves are checked.
"""

from __future__ import annotations

from typing import Any

from . import ABSENT, CT_JSON, CT_SINGULAR, SINGULAR, Case, delete_, error, get, patch, post

ACCEPT = {"Accept": SINGULAR}
SINGULAR_CT = {"Content-Type": CT_SINGULAR}
JSON_CT = {"Content-Type": CT_JSON}


def rows_error(count: int) -> dict[str, Any]:
    return error("PGRST116", "JSON object requested, multiple (or no) rows returned",
                 details=f"The result contains {count} rows")


def with_prefer(prefer: str) -> dict[str, str]:
    return {"Accept": SINGULAR, "Prefer": prefer}


CASES: list[Case] = [
    get("GET singular fails for zero rows", "/items?id=gt.0&id=lt.0", 406, headers=ACCEPT),
    get("GET singular selects an existing object", "/items?id=eq.5", json={"id": 5},
        headers=ACCEPT, response_headers=SINGULAR_CT),
    get("GET singular without the +json suffix", "/items?id=eq.5", json={"id": 5},
        headers={"Accept": "application/vnd.pgrst.object"}, response_headers=SINGULAR_CT),
    get("GET singular combines with other prefer values", "/items?id=eq.5", json={"id": 5},
        headers=with_prefer("count=none"), response_headers=SINGULAR_CT),
    get("GET singular shapes embedded parents and children",
        "/projects?id=eq.1&select=id,name,clients(*),tasks(id,name)",
        json={"id": 1, "name": "Windows 7", "clients": {"id": 1, "name": "Microsoft"},
              "tasks": [{"id": 1, "name": "Design w7"}, {"id": 2, "name": "Code w7"}]},
        headers=ACCEPT, response_headers=SINGULAR_CT, note="upstream uses projects_view"),
    get("GET singular multiple rows gives PGRST116", "/items?id=lt.4", 406, rows_error(3),
        headers=ACCEPT, response_headers=JSON_CT),

    patch("PATCH singular one row with return=representation", "/addresses?id=eq.1",
          {"address": "B Street"}, json={"id": 1, "address": "B Street"},
          headers=with_prefer("return=representation"), response_headers=SINGULAR_CT),
    patch("PATCH singular one row with return=minimal", "/addresses?id=eq.1",
          {"address": "C Street"}, 204,
          headers=with_prefer("return=minimal"),
          response_headers={"Content-Type": ABSENT, "Preference-Applied": "return=minimal"}),
    patch("PATCH singular raises an error for multiple rows", "/addresses", {"address": "zzz"},
          406, rows_error(4), headers=ACCEPT, response_headers=JSON_CT),
    patch("PATCH singular raises an error for multiple rows with return=representation",
          "/addresses", {"address": "zzz"}, 406, rows_error(4),
          headers=with_prefer("return=representation"), response_headers=JSON_CT),
    patch("PATCH singular raises an error for zero rows", "/items?id=gt.0&id=lt.0", {"id": 1},
          406, rows_error(0), headers=ACCEPT, response_headers=JSON_CT),
    patch("PATCH singular raises an error for zero rows with return=representation",
          "/items?id=gt.0&id=lt.0", {"id": 1}, 406, rows_error(0),
          headers=with_prefer("return=representation"), response_headers=JSON_CT),

    post("POST singular one row with return=representation", "/addresses",
         [{"id": 102, "address": "xxx"}], json={"id": 102, "address": "xxx"},
         headers=with_prefer("return=representation"), response_headers=SINGULAR_CT),
    post("POST singular one row with return=minimal", "/addresses",
         [{"id": 103, "address": "xxx"}],
         headers=with_prefer("return=minimal"),
         response_headers={"Content-Type": ABSENT, "Content-Range": "*/*",
                           "Preference-Applied": "return=minimal"}),
    post("POST singular raises an error when creating multiple entities", "/addresses",
         [{"id": 200, "address": "xxx"}, {"id": 201, "address": "yyy"}], 406, rows_error(2),
         headers=ACCEPT, response_headers=JSON_CT),
    post("POST singular raises an error for multiple entities with return=representation",
         "/addresses", [{"id": 202, "address": "xxx"}, {"id": 203, "address": "yyy"}], 406,
         rows_error(2), headers=with_prefer("return=representation"), response_headers=JSON_CT),
    post("POST singular raises an error regardless of return=minimal", "/addresses",
         [{"id": 204, "address": "xxx"}, {"id": 205, "address": "yyy"}], 406, rows_error(2),
         headers=with_prefer("return=minimal"), response_headers=JSON_CT),
    post("POST singular raises an error when creating zero entities", "/addresses", [], 406,
         rows_error(0), headers=ACCEPT, response_headers=JSON_CT),
    post("POST singular raises an error when creating zero entities with return=representation",
         "/addresses", [], 406, rows_error(0), headers=with_prefer("return=representation"),
         response_headers=JSON_CT),

    delete_("DELETE singular one row with return=representation", "/items?id=eq.11", 200,
           {"id": 11}, headers=with_prefer("return=representation")),
    delete_("DELETE singular one row with return=minimal", "/items?id=eq.12", 204,
           headers=with_prefer("return=minimal"), text=""),
    delete_("DELETE singular raises an error for multiple entities", "/items?id=gt.0&id=lt.6",
           406, rows_error(5), headers=ACCEPT, response_headers=JSON_CT),
    delete_("DELETE singular raises an error for multiple entities with return=representation",
           "/items?id=gt.5&id=lt.11", 406, rows_error(5),
           headers=with_prefer("return=representation"), response_headers=JSON_CT),
    delete_("DELETE singular raises an error when deleting zero entities", "/items?id=lt.0", 406,
           rows_error(0), headers=ACCEPT, response_headers=JSON_CT),
    delete_("DELETE singular raises an error for zero entities with return=representation",
           "/items?id=lt.0", 406, rows_error(0), headers=with_prefer("return=representation"),
           response_headers=JSON_CT),

    post("RPC singular fails for zero rows", "/rpc/getproject", {"id": 9999999}, 406,
         rows_error(0), headers=ACCEPT, response_headers=JSON_CT),
    post("RPC singular succeeds for a scalar result", "/rpc/sayhello", {"name": "world"}, 200,
         headers=ACCEPT),
    post("RPC singular returns a single object", "/rpc/getproject", {"id": 1}, 200,
         {"id": 1, "name": "Windows 7", "client_id": 1}, headers=ACCEPT,
         response_headers=SINGULAR_CT),
    post("RPC singular fails for multiple rows", "/rpc/getallprojects", {}, 406, rows_error(5),
         headers=ACCEPT, response_headers=JSON_CT),
    post("RPC select on a set-returning function", "/rpc/getproject?select=id,name", {"id": 1},
         200, [{"id": 1, "name": "Windows 7"}]),
]
