"""The OpenAPI 3.1 document: valid for any schema, and saying what the schema says."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.shortcuts import get_validator_cls

from ledgerbase.db.schema import (
    Column,
    ForeignKey,
    Function,
    FunctionParam,
    PgType,
    SchemaCache,
    Table,
    build_relationships,
)
from ledgerbase.rest.openapi import build_openapi

SERVER = "http://127.0.0.1:8000/rest/v1"


def col(name: str, declared: str, *, nullable: bool = True, default: bool = False,
        generated: bool = False, description: str | None = None) -> Column:
    return Column(name=name, type=PgType.parse(declared), nullable=nullable, has_default=default,
                  generated=generated, description=description)


def make_cache(tables: list[Table], functions: Sequence[Function] = ()) -> SchemaCache:
    by_name = {table.name: table for table in tables}
    return SchemaCache(schema="public", tables=by_name, relationships=build_relationships(by_name),
                       functions={function.name: function for function in functions})


def library() -> SchemaCache:
    authors = Table(name="authors", schema="public", primary_key=("id",), columns=(
        col("id", "bigint", nullable=False, default=True),
        col("name", "text", nullable=False, description="Full name"),
        col("born", "date"),
        col("profile", "jsonb"),
    ), description="Writers\n\nEveryone who wrote a book.")
    books = Table(name="books", schema="public", primary_key=("id",), columns=(
        col("id", "integer", nullable=False, default=True),
        col("title", "character varying", nullable=False),
        col("author_id", "bigint", nullable=False),
        col("price", "numeric(10,2)"),
        col("rating", "double precision"),
        col("in_stock", "boolean", nullable=False, default=True),
        col("isbn", "uuid"),
        col("published_at", "timestamptz"),
        col("tags", "text[]"),
        col("search", "tsvector", generated=True),
    ), foreign_keys=(ForeignKey("books_author_id_fkey", "books", ("author_id",), "authors", ("id",)),))
    book_tags = Table(name="book tags", schema="public", primary_key=("book_id", "tag"), columns=(
        col("book_id", "integer", nullable=False),
        col("tag", "text", nullable=False),
        col("select", "text"),
    ), foreign_keys=(ForeignKey("book_tags_book_id_fkey", "book tags", ("book_id",), "books", ("id",)),))
    cheap = Table(name="cheap_books", schema="public", is_view=True, insertable=False, columns=(
        col("id", "integer"), col("title", "text"),
    ))
    editable = Table(name="recent_books", schema="public", is_view=True, insertable=True, columns=(
        col("id", "integer"), col("title", "text"),
    ))
    functions = [
        Function(name="books_by", schema="public", params=(FunctionParam("author", PgType.parse("bigint")),),
                 return_type=PgType.parse("books"), returns_set=True, returns_table="books", volatile=False),
        Function(name="add_them", schema="public", params=(
            FunctionParam("a", PgType.parse("integer")),
            FunctionParam("b", PgType.parse("integer"), has_default=True)),
            return_type=PgType.parse("integer")),
    ]
    return make_cache([authors, books, book_tags, cheap, editable], functions)


def resolve(document: dict[str, Any], ref: dict[str, str]) -> Any:
    node: Any = document
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_library_document_is_valid_openapi_3_1() -> None:
    document = build_openapi(library(), server_url=SERVER, version="1.2.3")
    assert get_validator_cls(document) is OpenAPIV31SpecValidator
    validate(document)
    orjson.dumps(document)  # what the server sends
    assert document["openapi"] == "3.1.0"
    assert document["info"] == {"title": "Ledgerbase", "version": "1.2.3",
                                "description": document["info"]["description"]}
    assert document["servers"] == [{"url": SERVER}]


def test_paths_and_methods() -> None:
    paths = build_openapi(library(), server_url=SERVER, version="1")["paths"]
    assert set(paths) == {"/", "/authors", "/books", "/book%20tags", "/cheap_books", "/recent_books",
                          "/rpc/books_by", "/rpc/add_them"}
    assert set(paths["/books"]) == {"get", "post", "patch", "delete"}
    assert set(paths["/cheap_books"]) == {"get"}
    assert set(paths["/recent_books"]) == {"get", "post", "patch", "delete"}
    assert set(paths["/rpc/books_by"]) == {"get", "post"}
    assert set(paths["/rpc/add_them"]) == {"post"}  # volatile: POST only, as PostgREST
    assert paths["/authors"]["get"]["summary"] == "Writers"
    assert paths["/authors"]["get"]["description"] == "Everyone who wrote a book."


def test_parameters_are_shared_components() -> None:
    document = build_openapi(library(), server_url=SERVER, version="1")
    get = document["paths"]["/books"]["get"]
    names = [(p["name"], p["in"]) for p in (resolve(document, ref) for ref in get["parameters"])]
    assert all("$ref" in ref for ref in get["parameters"])
    for expected in [("select", "query"), ("order", "query"), ("limit", "query"), ("offset", "query"),
                     ("Range", "header"), ("Range-Unit", "header"), ("Prefer", "header"),
                     ("title", "query"), ("author_id", "query"), ("published_at", "query")]:
        assert expected in names
    post = [resolve(document, ref)["name"] for ref in document["paths"]["/books"]["post"]["parameters"]]
    assert {"on_conflict", "columns", "Prefer"} <= set(post)
    # A column named like a reserved query key is not offered as a filter (PostgREST reads it otherwise).
    tag_filters = [resolve(document, ref)["name"] for ref in document["paths"]["/book%20tags"]["get"]["parameters"]]
    assert tag_filters.count("select") == 1
    rpc_get = document["paths"]["/rpc/books_by"]["get"]["parameters"]
    assert {"name": "author", "in": "query", "required": True,
            "schema": {"type": "integer", "format": "int64"}} in rpc_get


def test_column_schemas() -> None:
    document = build_openapi(library(), server_url=SERVER, version="1")
    books = document["components"]["schemas"]["books"]
    props = books["properties"]
    assert props["id"]["type"] == "integer"
    assert props["title"]["type"] == "string"
    assert props["price"]["type"] == ["number", "null"]
    assert props["rating"]["type"] == ["number", "null"]
    assert props["in_stock"]["type"] == "boolean"
    assert props["isbn"] == {"type": ["string", "null"], "format": "uuid"}
    assert props["published_at"]["format"] == "date-time"
    assert props["tags"]["type"] == ["array", "null"]
    assert props["tags"]["items"]["type"] == ["string", "null"]
    assert props["search"]["readOnly"] is True
    assert "This is a Primary Key.<pk/>" in props["id"]["description"]
    assert props["id"]["description"].startswith("Note:\n")
    assert props["author_id"]["description"].endswith("<fk table='authors' column='id'/>")
    assert books["required"] == ["title", "author_id"]
    authors = document["components"]["schemas"]["authors"]
    assert "type" not in authors["properties"]["profile"]
    assert authors["properties"]["born"] == {"type": ["string", "null"], "format": "date"}
    assert authors["properties"]["name"]["description"] == "Full name"
    assert authors["required"] == ["name"]
    # "book tags" is not a valid component key: escaped, and every reference follows it.
    tags_get = document["paths"]["/book%20tags"]["get"]
    row = tags_get["responses"]["200"]["content"]["application/json"]["schema"]["items"]
    assert resolve(document, row)["properties"]["book_id"]["description"].endswith(
        "<fk table='books' column='id'/>")


def test_responses_and_security() -> None:
    document = build_openapi(library(), server_url=SERVER, version="1")
    content = document["paths"]["/books"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "application/vnd.pgrst.object+json", "text/csv"}
    assert content["application/json"]["schema"] == {"type": "array",
                                                     "items": {"$ref": "#/components/schemas/books"}}
    assert content["application/vnd.pgrst.object+json"]["schema"] == {"$ref": "#/components/schemas/books"}
    rpc = document["paths"]["/rpc/books_by"]["post"]["responses"]["200"]["content"]["application/json"]
    assert rpc["schema"]["items"] == {"$ref": "#/components/schemas/books"}
    body = document["paths"]["/rpc/add_them"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["a"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["apikey"] == {"type": "apiKey", "in": "header", "name": "apikey",
                                 "description": schemes["apikey"]["description"]}
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["bearer"]["bearerFormat"] == "JWT"


def test_empty_schema_is_valid() -> None:
    document = build_openapi(make_cache([]), server_url=SERVER, version="0")
    validate(document)
    assert set(document["paths"]) == {"/"}


# --- any schema gives a valid document ----------------------------------------------------

DECLARED = ["integer", "bigint", "smallint", "numeric", "numeric(12,3)", "real", "double precision",
            "boolean", "text", "varchar(20)", "uuid", "date", "time", "timestamp", "timestamptz",
            "json", "jsonb", "bytea", "integer[]", "text[]", "tsvector", "my_enum", "box[]"]
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12) | st.sampled_from(
    ["select", "order", "rpc", "a.b", "a/b", "{x}", "%41", "~0", "#", "?q=1", "book tags", "Error"])
columns = st.lists(st.tuples(names, st.sampled_from(DECLARED), st.booleans(), st.booleans(), st.booleans()),
                   min_size=1, max_size=6, unique_by=lambda spec: spec[0])


@st.composite
def caches(draw: st.DrawFn) -> SchemaCache:
    table_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    tables: list[Table] = []
    for name in table_names:
        specs = draw(columns)
        cols = tuple(Column(name=c, type=PgType.parse(t), nullable=n, has_default=d, generated=g,
                            description=draw(st.none() | names)) for c, t, n, d, g in specs)
        pk = (cols[0].name,) if draw(st.booleans()) else ()
        fks: list[ForeignKey] = []
        for column in cols:
            if draw(st.booleans()) and tables:
                target = draw(st.sampled_from(tables))
                fks.append(ForeignKey(f"fk_{len(fks)}", name, (column.name,), target.name,
                                      (target.columns[0].name,)))
        tables.append(Table(name=name, schema="public", columns=cols, primary_key=pk, foreign_keys=tuple(fks),
                            is_view=draw(st.booleans()), insertable=draw(st.booleans()),
                            description=draw(st.none() | names)))
    functions = []
    for name in draw(st.lists(names, max_size=3, unique=True)):
        params = tuple(FunctionParam(p, PgType.parse(t), has_default=d) for p, t, _, d, _ in draw(
            st.lists(st.tuples(names, st.sampled_from(DECLARED), st.booleans(), st.booleans(), st.booleans()),
                     max_size=3, unique_by=lambda spec: spec[0])))
        returns = draw(st.none() | st.sampled_from(table_names))
        functions.append(Function(name=name, schema="public", params=params,
                                  return_type=PgType.parse(draw(st.sampled_from(DECLARED))),
                                  returns_set=draw(st.booleans()), returns_table=returns,
                                  volatile=draw(st.booleans())))
    return make_cache(tables, functions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(caches())
def test_any_schema_gives_a_valid_document(cache: SchemaCache) -> None:
    document = build_openapi(cache, server_url=SERVER, version="0.1.0")
    validate(document)
    orjson.dumps(document)
    schemas = document["components"]["schemas"]
    assert len(schemas) == len(cache.tables)
    assert len(document["paths"]) == 1 + len(cache.tables) + len(cache.functions)
    for table in cache.tables.values():
        get = document["paths"]["/" + _quote(table.name)]["get"]
        row = get["responses"]["200"]["content"]["application/vnd.pgrst.object+json"]["schema"]
        assert set(resolve(document, row)["properties"]) == {column.name for column in table.columns}


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="-._~!$&'()*+,;=:@")
