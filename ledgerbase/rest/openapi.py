"""The OpenAPI 3.1 description of the data API, built from the schema cache.

PostgREST serves a Swagger 2.0 document at the API root
(``src/library/PostgREST/Response/OpenAPI.hs``); this is the same document in
OpenAPI 3.1: one path per table and per function, PostgREST's shared query
parameters and headers as ``components/parameters``, one JSON Schema per table
in ``components/schemas``, nullability expressed as ``type: [x, "null"]``.

OpenAPI restricts component keys to ``[A-Za-z0-9._-]``; a table or column whose
name has other characters gets an escaped key (``order items`` becomes
``order_20_items``), and every name keeps its own key even when two escapes
would collide. Paths are percent-encoded, as a client would send them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from ledgerbase.db.schema import Column, Function, PgType, SchemaCache, Table, TypeKind

JSONObject = dict[str, Any]

_JSON = "application/json"
_OBJECT = "application/vnd.pgrst.object+json"
_CSV = "text/csv"
_OPENAPI = "application/openapi+json"
_KEY = re.compile(r"[A-Za-z0-9._-]+")
_PATH_SAFE = "-._~!$&'()*+,;=:@"  # RFC 3986 pchar, minus the characters OpenAPI path templates use
# Query keys PostgREST reads as something else than a column filter.
_RESERVED_QUERY_KEYS = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns", "and", "or"})
_INT32_NAMES = frozenset({"smallint", "int2", "integer", "int", "int4", "serial", "serial4", "smallserial"})
_INT64_NAMES = frozenset({"bigint", "int8", "bigserial", "serial8"})
_FORMATS: dict[TypeKind, str] = {
    TypeKind.UUID: "uuid",
    TypeKind.TIMESTAMP: "date-time",
    TypeKind.TIMESTAMPTZ: "date-time",
    TypeKind.DATE: "date",
}
_JSON_TYPES: dict[TypeKind, str] = {
    TypeKind.INTEGER: "integer",
    TypeKind.NUMERIC: "number",
    TypeKind.FLOAT: "number",
    TypeKind.BOOLEAN: "boolean",
}


def build_openapi(cache: SchemaCache, *, server_url: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing every table, view and function of ``cache``.

    Pure and deterministic: the same cache gives the same document. Cost is
    linear in the number of columns; callers serving it often may cache it per
    schema cache.
    """
    tables = sorted(cache.tables.values(), key=lambda table: table.name)
    functions = sorted(cache.functions.values(), key=lambda function: function.name)
    table_keys = _component_keys(table.name for table in tables)
    parameters = _shared_parameters()
    filter_keys: dict[str, dict[str, str]] = {}
    used = set(parameters)
    for table in tables:
        filter_keys[table.name] = {}
        for column in _filterable(table):
            key = _unique(f"rowFilter.{table_keys[table.name]}.{_escape(column.name)}", used)
            filter_keys[table.name][column.name] = key
            parameters[key] = _filter_parameter(column)
    paths: JSONObject = {"/": _root_path()}
    for table in tables:
        paths["/" + quote(table.name, safe=_PATH_SAFE)] = _table_path(
            table, table_keys[table.name], filter_keys[table.name])
    for function in functions:
        paths["/rpc/" + quote(function.name, safe=_PATH_SAFE)] = _function_path(function, table_keys)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ledgerbase",
            "version": version,
            "description": "A PostgREST-compatible data API generated from the database schema.",
        },
        "externalDocs": {
            "description": "PostgREST documentation (the grammar this API speaks)",
            "url": "https://docs.postgrest.org/en/v12/references/api.html",
        },
        "servers": [{"url": server_url}],
        "security": [{"apikey": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": {table_keys[table.name]: _table_schema(table, cache) for table in tables},
            "parameters": parameters,
            "requestBodies": {table_keys[table.name]: _request_body(table_keys[table.name]) for table in tables},
            "responses": {"Error": _error_response()},
            "securitySchemes": {
                "apikey": {"type": "apiKey", "in": "header", "name": "apikey",
                           "description": "The anon or service_role API key."},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "An API key or a user's access token."},
            },
        },
    }


# --- component keys -----------------------------------------------------------------------


def _escape(name: str) -> str:
    """``name`` with every character OpenAPI forbids in a component key written as ``_<hex>_``."""
    if _KEY.fullmatch(name):
        return name
    return "".join(char if _KEY.fullmatch(char) else f"_{ord(char):x}_" for char in name) or "_"


def _unique(key: str, used: set[str]) -> str:
    """``key``, or ``key.N`` with the smallest N that is not in ``used``; records the answer."""
    candidate, suffix = key, 2
    while candidate in used:
        candidate, suffix = f"{key}.{suffix}", suffix + 1
    used.add(candidate)
    return candidate


def _component_keys(names: Iterable[str]) -> dict[str, str]:
    """A distinct component key per name; names that are valid keys keep themselves."""
    ordered = list(names)
    keys = {name: name for name in ordered if _KEY.fullmatch(name)}
    used = set(keys)
    for name in ordered:
        if name not in keys:
            keys[name] = _unique(_escape(name), used)
    return keys


def _ref(section: str, key: str) -> dict[str, str]:
    return {"$ref": f"#/components/{section}/{key}"}


# --- schemas ------------------------------------------------------------------------------


def type_schema(pg_type: PgType, *, nullable: bool = True) -> JSONObject:
    """The JSON Schema of values of ``pg_type`` as the API renders them.

    json/jsonb accept any value (no ``type``); ``nullable`` adds ``"null"`` to the type.
    """
    kind = pg_type.kind
    schema: JSONObject
    if kind in (TypeKind.JSON, TypeKind.JSONB):
        return {"format": pg_type.name}
    if kind is TypeKind.ARRAY:
        element = PgType(name=pg_type.name.removesuffix("[]"), kind=pg_type.element or TypeKind.OTHER)
        items = {} if pg_type.element is None else type_schema(element, nullable=True)
        schema = {"type": "array", "items": items}
    else:
        schema = {"type": _JSON_TYPES.get(kind, "string")}
    schema["format"] = _format(pg_type)
    if nullable:
        schema["type"] = [schema["type"], "null"]
    return schema


def _format(pg_type: PgType) -> str:
    """A format as PostgREST writes it: int32/int64 for integers, the column type otherwise."""
    if pg_type.kind is TypeKind.INTEGER:
        if pg_type.name in _INT32_NAMES:
            return "int32"
        if pg_type.name in _INT64_NAMES:
            return "int64"
    return _FORMATS.get(pg_type.kind, pg_type.name)


def _column_schema(table: Table, column: Column, cache: SchemaCache) -> JSONObject:
    schema = type_schema(column.type, nullable=column.nullable)
    if column.max_length is not None and column.type.kind is TypeKind.TEXT:
        schema["maxLength"] = column.max_length
    if column.generated:
        schema["readOnly"] = True
    notes = []
    if column.name in table.primary_key:
        notes.append("This is a Primary Key.<pk/>")
    target = _foreign_key_target(table, column, cache)
    if target is not None:
        ref_table, ref_column = target
        notes.append(f"This is a Foreign Key to `{ref_table}.{ref_column}`."
                     f"<fk table='{ref_table}' column='{ref_column}'/>")
    if notes:
        prefix = f"{column.description}\n\n" if column.description else ""
        schema["description"] = prefix + "\n".join(["Note:", *notes])
    elif column.description:
        schema["description"] = column.description
    return schema


def _foreign_key_target(table: Table, column: Column, cache: SchemaCache) -> tuple[str, str] | None:
    """The (table, column) a single-column foreign key on ``column`` points to; tables before views."""
    targets = [(fk.ref_table, fk.ref_columns[0]) for fk in table.foreign_keys
               if fk.columns == (column.name,) and len(fk.ref_columns) == 1]

    def is_view(target: tuple[str, str]) -> bool:
        ref = cache.table(target[0])
        return ref is not None and ref.is_view

    targets.sort(key=is_view)
    return targets[0] if targets else None


def _table_schema(table: Table, cache: SchemaCache) -> JSONObject:
    schema: JSONObject = {
        "type": "object",
        "properties": {column.name: _column_schema(table, column, cache) for column in table.columns},
    }
    required = [column.name for column in table.columns
                if not column.nullable and not column.has_default and not column.generated]
    if required:
        schema["required"] = required
    if table.description:
        schema["description"] = table.description
    return schema


def _request_body(key: str) -> JSONObject:
    return {
        "description": "One row, or an array of rows (POST); the columns to change (PATCH).",
        "required": True,
        "content": {
            _JSON: {"schema": {"anyOf": [_ref("schemas", key),
                                         {"type": "array", "items": _ref("schemas", key)}]}},
            _CSV: {"schema": {"type": "string"}},
        },
    }


def _error_response() -> JSONObject:
    return {
        "description": "An error, shaped as PostgREST's",
        "content": {_JSON: {"schema": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": ["string", "null"]},
                "hint": {"type": ["string", "null"]},
            },
            "required": ["code", "message"],
        }}},
    }


# --- parameters ---------------------------------------------------------------------------


def _query(name: str, description: str) -> JSONObject:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


def _prefer(description: str, examples: list[str]) -> JSONObject:
    # Preferences combine (``return=representation,count=exact``), so examples rather than an enum.
    return {"name": "Prefer", "in": "header", "required": False, "description": description,
            "schema": {"type": "string", "examples": examples}}


def _shared_parameters() -> dict[str, JSONObject]:
    """PostgREST's shared parameters, under the keys its Swagger document uses."""
    return {
        "select": _query("select", "Filtering Columns"),
        "order": _query("order", "Ordering"),
        "limit": _query("limit", "Limiting and Pagination"),
        "offset": _query("offset", "Limiting and Pagination"),
        "on_conflict": _query("on_conflict", "On Conflict"),
        "columns": _query("columns", "The columns of the body to write"),
        "range": {"name": "Range", "in": "header", "required": False,
                  "description": "Limiting and Pagination", "schema": {"type": "string", "examples": ["0-24"]}},
        "rangeUnit": {"name": "Range-Unit", "in": "header", "required": False,
                      "description": "Limiting and Pagination", "schema": {"type": "string", "default": "items"}},
        "preferCount": _prefer("Preference", ["count=exact", "count=planned", "count=estimated"]),
        "preferReturn": _prefer("Preference", ["return=representation", "return=minimal",
                                               "return=headers-only", "count=exact", "tx=rollback"]),
        "preferPost": _prefer("Preference", ["return=representation", "return=minimal",
                                             "resolution=merge-duplicates", "resolution=ignore-duplicates",
                                             "missing=default", "tx=rollback"]),
        "preferRpc": _prefer("Preference", ["count=exact", "tx=rollback"]),
    }


def _filterable(table: Table) -> list[Column]:
    return [column for column in table.columns if column.name not in _RESERVED_QUERY_KEYS]


def _filter_parameter(column: Column) -> JSONObject:
    parameter: JSONObject = {"name": column.name, "in": "query", "required": False,
                             "schema": {"type": "string"}}
    if column.description:
        parameter["description"] = column.description
    return parameter


# --- paths --------------------------------------------------------------------------------


def _content(schema: JSONObject, single: JSONObject) -> JSONObject:
    return {_JSON: {"schema": schema}, _OBJECT: {"schema": single}, _CSV: {"schema": {"type": "string"}}}


def _rows_response(description: str, key: str) -> JSONObject:
    row = _ref("schemas", key)
    return {"description": description, "content": _content({"type": "array", "items": row}, row)}


def _summary(description: str | None) -> JSONObject:
    """PostgREST's split of a description: first line the summary, the rest the description."""
    if not description:
        return {}
    summary, _, rest = description.partition("\n")
    rest = rest.lstrip("\n")
    return {"summary": summary, "description": rest} if rest else {"summary": summary}


def _root_path() -> JSONObject:
    return {"get": {
        "tags": ["Introspection"],
        "summary": "OpenAPI description (this document)",
        "responses": {"200": {"description": "OK", "content": {
            _OPENAPI: {"schema": {"type": "object"}}, _JSON: {"schema": {"type": "object"}}}}},
    }}


def _table_path(table: Table, key: str, filters: dict[str, str]) -> JSONObject:
    base: JSONObject = {"tags": [table.name], **_summary(table.description)}
    row_filters = [_ref("parameters", filter_key) for filter_key in filters.values()]
    error = {"default": _ref("responses", "Error")}
    params = [_ref("parameters", name) for name in ("select", "order", "range", "rangeUnit", "offset",
                                                      "limit", "preferCount")]
    item: JSONObject = {"get": {**base, "parameters": row_filters + params, "responses": {
        "200": _rows_response("OK", key), "206": _rows_response("Partial Content", key), **error}}}
    if table.is_view and not table.insertable:
        return item
    item["post"] = {**base, "parameters": [_ref("parameters", name) for name in (
        "select", "columns", "on_conflict", "preferPost")],
        "requestBody": _ref("requestBodies", key),
        "responses": {"201": _rows_response("Created", key), **error}}
    item["patch"] = {**base, "parameters": row_filters + [_ref("parameters", name) for name in (
        "select", "columns", "preferReturn")],
        "requestBody": _ref("requestBodies", key),
        "responses": {"200": _rows_response("OK", key), "204": {"description": "No Content"}, **error}}
    item["delete"] = {**base, "parameters": row_filters + [_ref("parameters", name) for name in (
        "select", "preferReturn")],
        "responses": {"200": _rows_response("OK", key), "204": {"description": "No Content"}, **error}}
    return item


def _function_path(function: Function, table_keys: dict[str, str]) -> JSONObject:
    """``/rpc/<name>``: POST always; GET too unless the function is volatile (as PostgREST)."""
    if function.returns_table is not None and function.returns_table in table_keys:
        single: JSONObject = _ref("schemas", table_keys[function.returns_table])
    else:
        single = type_schema(function.return_type, nullable=True)
    result = {"type": "array", "items": single} if function.returns_set else single
    base: JSONObject = {
        "tags": [f"(rpc) {function.name}"],
        "responses": {"200": {"description": "OK", "content": _content(result, single)},
                      "default": _ref("responses", "Error")},
    }
    arguments: JSONObject = {
        "type": "object",
        "properties": {param.name: type_schema(param.type, nullable=True) for param in function.params},
    }
    required = [param.name for param in function.params if not param.has_default]
    if required:
        arguments["required"] = required
    item: JSONObject = {"post": {**base, "parameters": [_ref("parameters", "preferRpc")], "requestBody": {
        "required": True, "content": {_JSON: {"schema": arguments}}}}}
    if not function.volatile:
        query = [{"name": param.name, "in": "query", "required": not param.has_default,
                  "schema": _query_schema(param.type)}
                 for param in function.params if param.name not in _RESERVED_QUERY_KEYS]
        item["get"] = {**base, "parameters": [*query, _ref("parameters", "preferRpc")]}
    return item


def _query_schema(pg_type: PgType) -> JSONObject:
    """Arguments in a query string: arrays (``{a,b}``) and JSON travel as strings, as in PostgREST."""
    if pg_type.kind in (TypeKind.ARRAY, TypeKind.JSON, TypeKind.JSONB):
        return {"type": "string", "format": pg_type.name}
    return type_schema(pg_type, nullable=False)
