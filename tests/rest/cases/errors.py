"""Cases from PostgREST 12's test/spec/Feature/Query/ErrorSpec.hs and the errors reference.

Status codes of PGRST errors follow docs.postgrest.org/en/v12/references/errors.html.
"""

from __future__ import annotations

from . import CT_JSON, Case, case, error, get

JSON_CT = {"Content-Type": CT_JSON}

CASES: list[Case] = [
    get("root path succeeds", "/", 200),
    get("nonexistent table gives 404", "/nonexistent_table", 404),
    get("single nested route gives 404", "/projects/nested", 404),
    get("double nested route gives 404", "/projects/nested/double", 404),
    case("TRACE", "TRACE is an unsupported method", "/", 405,
         error("PGRST117", "Unsupported HTTP method: TRACE")),
    # upstream's "OTHER" method case is left out: uvicorn's HTTP parser refuses unknown
    # methods with 400 before any application sees them
    get("unknown column in select gives 42703", "/projects?select=id,banana", 400,
        json_contains={"code": "42703"}, response_headers=JSON_CT,
        note="QuerySpec datarep case: column does not exist"),
    get("unknown column in filter gives 42703", "/projects?banana=eq.1", 400,
        json_contains={"code": "42703"}, response_headers=JSON_CT),
    get("unknown operator is a parse error", "/projects?id=foo.1", 400,
        json_contains={"code": "PGRST100"}, response_headers=JSON_CT),
    get("unknown table gives a JSON error with 404", "/faketable", 404,
        response_headers=JSON_CT),
    get("unknown rpc gives 404", "/rpc/no_such_function", 404, response_headers=JSON_CT),
]
