"""``/ledger/v1``: the transparency log's public endpoints, and a row's history behind the API's key.

Public, as a transparency log is (``LEDGERBASE_LEDGER_PUBLIC=false`` asks for an API
key there too): ``checkpoint``, ``key``, ``tile/...`` and ``tile/entries/...`` exactly as
tlog-tiles serves them, ``proof/inclusion``, ``proof/consistency``, ``entries/{i}``.
``rows/{table}?<key>=eq.<value>`` needs a key that may read that row through the data API.
``POST cosignature`` takes witness cosignatures, only from the keys configured in
``LEDGERBASE_LEDGER_WITNESSES`` (``ledgerbase.ledger.witness``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ledgerbase.auth.keys import Claims
from ledgerbase.db.values import coerce_text, to_sqlite
from ledgerbase.errors import LedgerbaseError
from ledgerbase.ledger import tiles
from ledgerbase.ledger.log import Ledger, LedgerError
from ledgerbase.ledger.note import Ed25519Verifier, parse_verifier_key
from ledgerbase.ledger.witness import accept_cosignatures, parse_witness_keys
from ledgerbase.rest.exchange import Incoming, Reply
from ledgerbase.rest.handlers import DataApi

_IMMUTABLE = "public, max-age=31536000, immutable"
_FRESH = "no-cache"
_JSON = "application/json; charset=utf-8"


def _int(query: dict[str, str], name: str, *, required: bool = True) -> int | None:
    text = query.get(name)
    if text is None:
        if required:
            raise LedgerError(f"missing query parameter {name}", code="PGRST100", status=400)
        return None
    if not text.isdigit() or len(text) > 19:
        raise LedgerError(f"{name} must be a non-negative integer", code="PGRST100", status=400)
    return int(text)


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


class LedgerRoutes:
    """The handlers of ``/ledger/v1``."""

    def __init__(self, ledger: Ledger, api: DataApi, verifier_key: str, witnesses: str = "") -> None:
        """``witnesses``: the comma-separated witness verifier keys whose cosignatures are taken.

        Raises LedgerbaseError for a witness key that is not a cosignature/v1 verifier key.
        """
        self.ledger = ledger
        self.api = api
        self.verifier_key = verifier_key
        self.witnesses = parse_witness_keys(witnesses)

    async def handle(self, method: str, path: str, query_string: str, headers: dict[str, str],
                     claims: Callable[[], Claims], body: bytes = b"") -> Reply:
        """Answer ``method path`` (below ``/ledger/v1``). Raises LedgerbaseError for errors."""
        if path.strip("/") == "cosignature":
            if method != "POST":
                raise LedgerbaseError(f"Unsupported HTTP method: {method}", code="PGRST117", status=405,
                                      headers={"Allow": "POST"})
            return await self._cosignature(body)
        if method not in ("GET", "HEAD"):
            raise LedgerbaseError(f"Unsupported HTTP method: {method}", code="PGRST117", status=405,
                                  headers={"Allow": "GET, HEAD"})
        query = dict(parse_qsl(query_string, keep_blank_values=True))
        path = path.strip("/")
        if path == "checkpoint":
            return Reply(200, (await self.ledger.checkpoint()).encode(),
                         {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": _FRESH})
        if path == "key":
            return Reply(200, (self.verifier_key + "\n").encode(),
                         {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "public, max-age=3600"})
        if path.startswith("tile/"):
            return await self._tile(path)
        if path == "proof/inclusion":
            index = _int(query, "index")
            leaf, proof = await self.ledger.inclusion(int(index or 0), _int(query, "size", required=False))
            return _json({"leaf_hash": _b64(leaf), "hashes": [_b64(h) for h in proof]})
        if path == "proof/consistency":
            proof = await self.ledger.consistency(int(_int(query, "from") or 0), int(_int(query, "to") or 0))
            return _json({"hashes": [_b64(h) for h in proof]})
        if path.startswith("entries/"):
            text = path[len("entries/"):]
            if not text.isdigit() or len(text) > 19:
                raise LedgerError("an entry index is a non-negative integer", code="PGRST100", status=400)
            return Reply(200, await self.ledger.entry(int(text)),
                         {"Content-Type": _JSON, "Cache-Control": _IMMUTABLE})
        if path.startswith("rows/"):
            return await self._row_history(path[len("rows/"):], query_string, headers, claims())
        raise LedgerbaseError("Not found", code="PGRST125", status=404)

    async def _tile(self, path: str) -> Reply:
        try:
            wanted = tiles.parse_path(path)
        except tiles.TileError as error:
            raise LedgerError(str(error), code="PGRST125", status=404) from None
        data = (await self.ledger.tile(wanted) if isinstance(wanted, tiles.Tile)
                else await self.ledger.bundle(wanted))
        if data is None:
            raise LedgerError(f"{path} is not in the log", code="PGRST125", status=404)
        cache = _IMMUTABLE if wanted.width == tiles.TILE_WIDTH else "public, max-age=60"
        return Reply(200, data, {"Content-Type": "application/octet-stream", "Cache-Control": cache})

    async def _cosignature(self, body: bytes) -> Reply:
        """Keep the witness cosignatures of a checkpoint this log published (see ``accept_cosignatures``)."""
        log_key = parse_verifier_key(self.verifier_key)
        assert isinstance(log_key, Ed25519Verifier)
        head = await self.ledger.read_head()
        if head is None:
            raise LedgerError("the ledger has no checkpoint yet", code="PGRST116", status=409)
        accepted = accept_cosignatures(body, head.checkpoint, log_key, self.witnesses)
        for cosignature in accepted:
            await self.ledger.add_cosignature(cosignature.witness, cosignature.size, cosignature.line)
        return _json({"size": accepted[0].size, "current": accepted[0].size == head.size,
                      "witnesses": [c.witness for c in accepted]})

    async def _row_history(self, table_name: str, query_string: str, headers: dict[str, str],
                           claims: Claims) -> Reply:
        """A row's versions: each entry with its salt and inclusion proof, if the caller may read the row."""
        cache = self.api.schema()
        table = cache.table(table_name)
        if table is None or table.is_view:
            raise LedgerbaseError(f'relation "{cache.schema}.{table_name}" does not exist', code="42P01",
                                  status=404)
        given = dict(parse_qsl(query_string, keep_blank_values=True))
        key = table.primary_key or tuple(c.name for c in table.columns)
        if set(given) != set(key) or not all(value.startswith("eq.") for value in given.values()):
            raise LedgerError(f"give every primary key column of {table.name} as <column>=eq.<value>",
                              code="PGRST100", status=400, hint=", ".join(f"{c}=eq.<value>" for c in key))
        # authorization: the caller must be able to read the row through the data API now
        reply = await self.api.handle(Incoming(method="GET", path=f"/{table.name}", query_string=query_string,
                                               headers={k: v for k, v in headers.items() if k != "prefer"},
                                               body=b"", claims=claims))
        if reply.status != 200 or orjson.loads(reply.body) == [] and claims.role != "service_role":
            raise LedgerError("no such row, or it is not visible with this key", code="PGRST116", status=404)
        pk: dict[str, Any] = {}
        for name in key:
            column = table.column(name)
            assert column is not None
            value = coerce_text(column.type, given[name][3:])
            pk[name] = to_sqlite(column.type, value) if self.api.sqlite else value
        versions = []
        for seq, salt in await self.ledger.history(table.name, _json_safe(pk)):
            entry = await self.ledger.entry(seq)
            leaf, proof = await self.ledger.inclusion(seq)
            versions.append({"seq": seq, "entry": orjson.loads(entry),
                             "salt": _b64(salt) if salt is not None else None,
                             "leaf_hash": _b64(leaf), "inclusion": [_b64(h) for h in proof]})
        head = await self.ledger.read_head()
        return _json({"table": table.name, "pk": _json_safe(pk), "tree_size": head.size if head else 0,
                      "checkpoint": head.checkpoint if head else None, "versions": versions})


def _json_safe(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


def _json(value: Any) -> Reply:
    return Reply(200, orjson.dumps(value), {"Content-Type": _JSON, "Cache-Control": _FRESH})

