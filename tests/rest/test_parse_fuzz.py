"""Hypothesis: parsing, planning and compiling any query string raises nothing but LedgerbaseError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerbase.db.dialect import POSTGRES, SQLITE
from ledgerbase.db.schema import Column, ForeignKey, PgType, SchemaCache, Table, build_relationships
from ledgerbase.errors import LedgerbaseError
from ledgerbase.rest.compile import compile_read
from ledgerbase.rest.parse import parse_request, query_shape, split_query
from ledgerbase.rest.plan import plan_read
from ledgerbase.rest.request import ApiRequest


def _cache() -> SchemaCache:
    def col(name: str, kind: str, nullable: bool = True) -> Column:
        return Column(name=name, type=PgType.parse(kind), nullable=nullable)

    tables = {
        "clients": Table("clients", "public", (col("id", "integer", False), col("name", "text"))
                         , primary_key=("id",)),
        "projects": Table("projects", "public",
                          (col("id", "integer", False), col("name", "text"),
                           col("client_id", "integer"), col("meta", "jsonb"),
                           col("due", "timestamptz"), col("done", "boolean"),
                           col("budget", "numeric(10,2)")),
                          primary_key=("id",),
                          foreign_keys=(ForeignKey("projects_client_id_fkey", "projects",
                                                   ("client_id",), "clients", ("id",)),)),
    }
    return SchemaCache(schema="public", tables=tables, relationships=build_relationships(tables))


CACHE = _cache()
TOKENS = ["select", "=", "id", "name", "client_id", "meta", "due", "done", "budget", "clients",
          "projects", "(", ")", ",", ".", ":", "::", "text", "->", "->>", "*", "!", "inner",
          "eq", "neq", "gt", "in", "is", "null", "not", "like", "ilike", "match", "fts", "cs",
          "any", "all", "{", "}", "\"", "and", "or", "order", "asc", "desc", "nullsfirst",
          "limit", "offset", "&", "1", "-1", "abc", "2024-01-01", "true", "...", "%", "+", "\\"]

query_strings = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=25).map("".join),
    st.text(max_size=60),
)


@settings(max_examples=600, deadline=None)
@given(query=query_strings, table=st.sampled_from(["projects", "clients"]),
       accept=st.sampled_from([None, "*/*", "text/csv", "application/vnd.pgrst.object+json",
                               "text/html"]),
       prefer=st.sampled_from(["", "count=exact", "handling=strict, bogus", "return=minimal"]))
def test_pipeline_raises_only_ledgerbase_errors(query: str, table: str, accept: str | None,
                                               prefer: str) -> None:
    headers = {"accept": accept} if accept else {}
    try:
        request = parse_request("GET", table, is_rpc=False, query=split_query(query),
                                headers=headers, prefer=[prefer] if prefer else [])
        node = plan_read(CACHE, CACHE.tables[table], request)
        for dialect in (SQLITE, POSTGRES):
            statement = compile_read(dialect, node, count=True)
            statement.bind(request.values)
    except LedgerbaseError as error:
        assert 400 <= error.status < 500, error.to_json()


# --- read shapes: a read's values taken out of its query string (query_shape) ------------

SHAPE_KEYS = ["id", "name", "done", "clients.name", "meta->a", "limit", "offset", "clients.limit",
              "select", "order", "or", "not.and", "clients.order", "x.y.limit"]
SHAPE_VALUES = ["eq.", "neq.", "gt.", "like.", "ilike.", "match.", "fts(english).", "eq(any).",
                "in.", "is.", "not.eq.", "isdistinct.", "cs.", "", "id,clients(name)", "(id.eq.1)"]
SHAPE_TAILS = ["1", "00", "-1", "abc", "(1,2)", "{1,2}", "null", "a.b", "", " 7", "2024-01-01", "é",
               "eq.1", "(x"]


def _query(keys: list[str], heads: list[str], tails: list[str]) -> str:
    return "&".join(f"{key}={head}{tail}" for key, head, tail in zip(keys, heads, tails, strict=False))


def _parse(query: str) -> ApiRequest | None:
    try:
        return parse_request("GET", "projects", is_rpc=False, query=split_query(query), headers={})
    except LedgerbaseError:
        return None


@settings(max_examples=800, deadline=None)
@given(keys=st.lists(st.sampled_from(SHAPE_KEYS), min_size=1, max_size=5),
       heads=st.lists(st.sampled_from(SHAPE_VALUES), min_size=5, max_size=5),
       first=st.lists(st.sampled_from(SHAPE_TAILS), min_size=5, max_size=5),
       second=st.lists(st.sampled_from(SHAPE_TAILS), min_size=5, max_size=5))
def test_reads_of_one_shape_parse_alike(keys: list[str], heads: list[str], first: list[str],
                                        second: list[str]) -> None:
    """Once a full parse gave the values a shape takes out, every read of that shape parses to
    the same request, with the values its own shape takes out: what the data API's shape
    cache relies on."""
    one, other = _query(keys, heads, first), _query(keys, heads, second)
    shape_one, shape_other = query_shape(split_query(one)), query_shape(split_query(other))
    request = _parse(one)
    if shape_one is None or request is None or shape_one[1] != request.values:
        return  # never cached
    if shape_other is None or shape_other[0] != shape_one[0]:
        return  # another shape: another entry
    again = _parse(other)
    assert again is not None, other
    assert again == request
    assert again.values == shape_other[1]


def test_query_shape_takes_out_plain_values() -> None:
    shape = query_shape(split_query("id=eq.42&select=*&name=not.like.a*&limit=20&offset=0"))
    assert shape == ((("id", "eq."), ("select", "*"), ("name", "not.like."), ("limit", "#"),
                      ("offset", "#")), ("42", "a*", 20, 0))
    # lists, IS keywords, quantifiers and logic trees stay in the shape
    shape = query_shape(split_query("id=in.(1,2)&done=is.true&name=like(any).{a,b}&or=(id.eq.1)"))
    assert shape is not None and shape[1] == ()
    assert query_shape(split_query("limit=-1")) is None
    assert query_shape(split_query("limit=ten")) is None
