"""Hypothesis: parsing, planning and compiling any query string raises nothing but LedgerbaseError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerbase.db.dialect import POSTGRES, SQLITE
from ledgerbase.db.schema import Column, ForeignKey, PgType, SchemaCache, Table, build_relationships
from ledgerbase.errors import LedgerbaseError
from ledgerbase.rest.compile import compile_read
from ledgerbase.rest.parse import parse_request, split_query
from ledgerbase.rest.plan import plan_read


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
