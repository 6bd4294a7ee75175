"""The immutable description of a data API request, produced by ``parse`` (no I/O).

Values (filter operands, limits) are kept apart in ``ApiRequest.values`` and
referred to by slot number, so that the rest of a request is its *shape*: two
requests that differ only in values share one compiled SQL statement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class JsonStep:
    """One ``->key`` (``text=False``) or ``->>key`` (``text=True``) step of a JSON path."""

    key: str
    text: bool

    @property
    def index(self) -> int | None:
        """The array index this step takes (``->0``, ``->-1``), or None for an object key."""
        body = self.key[1:] if self.key.startswith("-") else self.key
        return int(self.key) if body.isdigit() else None


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A column, possibly followed by a JSON path."""

    name: str
    path: tuple[JsonStep, ...] = ()

    @property
    def output_name(self) -> str:
        """The key PostgREST gives the value in the response: the last object key, or the column."""
        for step in reversed(self.path):
            if step.index is None:
                return step.key
        return self.name


@dataclass(frozen=True, slots=True)
class SelectField:
    """``alias:column->path::cast`` in ``select``."""

    field: FieldRef
    alias: str | None = None
    cast: str | None = None


@dataclass(frozen=True, slots=True)
class SelectEmbed:
    """``alias:relation!hint!inner(...)`` or ``...relation(...)`` in ``select``."""

    relation: str
    items: tuple[SelectItem, ...]
    alias: str | None = None
    hint: str | None = None
    inner: bool = False
    spread: bool = False


SelectItem = SelectField | SelectEmbed


@dataclass(frozen=True, slots=True)
class Condition:
    """``field=[not.]op[(any|all)].value``; the value is ``values[slot]``."""

    field: FieldRef
    operator: str
    slot: int
    negated: bool = False
    quantifier: str | None = None  # "any" | "all"
    language: str | None = None  # fts(english)
    keyword: str | None = None  # is.null, is.true, ...: part of the shape, not a value


@dataclass(frozen=True, slots=True)
class Logic:
    """``and=(...)`` / ``or=(...)``, possibly negated, nested."""

    conjunction: str  # "and" | "or"
    children: tuple[Condition | Logic, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class OrderTerm:
    """One term of ``order=``; ``relation`` is set for ``relation(column)`` terms."""

    field: FieldRef
    descending: bool = False
    nulls_first: bool | None = None
    relation: str | None = None


@dataclass(frozen=True, slots=True)
class NodeParams:
    """Filters, order and paging for the top level (path ``()``) or an embedded resource."""

    path: tuple[str, ...]
    filters: tuple[Condition | Logic, ...] = ()
    order: tuple[OrderTerm, ...] = ()
    limit_slot: int | None = None
    offset_slot: int | None = None


class ReturnPref(StrEnum):
    """``Prefer: return=...``."""

    MINIMAL = "minimal"
    HEADERS_ONLY = "headers-only"
    REPRESENTATION = "representation"


@dataclass(frozen=True, slots=True)
class Preferences:
    """The parsed ``Prefer`` header."""

    return_: ReturnPref | None = None
    count: str | None = None  # exact | planned | estimated
    resolution: str | None = None  # merge-duplicates | ignore-duplicates
    missing_default: bool = False
    handling_strict: bool = False
    tx: str | None = None  # commit | rollback
    max_affected: int | None = None
    given: tuple[tuple[str, str], ...] = ()  # every understood preference, as (key, value)

    def applied(self, *keys: str) -> str | None:
        """The ``Preference-Applied`` value for ``keys``, in PostgREST's order; None if empty."""
        if not self.given:
            return None
        order = ("resolution", "missing", "return", "count", "tx", "handling", "max-affected")
        found = dict(self.given)
        if not self.handling_strict:
            found.pop("max-affected", None)
        values = [f"{key}={found[key]}" for key in order if key in keys and key in found]
        return ", ".join(values) or None


class MediaType(StrEnum):
    """The response formats the data API can produce."""

    JSON = "application/json"
    OBJECT = "application/vnd.pgrst.object+json"
    CSV = "text/csv"


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """A parsed data API request. Everything but ``values`` is its cacheable shape."""

    method: str
    target: str
    is_rpc: bool
    select: tuple[SelectItem, ...]
    nodes: tuple[NodeParams, ...]
    preferences: Preferences
    media_type: MediaType
    columns: tuple[str, ...] | None = None
    on_conflict: tuple[str, ...] | None = None
    rpc_args: tuple[tuple[str, int], ...] = ()  # GET /rpc/fn?arg=value: (name, value slot)
    values: tuple[object, ...] = field(default=(), compare=False, hash=False)

    def node(self, path: tuple[str, ...]) -> NodeParams | None:
        """The filters/order/paging for an embedded resource path (``()`` is the top level)."""
        for node in self.nodes:
            if node.path == path:
                return node
        return None
