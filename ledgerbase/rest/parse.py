"""Parse a request's path, query string and headers into an ``ApiRequest`` (pure, no I/O).

The grammar is PostgREST 12's. Errors are ``ParseError`` (PGRST100) or the
specific PostgREST codes for headers (PGRST103, PGRST107, PGRST122).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import unquote_plus

from ledgerbase.db.values import split_top_level
from ledgerbase.errors import LedgerbaseError, ParseError
from ledgerbase.rest.request import (
    ApiRequest,
    Condition,
    FieldRef,
    JsonStep,
    Logic,
    MediaType,
    NodeParams,
    OrderTerm,
    Preferences,
    ReturnPref,
    SelectEmbed,
    SelectField,
    SelectItem,
)

OPERATORS = frozenset({
    "eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch", "in", "is",
    "isdistinct", "fts", "plfts", "phfts", "wfts", "cs", "cd", "ov", "sl", "sr", "nxr", "nxl",
    "adj",
})
QUANTIFIABLE = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"})
FTS = frozenset({"fts", "plfts", "phfts", "wfts"})
IS_VALUES = frozenset({"null", "not_null", "true", "false", "unknown"})
RESERVED = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})
LOGIC_KEYS = ("and", "or", "not.and", "not.or")

_NAME_RE = re.compile(r'^(?:"(?:[^"]|"")+"|[^\s"(),:!.]+(?:\.[^\s"(),:!.]+)*)$')
_CAST_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|double precision)(\[\])?$", re.IGNORECASE)
_OPERATOR_RE = re.compile(r"^(?:(not)\.)?(\w+)(?:\((\w+)\))?\.(.*)$", re.DOTALL)
_RANGE_RE = re.compile(r"^\s*(\d+)-(\d*)\s*$")


def _fail(what: str, raw: str, details: str) -> ParseError:
    return ParseError(f'"failed to parse {what} ({raw})"', details=details)


class _Builder:
    """Collects values into slots while the request is parsed."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def slot(self, value: object) -> int:
        self.values.append(value)
        return len(self.values) - 1


# --- names and fields ---------------------------------------------------------------------

def _unquote_name(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text


@lru_cache(maxsize=2048)
def parse_field(text: str, what: str = "select parameter") -> FieldRef:
    """``col``, ``"my col"``, ``col->a->>b``, ``col->0``."""
    raw = text.strip()
    if not raw:
        raise _fail(what, text, "empty column name")
    parts = re.split(r"(->>|->)", raw)
    name = _unquote_name(parts[0].strip())
    if not name or any(c in name for c in "()") and not parts[0].strip().startswith('"'):
        raise _fail(what, text, f"unexpected column name {parts[0]!r}")
    steps: list[JsonStep] = []
    for arrow, key in zip(parts[1::2], parts[2::2], strict=True):
        quoted = key.strip().startswith('"')
        key = _unquote_name(key.strip())
        if not key:
            raise _fail(what, text, "expecting a JSON key after the arrow")
        if not quoted and (key.startswith("-") and not re.fullmatch(r"-\d+", key)
                           or any(c in key for c in ".,>()")):
            raise _fail(what, text, f"unexpected {key!r}: a JSON key is a name or an integer index")
        steps.append(JsonStep(key=key, text=arrow == "->>"))
    return FieldRef(name=name, path=tuple(steps))


# --- select -------------------------------------------------------------------------------

def _check_balanced(raw: str, what: str) -> None:
    """Parentheses outside double quotes must pair up."""
    depth = 0
    quoted = False
    for char in raw:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            depth += char == "("
            depth -= char == ")"
            if depth < 0:
                raise _fail(what, raw, 'unexpected ")"')
    if depth != 0:
        raise _fail(what, raw, 'expecting ")"')


@lru_cache(maxsize=1024)
def parse_select(raw: str) -> tuple[SelectItem, ...]:
    """Parse ``select=`` (columns, aliases, casts, JSON paths, embeds, spreads).

    Pure and immutable, so memoised: clients repeat the same few selects.
    """
    if raw.strip() == "":
        return (SelectField(FieldRef("*")),)
    _check_balanced(raw, "select parameter")
    return tuple(_parse_select_item(item, raw) for item in split_top_level(raw, ","))


def _split_alias(text: str) -> tuple[str | None, str]:
    """``alias:rest`` -> (alias, rest); a ``::`` cast is not an alias separator."""
    index = 0
    quoted = False
    while index < len(text):
        char = text[index]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            break
        elif not quoted and char == ":":
            if text[index + 1:index + 2] == ":":
                return None, text
            return _unquote_name(text[:index].strip()), text[index + 1:]
        index += 1
    return None, text


def _parse_select_item(text: str, raw: str) -> SelectItem:
    item = text.strip()
    if not item:
        raise _fail("select parameter", raw, "empty select item")
    spread = item.startswith("...")
    if spread:
        item = item[3:]
    alias, rest = _split_alias(item)
    if alias is not None and not alias:
        raise _fail("select parameter", raw, "empty alias")
    rest = rest.strip()
    if "(" in rest and not rest.startswith('"'):
        head, _, tail = rest.partition("(")
        if not tail.endswith(")"):
            raise _fail("select parameter", raw, f"unexpected text after {head}(...)")
        inner = tail[:-1]
        names = head.split("!")
        relation = _unquote_name(names[0].strip())
        if relation in ("count", "sum", "avg", "min", "max") and inner.strip() == "":
            raise LedgerbaseError("Use of aggregate functions is not allowed", code="PGRST123")
        if not relation or not _NAME_RE.match(names[0].strip()):
            raise _fail("select parameter", raw, f"unexpected relation name {names[0]!r}")
        hint: str | None = None
        inner_join = False
        for modifier in names[1:]:
            modifier = modifier.strip()
            if modifier == "inner":
                inner_join = True
            elif modifier == "left":
                inner_join = False
            elif modifier and hint is None:
                hint = _unquote_name(modifier)
            else:
                raise _fail("select parameter", raw, f"unexpected embed modifier {modifier!r}")
        items = parse_select(inner) if inner.strip() else ()
        return SelectEmbed(relation=relation, items=items, alias=alias, hint=hint,
                           inner=inner_join, spread=spread)
    if spread:
        raise _fail("select parameter", raw, "a spread (...) must be followed by an embedded resource")
    cast: str | None = None
    if "::" in rest:
        rest, _, cast = rest.partition("::")
        cast = cast.strip()
        if not _CAST_RE.match(cast):
            raise _fail("select parameter", raw, f"unexpected cast {cast!r}")
    if rest.strip() == "*":
        if alias or cast:
            raise _fail("select parameter", raw, "* cannot have an alias or a cast")
        return SelectField(FieldRef("*"))
    return SelectField(field=parse_field(rest, "select parameter"), alias=alias, cast=cast)


# --- filters ------------------------------------------------------------------------------

def _parse_list(raw: str, what: str, opening: str = "(", closing: str = ")") -> tuple[str, ...]:
    text = raw.strip()
    if not (text.startswith(opening) and text.endswith(closing)):
        raise _fail(what, raw, f'expecting "{opening}" and "{closing}" around the list')
    body = text[1:-1]
    if body.strip() == "":
        return ()
    items: list[str] = []
    for token in split_top_level(body, ","):
        token = token.strip()
        if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
            token = re.sub(r'\\(.)', r"\1", token[1:-1])
        items.append(token)
    return tuple(items)


def parse_condition(field: FieldRef, expression: str, builder: _Builder,
                    *, in_logic: bool = False) -> Condition:
    """``[not.]op[(any|all)].value`` for ``field``."""
    what = "filter"
    match = _OPERATOR_RE.match(expression)
    if match is None:
        raise _fail(what, expression, "expecting an operator such as eq., gt. or in.")
    negated, operator, modifier, value = match.groups()
    if operator not in OPERATORS:
        raise _fail(what, expression, f"unknown operator {operator!r}")
    quantifier: str | None = None
    language: str | None = None
    if modifier is not None:
        if operator in FTS:
            language = modifier
        elif operator in QUANTIFIABLE and modifier in ("any", "all"):
            quantifier = modifier
        else:
            raise _fail(what, expression, f"unexpected modifier ({modifier}) for {operator}")
    if in_logic and len(value) >= 2 and value[0] == '"' and value[-1] == '"' and operator != "in":
        value = re.sub(r'\\(.)', r"\1", value[1:-1])
    stored: object
    if operator == "in":
        stored = _parse_list(value, what)
    elif quantifier is not None:
        stored = _parse_list(value, what, "{", "}")
    elif operator == "is":
        if value.lower() not in IS_VALUES:
            raise _fail(what, expression, "is. takes null, not_null, true, false or unknown")
        stored = value.lower()
    else:
        stored = value
    return Condition(field=field, operator=operator, slot=builder.slot(stored),
                     negated=negated is not None, quantifier=quantifier, language=language,
                     keyword=stored if operator == "is" else None)  # type: ignore[arg-type]


def parse_logic(key: str, raw: str, builder: _Builder) -> Logic:
    """``or=(a.eq.1,and(b.gt.2,c.lt.3))`` with ``key`` one of and, or, not.and, not.or."""
    negated = key.startswith("not.")
    conjunction = key.removeprefix("not.")
    text = raw.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise _fail("logic tree", raw, 'expecting "(" and ")" around the conditions')
    _check_balanced(text, "logic tree")
    return Logic(conjunction=conjunction, negated=negated,
                 children=_parse_logic_children(text[1:-1], raw, builder))


def _parse_logic_children(body: str, raw: str, builder: _Builder) -> tuple[Condition | Logic, ...]:
    if body.strip() == "":
        raise _fail("logic tree", raw, "expecting at least one condition")
    children: list[Condition | Logic] = []
    for part in split_top_level(body, ","):
        part = part.strip()
        nested = re.match(r"^(not\.)?(and|or)\s*\((.*)\)$", part, re.DOTALL)
        if nested:
            children.append(Logic(conjunction=nested.group(2), negated=nested.group(1) is not None,
                                  children=_parse_logic_children(nested.group(3), raw, builder)))
            continue
        name, dot, expression = part.partition(".")
        name, expression = name.strip(), expression.strip()
        if not dot or not name:
            raise _fail("logic tree", raw, f"expecting field.operator.value in {part!r}")
        children.append(parse_condition(parse_field(name, "logic tree"), expression, builder,
                                        in_logic=True))
    return tuple(children)


# --- order --------------------------------------------------------------------------------

@lru_cache(maxsize=1024)
def parse_order(raw: str) -> tuple[OrderTerm, ...]:
    """``order=a.desc.nullslast,b,rel(c).asc``."""
    terms: list[OrderTerm] = []
    for part in split_top_level(raw, ","):
        part = part.strip()
        if not part:
            raise _fail("order", raw, "empty order term")
        relation: str | None = None
        match = re.match(r"^([^()]+)\(([^()]+)\)(.*)$", part)
        if match:
            relation = _unquote_name(match.group(1).strip())
            name, modifiers = match.group(2), match.group(3).lstrip(".").split(".") if match.group(3) else []
        else:
            pieces = part.split(".")
            name, modifiers = pieces[0], pieces[1:]
            # JSON keys may not contain dots here; "a->b.desc" still works
        descending = False
        nulls_first: bool | None = None
        for modifier in modifiers:
            if modifier == "asc":
                descending = False
            elif modifier == "desc":
                descending = True
            elif modifier == "nullsfirst":
                nulls_first = True
            elif modifier == "nullslast":
                nulls_first = False
            else:
                raise _fail("order", raw, f"unexpected {modifier!r}, expecting asc, desc, "
                            "nullsfirst or nullslast")
        terms.append(OrderTerm(field=parse_field(name, "order"), descending=descending,
                               nulls_first=nulls_first, relation=relation))
    return tuple(terms)


# --- headers ------------------------------------------------------------------------------

_PREFER_VALUES = {
    "return": ("minimal", "headers-only", "representation"),
    "count": ("exact", "planned", "estimated"),
    "resolution": ("merge-duplicates", "ignore-duplicates"),
    "missing": ("default", "null"),
    "handling": ("strict", "lenient"),
    "tx": ("commit", "rollback"),
}


@lru_cache(maxsize=256)
def parse_prefer(headers: tuple[str, ...]) -> Preferences:
    """Parse every ``Prefer`` header; unknown values are ignored unless ``handling=strict``."""
    found: dict[str, str] = {}
    invalid: list[str] = []
    for header in headers:
        for token in header.split(","):
            token = token.strip()
            if not token:
                continue
            key, _, value = token.partition("=")
            key, value = key.strip(), value.strip()
            if key in _PREFER_VALUES and value in _PREFER_VALUES[key]:
                found.setdefault(key, value)
            elif key == "max-affected" and value.isdigit():
                found.setdefault(key, value)
            elif key in ("timezone", "params"):
                continue
            else:
                invalid.append(token)
    strict = found.get("handling") == "strict"
    if strict and invalid:
        raise LedgerbaseError("Invalid preferences given with handling=strict", code="PGRST122",
                              details=f"Invalid preferences: {', '.join(invalid)}")
    return Preferences(
        return_=ReturnPref(found["return"]) if "return" in found else None,
        count=found.get("count"), resolution=found.get("resolution"),
        missing_default=found.get("missing") == "default", handling_strict=strict,
        tx=found.get("tx"),
        max_affected=int(found["max-affected"]) if "max-affected" in found else None,
        given=tuple(found.items()),
    )


@lru_cache(maxsize=256)
def parse_accept(header: str | None) -> MediaType:
    """Pick the response format from ``Accept`` as PostgREST does (406 PGRST107 if none fits)."""
    if not header:
        return MediaType.JSON
    for part in header.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "*/*", "application/*", "application/vnd.pgrst.array+json"):
            return MediaType.JSON
        if media == "application/vnd.pgrst.object+json" or media == "application/vnd.pgrst.object":
            return MediaType.OBJECT
        if media in ("text/csv", "text/*"):
            return MediaType.CSV
    raise LedgerbaseError(f"None of these media types are available: {header}", code="PGRST107",
                          status=406)


def parse_range(header: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` (items) -> (first, last); None when absent."""
    if header is None:
        return None
    match = _RANGE_RE.match(header.removeprefix("items="))
    if match is None:
        return None  # PostgREST ignores a Range it cannot read
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else None
    if last is not None and last < first:
        raise LedgerbaseError("Requested range not satisfiable", code="PGRST103", status=416,
                              details="The lower boundary must be lower than or equal to the upper "
                                      "boundary in the Range header.")
    return first, last


def _parse_int(raw: str, what: str) -> int:
    text = raw.strip()
    if not re.fullmatch(r"\d+", text):
        raise _fail(what, raw, f"{what} must be a non-negative integer")
    return int(text)


# --- the whole request --------------------------------------------------------------------

def split_query(query_string: str) -> list[tuple[str, str]]:
    """Split a raw query string into (key, value) pairs, ``+`` meaning a space (as supabase-py sends)."""
    pairs: list[tuple[str, str]] = []
    for part in query_string.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in part or "+" in part:
            key, value = unquote_plus(key), unquote_plus(value)
        pairs.append((key, value))
    return pairs


QueryShape = tuple[tuple[tuple[str, str], ...], tuple[object, ...]]
_PAGING = ("limit", "offset")
_NOT_FILTERS = ("order", "and", "or")
_TAKEN_OUT = "#"


def query_shape(query: Sequence[tuple[str, str]]) -> QueryShape | None:
    """A read's query with its plain values taken out, and those values in order.

    Taken out: the value of a filter with a scalar operator (``id=eq.4242`` keeps
    ``("id", "eq.")``) and the number of a ``limit`` or ``offset``; everything
    else stays as written. Two reads of one shape parse to requests equal but
    for ``values``, which are these values, provided a full parse of one of them
    gave exactly these values: the caller checks that before it trusts a shape.
    None when a ``limit`` or ``offset`` is not a plain number.
    """
    shape: list[tuple[str, str]] = []
    values: list[object] = []
    for key, value in query:
        last = key.rpartition(".")[2]
        if last in _PAGING:
            if not (value.isascii() and value.isdigit()):
                return None
            shape.append((key, _TAKEN_OUT))
            values.append(int(value))
            continue
        match = None if key in RESERVED or last in _NOT_FILTERS else _OPERATOR_RE.match(value)
        if match is None or match.group(3) is not None or match.group(2) in ("in", "is"):
            shape.append((key, value))
            continue
        shape.append((key, value[:match.start(4)]))
        values.append(match.group(4))
    return tuple(shape), tuple(values)


@dataclass(slots=True)
class _NodeDraft:
    """Filters, order and paging of one resource while the query string is read."""

    filters: list[Condition | Logic] = field(default_factory=list)
    order: tuple[OrderTerm, ...] = ()
    limit: int | None = None
    offset: int | None = None


def parse_request(method: str, target: str, *, is_rpc: bool, query: Sequence[tuple[str, str]],
                  headers: Mapping[str, str], prefer: Sequence[str] = ()) -> ApiRequest:
    """Parse one data API request. ``headers`` has lower-case names."""
    builder = _Builder()
    select: tuple[SelectItem, ...] = (SelectField(FieldRef("*")),)
    drafts: dict[tuple[str, ...], _NodeDraft] = {}
    columns: tuple[str, ...] | None = None
    on_conflict: tuple[str, ...] | None = None
    rpc_args: list[tuple[str, int]] = []

    def draft(path: tuple[str, ...]) -> _NodeDraft:
        return drafts.setdefault(path, _NodeDraft())

    for key, value in query:
        if key == "select":
            select = parse_select(value)
            continue
        if key == "columns":
            columns = tuple(_unquote_name(c.strip()) for c in value.split(",") if c.strip())
            if not columns:
                raise _fail("columns parameter", value, "expecting at least one column")
            continue
        if key == "on_conflict":
            on_conflict = tuple(_unquote_name(c.strip()) for c in value.split(",") if c.strip())
            continue
        path, last = _split_key(key)
        if last == "order":
            draft(path).order = parse_order(value)
            continue
        if last == "limit":
            if re.fullmatch(r"\s*-\d+\s*", value):
                raise LedgerbaseError("Requested range not satisfiable", code="PGRST103", status=416,
                                      details="Limit should be greater than or equal to zero.")
            draft(path).limit = builder.slot(_parse_int(value, last))
            continue
        if last == "offset":
            draft(path).offset = builder.slot(_parse_int(value, last))
            continue
        if last in LOGIC_KEYS:
            draft(path).filters.append(parse_logic(last, value, builder))
            continue
        if is_rpc and method in ("GET", "HEAD") and not path and "->" not in last:
            operator = _OPERATOR_RE.match(value)
            if operator is None or operator.group(2) not in OPERATORS:
                rpc_args.append((last, builder.slot(value)))
                continue
        draft(path).filters.append(parse_condition(parse_field(last, "filter"), value, builder))

    if method in ("GET", "HEAD"):
        unit = headers.get("range-unit", "items")
        requested = parse_range(headers.get("range")) if unit == "items" else None
        if requested is not None:
            _apply_range(draft(()), requested, builder)

    nodes = tuple(
        NodeParams(path=path, filters=tuple(item.filters), order=item.order,
                   limit_slot=item.limit, offset_slot=item.offset)
        for path, item in sorted(drafts.items())
    )
    return ApiRequest(
        method=method, target=target, is_rpc=is_rpc, select=select, nodes=nodes,
        preferences=parse_prefer(tuple(prefer)), media_type=parse_accept(headers.get("accept")),
        columns=columns, on_conflict=on_conflict,
        rpc_args=tuple(rpc_args), values=tuple(builder.values),
    )


def _apply_range(top: _NodeDraft, requested: tuple[int, int | None], builder: _Builder) -> None:
    """Intersect a ``Range`` header with ``limit``/``offset``, as PostgREST does."""
    first, last = requested
    offset = int(builder.values[top.offset]) if top.offset is not None else 0  # type: ignore[call-overload]
    limit = int(builder.values[top.limit]) if top.limit is not None else None  # type: ignore[call-overload]
    start = max(first, offset)
    end = last
    if limit is not None:
        limit_end = offset + limit - 1
        end = limit_end if end is None else min(end, limit_end)
    top.offset = builder.slot(start)
    top.limit = builder.slot(max(0, end - start + 1)) if end is not None else None


def _split_key(key: str) -> tuple[tuple[str, ...], str]:
    """``clients.projects.order`` -> (("clients", "projects"), "order")."""
    for logic in ("not.and", "not.or"):
        if key == logic or key.endswith("." + logic):
            head = key[: -len(logic)].rstrip(".")
            return (tuple(head.split(".")) if head else ()), logic
    if "->" in key:
        head, arrow, tail = key.partition("->")
        parts = head.split(".")
        return tuple(parts[:-1]), parts[-1] + arrow + tail
    parts = key.split(".")
    return tuple(parts[:-1]), parts[-1]
