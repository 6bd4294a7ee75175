"""Cases from PostgREST 12's test/spec/Feature/Query/DeleteSpec.hs."""

from __future__ import annotations

from . import ABSENT, CT_JSON, Case, delete_

REP = {"Prefer": "return=representation"}

CASES: list[Case] = [
    delete_("existing record succeeds with 204", "/items?id=eq.1", 204, text="",
           response_headers={"Content-Type": ABSENT, "Content-Range": "*/*"}),
    delete_("returns the deleted item and count if requested", "/items?id=eq.2", 200,
           [{"id": 2}], headers={"Prefer": "return=representation, count=exact"},
           response_headers={"Content-Range": "*/1",
                             "Preference-Applied": "return=representation, count=exact"}),
    delete_("ignores select when return is not set", "/items?id=eq.3&select=id", 204, text="",
           response_headers={"Content-Type": ABSENT, "Content-Range": "*/*"}),
    delete_("ignores select with return=minimal", "/items?id=eq.3&select=id", 204, text="",
           headers={"Prefer": "return=minimal"},
           response_headers={"Content-Type": ABSENT, "Content-Range": "*/*",
                             "Preference-Applied": "return=minimal"}),
    delete_("returns the deleted item and shapes the response", "/complex_items?id=eq.2&select=id,name",
           200, [{"id": 2, "name": "Two"}], headers=REP,
           response_headers={"Content-Range": "*/*"}),
    delete_("can rename and cast the selected columns",
           "/complex_items?id=eq.3&select=ciId:id::text,ciName:name", 200,
           [{"ciId": "3", "ciName": "Three"}], headers=REP),
    delete_("can embed parent entities", "/tasks?id=eq.8&select=id,name,project:projects(id)",
           200, [{"id": 8, "name": "Code OSX", "project": {"id": 4}}], headers=REP,
           response_headers={"Content-Range": "*/*"}),
    delete_("embeds an O2O relationship after delete (parent side)",
           "/students?id=eq.1&select=name,students_info(address)", 200,
           [{"name": "John Doe", "students_info": {"address": "Street 1"}}], headers=REP,
           response_headers={"Content-Type": CT_JSON}),
    delete_("embeds an O2O relationship after delete (child side)",
           "/students_info?id=eq.1&select=address,students(name)", 200,
           [{"address": "Street 1", "students": {"name": "John Doe"}}], headers=REP,
           response_headers={"Content-Type": CT_JSON}),
    delete_("no records matched gives [] with return=representation", "/items?id=eq.101", 200,
           [], headers=REP, response_headers={"Content-Range": "*/*"}),
    delete_("totally unknown route fails with 404", "/foozle?id=eq.101", 404),
    delete_("delete with a body as postgrest-py sends it", "/items?id=eq.4", 204, body={},
           note="DESIGN.md: postgrest-py sends {} as the body of a DELETE"),
]
