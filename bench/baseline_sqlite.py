"""Floor baseline: a hand-written ASGI app doing the benchmark's four requests on sqlite3.

No framework: it parses the query string (select list with one many-to-one embed,
``col=op.value`` filters, ``order``, ``limit``), binds every value as a parameter,
runs the query on one sqlite3 connection (WAL, synchronous=NORMAL, foreign keys on,
as Ledgerbase configures SQLite) and encodes the real rows with orjson. It knows
only the ``posts`` table and its ``authors`` embed, and checks no API key: whatever
Ledgerbase spends beyond this is the price of its generality (schema cache, policies,
auth, ledger).

    BENCH_SQLITE_PATH=bench/out/x/bench.db uvicorn --app-dir bench baseline_sqlite:app
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH = "/rest/v1/posts"
POSTS = {"id": int, "author_id": int, "title": str, "score": int, "published": bool,
         "created_at": str, "user_id": str}
AUTHORS = {"id": int, "name": str, "country": str}
OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
JSON_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]


class BadRequest(Exception):
    pass


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


DB = connect(os.environ.get("BENCH_SQLITE_PATH", "bench.db"))


def convert(kind: type, text: str) -> Any:
    """A filter value as the column's Python value (booleans as SQLite stores them)."""
    try:
        if kind is bool:
            return {"true": 1, "false": 0}[text]
        return int(text) if kind is int else text
    except (KeyError, ValueError):
        raise BadRequest(f"invalid input: {text!r}") from None


def columns(names: str, table: dict[str, type]) -> list[str]:
    chosen = list(table) if names == "*" else names.split(",")
    for name in chosen:
        if name not in table:
            raise BadRequest(f"unknown column {name!r}")
    return chosen


def parse_select(select: str) -> tuple[list[str], list[str]]:
    """(post columns, embedded author columns) from ``id,title,authors(name)``."""
    plain, embedded = [], []
    start = select.find("authors(")
    if start >= 0:
        if not select.endswith(")"):
            raise BadRequest("bad embed")
        embedded = columns(select[start + 8:-1], AUTHORS)
        select = select[:start].rstrip(",")
    if select:
        plain = columns(select, POSTS)
    return plain, embedded


def compile_get(query: str) -> tuple[str, list[Any], list[str], list[str]]:
    """SQL, parameters and output columns for a GET on posts."""
    plain: list[str] = list(POSTS)
    embedded: list[str] = []
    where: list[str] = []
    params: list[Any] = []
    order, limit, limit_value = "", "", 0
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "select":
            plain, embedded = parse_select(value)
        elif key == "order":
            name, _, direction = value.partition(".")
            if name not in POSTS or direction not in ("asc", "desc", ""):
                raise BadRequest(f"bad order {value!r}")
            order = f" ORDER BY p.{name} {direction or 'asc'}"
        elif key == "limit":
            limit = " LIMIT ?"
            limit_value = convert(int, value)
        elif key in POSTS:
            operator, _, text = value.partition(".")
            if operator not in OPERATORS:
                raise BadRequest(f"unknown operator {operator!r}")
            where.append(f"p.{key} {OPERATORS[operator]} ?")
            params.append(convert(POSTS[key], text))
        else:
            raise BadRequest(f"unknown column {key!r}")
    fields = [f"p.{name}" for name in plain] + [f"a.{name}" for name in embedded]
    sql = f"SELECT {', '.join(fields)} FROM posts p"
    if embedded:
        sql += " LEFT JOIN authors a ON a.id = p.author_id"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += order + limit
    if limit:
        params.append(limit_value)
    return sql, params, plain, embedded


def select_posts(query: str) -> bytes:
    sql, params, plain, embedded = compile_get(query)
    width = len(plain)
    booleans = [i for i, name in enumerate(plain) if POSTS[name] is bool]
    out = []
    for row in DB.execute(sql, params):
        item = dict(zip(plain, row[:width], strict=True))
        for i in booleans:
            item[plain[i]] = bool(row[i])
        if embedded:
            item["authors"] = dict(zip(embedded, row[width:], strict=True))
        out.append(item)
    return orjson.dumps(out)


def insert_post(body: bytes) -> None:
    try:
        row = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not JSON") from None
    if not isinstance(row, dict) or not row:
        raise BadRequest("body must be a JSON object")
    names = columns(",".join(row), POSTS)
    values = [int(v) if isinstance(v, bool) else v for v in row.values()]
    DB.execute(f"INSERT INTO posts ({', '.join(names)}) VALUES "
               f"({', '.join('?' * len(names))})", values)


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes = b"") -> None:
    headers = JSON_HEADERS if body else []
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    if scope["path"] != PATH:
        await respond(send, 404, b'{"message":"not found"}')
        return
    try:
        if scope["method"] == "GET":
            await respond(send, 200, select_posts(scope["query_string"].decode("latin-1")))
        elif scope["method"] == "POST":
            insert_post(await read_body(receive))
            await respond(send, 201)
        else:
            await respond(send, 405, b'{"message":"method not allowed"}')
    except BadRequest as error:
        await respond(send, 400, orjson.dumps({"message": str(error)}))
    except sqlite3.Error as error:
        await respond(send, 400, orjson.dumps({"message": str(error)}))
