"""Cases from PostgREST 12's test/spec/Feature/Query/EmbedDisambiguationSpec.hs.

Relationship errors name the exposed schema; ours is ``public`` (upstream: ``test``).
The fixture has no ``main_jobs`` view, so ``sites``/``big_projects`` has one
many-to-many relationship fewer than upstream.
"""

from __future__ import annotations

from . import CT_JSON, Case, error, get

JSON_CT = {"Content-Type": CT_JSON}


def no_relationship(origin: str, target: str, hint_name: str | None = None) -> dict[str, object]:
    using = f" using the hint '{hint_name}'" if hint_name else ""
    return error(
        "PGRST200", f"Could not find a relationship between '{origin}' and '{target}' in the "
                    "schema cache",
        details=f"Searched for a foreign key relationship between '{origin}' and '{target}'"
                f"{using} in the schema 'public', but no matches were found.")


CASES: list[Case] = [
    get("errs when there are o2m and m2m cardinalities to the target table",
        "/sites?select=*,big_projects(*)", 300,
        {"code": "PGRST201",
         "details": [
             {"cardinality": "many-to-one",
              "relationship": "main_project using sites(main_project_id) and "
                              "big_projects(big_project_id)",
              "embedding": "sites with big_projects"},
             {"cardinality": "many-to-many",
              "relationship": "jobs using jobs_site_id_fkey(site_id) and "
                              "jobs_big_project_id_fkey(big_project_id)",
              "embedding": "sites with big_projects"}],
         "hint": "Try changing 'big_projects' to one of the following: "
                 "'big_projects!main_project', 'big_projects!jobs'. Find the desired "
                 "relationship in the 'details' key.",
         "message": "Could not embed because more than one relationship was found for 'sites' "
                    "and 'big_projects'"},
        response_headers=JSON_CT, note="upstream also lists main_jobs"),
    get("can disambiguate a recursive m2m with spread embeds (subscribers)",
        "/posters?select=*,subscribers:subscriptions!subscribed(...posters!subscriber(*))"
        "&limit=1",
        json=[{"id": 1, "name": "Mark",
               "subscribers": [{"id": 3, "name": "Bill"}, {"id": 4, "name": "Jeff"}]}],
        response_headers=JSON_CT),
    get("can disambiguate a recursive m2m with spread embeds (subscriptions)",
        "/posters?select=*,subscriptions!subscriber(...posters!subscribed(*))&limit=1",
        json=[{"id": 1, "name": "Mark", "subscriptions": [{"id": 2, "name": "Elon"}]}],
        response_headers=JSON_CT),
    get("errs on an ambiguous embed that has two one-to-one relationships",
        "/first?select=second(*)", 300,
        {"code": "PGRST201",
         "details": [
             {"cardinality": "one-to-one", "embedding": "first with second",
              "relationship": "first_second_id_1_fkey using first(second_id_1) and second(id)"},
             {"cardinality": "one-to-one", "embedding": "first with second",
              "relationship": "first_second_id_2_fkey using first(second_id_2) and second(id)"}],
         "hint": "Try changing 'second' to one of the following: "
                 "'second!first_second_id_1_fkey', 'second!first_second_id_2_fkey'. Find the "
                 "desired relationship in the 'details' key.",
         "message": "Could not embed because more than one relationship was found for 'first' "
                    "and 'second'"},
        response_headers=JSON_CT),
    get("can embed by FK name", "/projects?id=in.(1,3)&select=id,name,client(id,name)",
        json=[{"id": 1, "name": "Windows 7", "client": {"id": 1, "name": "Microsoft"}},
              {"id": 3, "name": "IOS", "client": {"id": 2, "name": "Apple"}}],
        response_headers=JSON_CT),
    get("can embed by FK name and select the FK column at the same time",
        "/projects?id=in.(1,3)&select=id,name,client_id,client(id,name)",
        json=[{"id": 1, "name": "Windows 7", "client_id": 1,
               "client": {"id": 1, "name": "Microsoft"}},
              {"id": 3, "name": "IOS", "client_id": 2, "client": {"id": 2, "name": "Apple"}}],
        response_headers=JSON_CT),
    get("embeds by using two fks pointing to the same table",
        "/orders?id=eq.1&select=id, name, billing(address), shipping(address)",
        json=[{"id": 1, "name": "order 1", "billing": {"address": "address 1"},
               "shipping": {"address": "address 2"}}],
        response_headers=JSON_CT),
    get("fails if the fk is not known", "/message?select=id,sender:person!space(name)&id=lt.4",
        400, no_relationship("message", "person", "space"), response_headers=JSON_CT),
    get("can request a parent with fk", "/comments?select=content,user(name)",
        json=[{"content": "Needs to be delivered ASAP", "user": {"name": "Angela Martin"}}],
        response_headers=JSON_CT),
    get("can specify a table!fk hint and request children 2 levels",
        "/clients?id=eq.1&select=id,projects:projects!client(id,tasks(id))",
        json=[{"id": 1, "projects": [{"id": 1, "tasks": [{"id": 1}, {"id": 2}]},
                                     {"id": 2, "tasks": [{"id": 3}, {"id": 4}]}]}],
        response_headers=JSON_CT),
    get("can disambiguate with the fk in case of an o2m and m2m relationship",
        "/sites?select=name,main_project(name)&site_id=eq.1",
        json=[{"name": "site 1", "main_project": {"name": "big project 1"}}],
        response_headers=JSON_CT),
    get("can embed by column", "/projects?id=in.(1,3)&select=id,name,client_id(id,name)",
        json=[{"id": 1, "name": "Windows 7", "client_id": {"id": 1, "name": "Microsoft"}},
              {"id": 3, "name": "IOS", "client_id": {"id": 2, "name": "Apple"}}],
        response_headers=JSON_CT),
    get("can embed by column and select the column at the same time, if aliased",
        "/projects?id=in.(1,3)&select=id,name,client_id,client:client_id(id,name)",
        json=[{"id": 1, "name": "Windows 7", "client_id": 1,
               "client": {"id": 1, "name": "Microsoft"}},
              {"id": 3, "name": "IOS", "client_id": 2, "client": {"id": 2, "name": "Apple"}}],
        response_headers=JSON_CT),
    get("can specify table!column",
        "/message?select=id,body,sender:person!sender(name),recipient:person!recipient(name)"
        "&id=lt.4",
        json=[{"id": 1, "body": "Hello Jane", "sender": {"name": "John"},
               "recipient": {"name": "Jane"}},
              {"id": 2, "body": "Hi John", "sender": {"name": "Jane"},
               "recipient": {"name": "John"}},
              {"id": 3, "body": "How are you doing?", "sender": {"name": "John"},
               "recipient": {"name": "Jane"}}],
        response_headers=JSON_CT),
    get("embeds by using two columns pointing to the same table",
        "/orders?id=eq.1&select=id, name, billing_address_id(id), shipping_address_id(id)",
        json=[{"id": 1, "name": "order 1", "billing_address_id": {"id": 1},
               "shipping_address_id": {"id": 2}}],
        response_headers=JSON_CT),
    get("can disambiguate with the column in case of an o2m and m2m relationship",
        "/sites?select=name,main_project_id(name)&site_id=eq.1",
        json=[{"name": "site 1", "main_project_id": {"name": "big project 1"}}],
        response_headers=JSON_CT),
    get("can specify the junction of an m2m relationship",
        "/sites?select=*,big_projects!jobs(name)&site_id=in.(1,2)",
        json=[{"big_projects": [{"name": "big project 1"}], "main_project_id": 1,
               "name": "site 1", "site_id": 1},
              {"big_projects": [{"name": "big project 1"}, {"name": "big project 2"}],
               "main_project_id": None, "name": "site 2", "site_id": 2}]),
    get("embeds by using a column and a fk pointing to the same table",
        "/orders?id=eq.1&select=id, name, billing_address_id(id), shipping(id)",
        json=[{"id": 1, "name": "order 1", "billing_address_id": {"id": 1},
               "shipping": {"id": 2}}],
        response_headers=JSON_CT),
    get("embeds parents recursively", "/family_tree?id=in.(3,4)&select=id,parent(id,name,parent(*))",
        json=[{"id": "3", "parent": {"id": "1", "name": "Parental Unit", "parent": None}},
              {"id": "4", "parent": {"id": "2", "name": "Kid One",
                                     "parent": {"id": "1", "name": "Parental Unit",
                                                "parent": None}}}],
        response_headers=JSON_CT),
    get("embeds children recursively",
        "/family_tree?id=eq.1&select=id,name, children:family_tree!parent(id,name,"
        "children:family_tree!parent(id,name))",
        json=[{"id": "1", "name": "Parental Unit", "children": [
            {"id": "2", "name": "Kid One", "children": [{"id": "4", "name": "Grandkid One"}]},
            {"id": "3", "name": "Kid Two", "children": [{"id": "5", "name": "Grandkid Two"}]}]}],
        response_headers=JSON_CT),
    get("embeds parent and then embeds children",
        "/family_tree?id=eq.2&select=id,name,parent(id,name,children:family_tree!parent(id,name))",
        json=[{"id": "2", "name": "Kid One", "parent": {
            "id": "1", "name": "Parental Unit",
            "children": [{"id": "2", "name": "Kid One"}, {"id": "3", "name": "Kid Two"}]}}],
        response_headers=JSON_CT),
    get("two self reference fks: embeds parents",
        "/organizations?select=id,name,referee(id,name),auditor(id,name)&id=eq.3",
        json=[{"id": 3, "name": "Acme", "referee": {"id": 1, "name": "Referee Org"},
               "auditor": {"id": 2, "name": "Auditor Org"}}],
        response_headers=JSON_CT),
    get("two self reference fks: embeds referee children",
        "/organizations?select=id,name,refereeds:organizations!referee(id,name)&id=eq.1",
        json=[{"id": 1, "name": "Referee Org",
               "refereeds": [{"id": 3, "name": "Acme"}, {"id": 4, "name": "Umbrella"}]}],
        response_headers=JSON_CT),
    get("two self reference fks: embeds auditor children",
        "/organizations?select=id,name,auditees:organizations!auditor(id,name)&id=eq.2",
        json=[{"id": 2, "name": "Auditor Org",
               "auditees": [{"id": 3, "name": "Acme"}, {"id": 4, "name": "Umbrella"}]}],
        response_headers=JSON_CT),
    get("embeds other relations besides the self reference",
        "/organizations?select=name,manager(name),referee(name,manager(name),auditor(name,"
        "manager(name))),auditor(name,manager(name),referee(name,manager(name)))&id=eq.5",
        json=[{"name": "Cyberdyne", "manager": {"name": "Cyberdyne Manager"},
               "referee": {"name": "Acme", "manager": {"name": "Acme Manager"},
                           "auditor": {"name": "Auditor Org",
                                       "manager": {"name": "Auditor Manager"}}},
               "auditor": {"name": "Umbrella", "manager": {"name": "Umbrella Manager"},
                           "referee": {"name": "Referee Org",
                                       "manager": {"name": "Referee Manager"}}}}],
        response_headers=JSON_CT),
    get("embeds other relations besides the self reference, children side",
        "/organizations?select=name,manager(name),auditees:organizations!auditor(name,"
        "manager(name),refereeds:organizations!referee(name,manager(name)))&id=eq.2",
        json=[{"name": "Auditor Org", "manager": {"name": "Auditor Manager"},
               "auditees": [
                   {"name": "Acme", "manager": {"name": "Acme Manager"},
                    "refereeds": [{"name": "Cyberdyne", "manager": {"name": "Cyberdyne Manager"}},
                                  {"name": "Oscorp", "manager": {"name": "Oscorp Manager"}}]},
                   {"name": "Umbrella", "manager": {"name": "Umbrella Manager"},
                    "refereeds": []}]}],
        response_headers=JSON_CT),
    get("self reference both ways: m2o by column", "/test?select=id,parent_id,parent:parent_id(id)",
        json=[{"id": 1, "parent_id": None, "parent": None},
              {"id": 2, "parent_id": 1, "parent": {"id": 1}}],
        response_headers=JSON_CT),
    get("self reference both ways: o2m by table", "/test?select=id,parent_id,childs:test(id)",
        json=[{"id": 1, "parent_id": None, "childs": [{"id": 2}]},
              {"id": 2, "parent_id": 1, "childs": []}],
        response_headers=JSON_CT),
    get("resolves the fk column when embedding by column name",
        "/message?select=id,body,sender(id,name)&id=eq.5",
        json=[{"id": 5, "body": "What's up Jake", "sender": {"id": 4, "name": "Julie"}}],
        response_headers=JSON_CT),
    get("no relationship between unrelated tables", "/items?select=*,simple_pk(*)", 400,
        no_relationship("items", "simple_pk"), response_headers=JSON_CT,
        note="same error shape as the spec's end_1/end_2 case"),
]
