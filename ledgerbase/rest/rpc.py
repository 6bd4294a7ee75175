"""RPC: ``/rest/v1/rpc/<fn>`` calls a function, as PostgREST does.

On PostgreSQL any function of the exposed schema; on SQLite the ``LANGUAGE sql``
functions declared in migrations (their bodies are kept by the migration runner).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ledgerbase.db.engine import Transaction
from ledgerbase.db.schema import SchemaCache, TypeKind
from ledgerbase.db.values import coerce_json, coerce_text, to_sqlite
from ledgerbase.errors import LedgerbaseError
from ledgerbase.rest import mutate
from ledgerbase.rest.compile import ReadCompiler
from ledgerbase.rest.exchange import Incoming, Reply
from ledgerbase.rest.parse import parse_request, split_query
from ledgerbase.rest.plan import plan_read
from ledgerbase.rest.responses import CONTENT_TYPES, content_range, singular

if TYPE_CHECKING:
    from ledgerbase.rest.handlers import Caller, DataApi


async def call_function(api: DataApi, cache: SchemaCache, name: str, incoming: Incoming,
                        caller: Caller) -> Reply:
    """``/rpc/<name>``: call a function with arguments from the query string or a JSON body."""
    function = cache.functions.get(name)
    method = incoming.method
    if method == "OPTIONS":
        allow = "OPTIONS,POST" if function is not None and function.volatile else "OPTIONS,GET,HEAD,POST"
        return Reply(200, headers={"Allow": allow})
    if method not in ("GET", "HEAD", "POST"):
        raise LedgerbaseError(f"Cannot use the {method} method on RPC", code="PGRST101",
                              status=405)
    request = parse_request(method, name, is_rpc=True, query=split_query(incoming.query_string),
                            headers=incoming.headers,
                            prefer=[incoming.headers["prefer"]] if "prefer" in incoming.headers else [])
    if method == "POST":
        try:
            body = orjson.loads(incoming.body) if incoming.body.strip() else {}
        except orjson.JSONDecodeError:
            raise LedgerbaseError("Empty or invalid json", code="PGRST102") from None
        if not isinstance(body, dict):
            raise LedgerbaseError("Empty or invalid json", code="PGRST102")
        args: dict[str, Any] = body
    else:
        args = {arg: request.values[slot] for arg, slot in request.rpc_args}
    if function is None or any(arg not in {p.name for p in function.params} for arg in args) or any(
        p.name not in args and not p.has_default for p in function.params
    ):
        names = sorted(args)
        signature = ", ".join(names)
        with_params = (f" with parameter{'s' if len(names) > 1 else ''} {signature}" if names
                       else " without parameters")
        if method == "POST":
            with_params += " or with a single unnamed json/jsonb parameter"
        raise LedgerbaseError(
            f"Could not find the function {cache.schema}.{name}({signature}) in the schema cache",
            code="PGRST202", status=404,
            details=f"Searched for the function {cache.schema}.{name}{with_params}, "
                    "but no matches were found in the schema cache.",
        )
    converted: list[Any] = []
    slots: dict[str, int] = {}
    base = len(request.values)
    for param in function.params:
        if param.name not in args:
            continue
        raw = args[param.name]
        value = (coerce_text(param.type, raw) if method != "POST" and isinstance(raw, str)
                 else coerce_json(param.type, raw))
        if api.sqlite:
            value = to_sqlite(param.type, value)
        elif param.type.kind in (TypeKind.JSON, TypeKind.JSONB) and value is not None:
            value = str(value)
        slots[param.name] = base + len(converted)
        converted.append(value)
    values = request.values + tuple(converted)
    compiler = ReadCompiler(api.dialect, caller.guards)
    call = mutate.function_call(api.dialect, compiler, function, slots)
    if function.returns_table and (table := cache.table(function.returns_table)) is not None:
        node = plan_read(cache, table, request)
        # the function's own reads were filtered by the policies; its result rows are not
        sql = compiler.read(node, call, count=request.preferences.count is not None, guard_top=False)
        statement = compiler.statement(sql)
        run_read = True
    else:
        node = None
        if api.sqlite:
            if function.return_type.name == "record":
                raise LedgerbaseError(
                    f"{name} returns TABLE (...), which SQLite functions cannot name", code="PGRST127",
                    hint="Return SETOF an existing table, or a single value, from SQLite functions.")
            sql = f"SELECT * FROM {call}" if function.returns_set else f"SELECT {call}"
        else:
            sql = (f"SELECT coalesce(json_agg(_q), '[]')::text FROM {call} AS _q"
                   if function.returns_set else f"SELECT to_json({call})::text")
        statement = compiler.statement(sql)
        run_read = False
    if function.volatile and not api.sqlite and method == "POST":
        async def work(tx: Transaction) -> list[tuple[Any, ...]]:
            return await tx.fetch_all(statement.sql, statement.bind(values, caller.context))
        rows = await api.database.write(work, rollback=request.preferences.tx == "rollback",
                                        context=caller.context)
    elif function.volatile:
        # a GET runs read-only, as in PostgREST: a function that writes answers 405 (25006)
        rows = await api.database.fetch_all_read_only(statement.sql, statement.bind(values, caller.context),
                                                      context=caller.context)
    else:
        rows = await api.database.fetch_all(statement.sql, statement.bind(values, caller.context),
                                            context=caller.context)
    headers = {"Content-Type": CONTENT_TYPES[request.media_type]}
    if run_read and node is not None:
        total, page_total, body = rows[0]
        if not function.returns_set:
            headers["Content-Range"] = content_range(0, int(page_total), total)
            return Reply(200, singular(str(body), int(page_total)).encode(), headers)
        return api.page_reply(request, node, int(page_total), total, str(body), headers)
    value = rows[0][0] if rows else None
    if function.return_type.name == "void":
        return Reply(204, b"", {})
    if api.sqlite:
        kind = function.return_type.kind
        if function.returns_set:
            items = b",".join(_sqlite_scalar_json(row[0], kind) for row in rows)
            return Reply(200, b"[" + items + b"]", headers)
        return Reply(200, _sqlite_scalar_json(value, kind), headers)
    return Reply(200, (str(value) if value is not None else "null").encode(), headers)


def _sqlite_scalar_json(value: Any, kind: TypeKind) -> bytes:
    """A SQLite function result as the JSON PostgreSQL would give for ``kind``."""
    if value is None:
        return b"null"
    if kind is TypeKind.BOOLEAN:
        return b"true" if value else b"false"
    if kind in (TypeKind.JSON, TypeKind.JSONB) and isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)
