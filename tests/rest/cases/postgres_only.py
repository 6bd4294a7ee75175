"""Cases that need PostgreSQL types (arrays, full-text search, ranges).

From QuerySpec.hs and AndOrParamsSpec.hs; the tables come from
tests/fixtures/rest_postgres. On SQLite the same requests must be refused with
a 4xx (those columns and tables do not exist there), never a 5xx.
"""

from __future__ import annotations

from typing import Any

from . import CT_JSON, POSTGRES, Case, get

JSON_CT = {"Content-Type": CT_JSON}
KIND_FUN = {"text_search_vector": "'fun':5 'imposs':9 'kind':3"}
ALSO_FUN = {"text_search_vector": "'also':2 'fun':3 'possibl':8"}
FAT_CATS = {"text_search_vector": "'ate':3 'cat':2 'fat':1 'rat':4"}
FRENCH = {"text_search_vector": "'amus':5 'fair':7 'impossibl':9 'peu':4"}
GERMAN = {"text_search_vector": "'art':4 'spass':5 'unmog':7"}


def pg(name: str, path: str, json: Any, **kwargs: Any) -> Case:
    return get(name, path, 200, json, dialects=POSTGRES, elsewhere_4xx=True,
               response_headers=JSON_CT, **kwargs)


def ids(*values: int) -> list[dict[str, int]]:
    return [{"id": v} for v in values]


CASES: list[Case] = [
    # QuerySpec: full text search
    pg("fts finds matches with to_tsquery", "/tsearch?text_search_vector=fts.impossible",
       [KIND_FUN]),
    pg("fts with & operator", "/tsearch?text_search_vector=fts.fun%26possible", [ALSO_FUN]),
    pg("fts with | operator", "/tsearch?text_search_vector=fts.impossible%7Cpossible",
       [KIND_FUN, ALSO_FUN]),
    pg("fts with & and ! operators", "/tsearch?text_search_vector=fts.fun%26!possible",
       [KIND_FUN]),
    pg("plfts finds matches with plainto_tsquery",
       "/tsearch?text_search_vector=plfts.The%20Fat%20Rats", [FAT_CATS]),
    pg("wfts finds matches with websearch_to_tsquery",
       "/tsearch?text_search_vector=wfts.The%20Fat%20Rats", [FAT_CATS]),
    pg("wfts with and", "/tsearch?text_search_vector=wfts.fun%20and%20possible", [ALSO_FUN]),
    pg("wfts with or", "/tsearch?text_search_vector=wfts.impossible%20or%20possible",
       [KIND_FUN, ALSO_FUN]),
    pg("wfts with and -", "/tsearch?text_search_vector=wfts.fun%20and%20-possible", [KIND_FUN]),
    pg("fts with a french dictionary", "/tsearch?text_search_vector=fts(french).amusant",
       [FRENCH]),
    pg("plfts with a french dictionary",
       "/tsearch?text_search_vector=plfts(french).amusant%20impossible", [FRENCH]),
    pg("wfts with a french dictionary",
       "/tsearch?text_search_vector=wfts(french).amusant%20impossible", [FRENCH]),
    pg("fts negated with not", "/tsearch?text_search_vector=not.fts.impossible%7Cfat%7Cfun",
       [FRENCH, GERMAN]),
    pg("fts with dictionary negated with not",
       "/tsearch?text_search_vector=not.fts(english).impossible%7Cfat%7Cfun", [FRENCH, GERMAN]),
    pg("plfts negated with not", "/tsearch?text_search_vector=not.plfts.The%20Fat%20Rats",
       [KIND_FUN, ALSO_FUN, FRENCH, GERMAN]),
    pg("wfts negated with not",
       "/tsearch?text_search_vector=not.wfts(english).impossible%20or%20fat%20or%20fun",
       [FRENCH, GERMAN]),
    pg("phfts finds matches", "/tsearch?text_search_vector=phfts.The%20Fat%20Cats", [FAT_CATS]),
    pg("phfts with a german dictionary", "/tsearch?text_search_vector=phfts(german).Art%20Spass",
       [GERMAN]),
    pg("phfts negated with not",
       "/tsearch?text_search_vector=not.phfts(english).The%20Fat%20Cats",
       [KIND_FUN, ALSO_FUN, FRENCH, GERMAN]),
    pg("phfts inside or",
       "/tsearch?or=(text_search_vector.phfts(german).Art%20Spass, "
       "text_search_vector.phfts(french).amusant, text_search_vector.fts(english).impossible)",
       [KIND_FUN, FRENCH, GERMAN]),

    # QuerySpec: array containment (upstream table complex_items)
    pg("matches with cs operator", "/pg_complex_items?select=id&arr_data=cs.{2}", ids(2, 3)),
    pg("matches with cd operator", "/pg_complex_items?select=id&arr_data=cd.{1,2,4}", ids(1, 2)),

    # AndOrParamsSpec: arrays, fts and ranges inside and/or
    pg("fts inside or", "/entities?or=(text_search_vector.fts.bar,text_search_vector.fts.baz)"
       "&select=id", ids(1, 2)),
    pg("plfts with dictionaries inside or",
       "/tsearch?or=(text_search_vector.plfts(german).Art%20Spass, "
       "text_search_vector.plfts(french).amusant%20impossible, "
       "text_search_vector.fts(english).impossible)",
       [KIND_FUN, FRENCH, GERMAN]),
    pg("negated wfts inside or",
       "/tsearch?or=(text_search_vector.plfts(german).Art,text_search_vector.plfts(french)."
       "amusant,text_search_vector.not.wfts(english).impossible)",
       [ALSO_FUN, FAT_CATS, FRENCH, GERMAN]),
    pg("is null on an array inside and", "/entities?and=(name.is.null,arr.is.null)&select=id",
       ids(4)),
    pg("isdistinct on an array inside and", "/entities?and=(id.gte.2,arr.isdistinct.{1,2})"
       "&select=id", ids(3, 4)),
    pg("cs and cd inside or", "/entities?or=(arr.cs.{1,2,3},arr.cd.{1})&select=id", ids(1, 3)),
    pg("range eq", "/ranges?range=eq.[1,3]&select=id", ids(1)),
    pg("range neq", "/ranges?range=neq.[1,3]&select=id", ids(2, 3, 4)),
    pg("range lt", "/ranges?range=lt.[1,10]&select=id", ids(1)),
    pg("range gt", "/ranges?range=gt.[8,11]&select=id", ids(4)),
    pg("range lte", "/ranges?range=lte.[1,3]&select=id", ids(1)),
    pg("range gte", "/ranges?range=gte.[2,3]&select=id", ids(2, 3, 4)),
    pg("range cs", "/ranges?range=cs.[1,2]&select=id", ids(1)),
    pg("range cd", "/ranges?range=cd.[1,6]&select=id", ids(1, 2)),
    pg("range ov", "/ranges?range=ov.[0,4]&select=id", ids(1, 2)),
    pg("range sl", "/ranges?range=sl.[9,10]&select=id", ids(1, 2)),
    pg("range sr", "/ranges?range=sr.[3,4]&select=id", ids(3, 4)),
    pg("range nxr", "/ranges?range=nxr.[4,7]&select=id", ids(1, 2)),
    pg("range nxl", "/ranges?range=nxl.[4,7]&select=id", ids(3, 4)),
    pg("range adj", "/ranges?range=adj.(3,10]&select=id", ids(1)),
    pg("range isdistinct", "/ranges?range=isdistinct.[1,3]&select=id", ids(2, 3, 4, 5)),
    pg("array eq", "/entities?arr=eq.{1,2,3}&select=id", ids(3)),
    pg("array neq", "/entities?arr=neq.{1,2}&select=id", ids(1, 3)),
    pg("array lt", "/entities?arr=lt.{2,3}&select=id", ids(1, 2, 3)),
    pg("array lt with zero", "/entities?arr=lt.{2,0}&select=id", ids(1, 2, 3)),
    pg("array gt", "/entities?arr=gt.{1,1}&select=id", ids(2, 3)),
    pg("array gt with no match", "/entities?arr=gt.{3}&select=id", []),
    pg("array lte", "/entities?arr=lte.{2,1}&select=id", ids(1, 2, 3)),
    pg("array lte equal", "/entities?arr=lte.{1,2,3}&select=id", ids(1, 2, 3)),
    pg("array lte prefix", "/entities?arr=lte.{1,2}&select=id", ids(1, 2)),
    pg("array cs", "/entities?arr=cs.{1,2}&select=id", ids(2, 3)),
    pg("array cd", "/entities?arr=cd.{1,2,6}&select=id", ids(1, 2)),
    pg("array ov single", "/entities?arr=ov.{3}&select=id", ids(3)),
    pg("array ov", "/entities?arr=ov.{2,3}&select=id", ids(2, 3)),
    pg("array isdistinct", "/entities?arr=isdistinct.{1,2}&select=id", ids(1, 3, 4)),
    pg("eq, cs, like negated", "/entities?and=(arr.not.cs.{1,2,3},and(id.not.eq.2,"
       "name.not.like.*3))&select=id", ids(1)),
    pg("in, is, fts negated", "/entities?and=(id.not.in.(1,3),and(name.not.is.null,"
       "text_search_vector.not.fts.foo))&select=id", ids(2)),
    pg("lt, gte, cd negated", "/entities?and=(arr.not.cd.{1},or(id.not.lt.1,id.not.gte.3))"
       "&select=id", ids(2, 3)),
    pg("isdistinct negated", "/entities?and=(id.not.eq.2,arr.not.isdistinct.{1,2,3})&select=id",
       ids(3)),
]
