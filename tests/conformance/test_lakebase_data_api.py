"""The Lakebase Data API: configured with the SDK (`w.postgres.*_data_api`) and used with
PostgREST's own Python client (`postgrest`, what supabase-py uses) and plain HTTP, on real
PostgreSQL. Requests run as the caller's Postgres role: GRANTs and row-level security apply."""

from __future__ import annotations

import pytest
import requests
from databricks.sdk.common.types.fieldmask import FieldMask
from databricks.sdk.errors import AlreadyExists, InvalidParameterValue, NotFound
from databricks.sdk.service.postgres import (
    Branch,
    BranchSpec,
    DataApi,
    DataApiDataApiSpec,
    Role,
    RoleIdentityType,
    RoleRoleSpec,
)
from postgrest import APIError, SyncPostgrestClient

from kiln_helpers import non_admin
from test_lakebase import connect, create_project, pid, primary

SETUP = """
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE, price numeric, kind text DEFAULT 'misc',
                    tags text[] DEFAULT '{}', made_by text DEFAULT current_user);
INSERT INTO items (name, price, kind) VALUES ('apple', 1.5, 'fruit'), ('pear', 2, 'fruit'),
       ('kale', 3.25, 'leaf'), ('bread', 4, NULL), ('jam''s', 5, 'jar');
CREATE TABLE private (secret text);
INSERT INTO private VALUES ('owner only');
CREATE TABLE notes (id serial PRIMARY KEY, body text, author text NOT NULL DEFAULT current_user);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes USING (author = current_user);
INSERT INTO notes (body, author) VALUES ('the owner''s note', current_user);
CREATE FUNCTION add_them(a int, b int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE FUNCTION cheaper_than(p numeric) RETURNS SETOF items LANGUAGE sql STABLE
    AS 'SELECT * FROM items WHERE price < p ORDER BY id';
CREATE FUNCTION whoami() RETURNS text LANGUAGE sql STABLE AS 'SELECT current_user::text';
CREATE FUNCTION sum_of(xs int[]) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT sum(x)::int FROM unnest(xs) x';
CREATE FUNCTION nothing() RETURNS int LANGUAGE sql AS 'SELECT NULL::int';
CREATE TABLE calls (n int);
CREATE FUNCTION counted(OUT n int) RETURNS SETOF int LANGUAGE plpgsql AS
    'BEGIN INSERT INTO calls VALUES (1); n := 7; RETURN NEXT; n := 8; RETURN NEXT; END';
"""


@pytest.fixture(scope="module")
def setup(kiln, w):
    project_id = pid("dataapi")
    create_project(w, project_id)
    branch = f"projects/{project_id}/branches/production"
    person = non_admin(kiln, w, "rest")
    w.postgres.create_role(parent=branch, role_id="person", role=Role(spec=RoleRoleSpec(
        postgres_role=person["name"], identity_type=RoleIdentityType.USER))).wait()  # fmt: skip
    ep = primary(w, project_id)
    with connect(kiln, w, ep) as conn:
        conn.execute(SETUP)
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON items, notes, calls TO "{person["name"]}"')
        conn.execute(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{person["name"]}"')
    database = f"{branch}/databases/databricks-postgres"
    api = w.postgres.create_data_api(parent=database, data_api=DataApi(spec=DataApiDataApiSpec(db_max_rows=100))).wait()
    token = person["w"].postgres.generate_database_credential(endpoint=ep.name).token
    yield {"project": project_id, "branch": branch, "database": database, "api": api, "person": person,
           "token": token, "ep": ep}  # fmt: skip
    w.postgres.delete_project(f"projects/{project_id}").wait()


def client(setup, token=None):
    return SyncPostgrestClient(setup["api"].status.url, headers={"Authorization": f"Bearer {token or setup['token']}"})


def test_configuration_through_the_sdk(kiln, w, setup):
    api = setup["api"]
    assert api.name == f"{setup['database']}/data-api" and api.parent == setup["database"]
    assert api.status.db_schemas == ["public"] and "public" in api.status.available_schemas
    assert api.status.db_max_rows == 100 and api.status.url.startswith(kiln.host + "/lakebase/data-api/")
    assert w.postgres.get_data_api(api.name).status.url == api.status.url
    with pytest.raises(AlreadyExists):
        w.postgres.create_data_api(parent=setup["database"], data_api=DataApi(spec=DataApiDataApiSpec())).wait()
    with pytest.raises(InvalidParameterValue):
        w.postgres.update_data_api(api.name, DataApi(spec=DataApiDataApiSpec(db_schemas=["bad-name"])),
                                   update_mask=FieldMask(field_mask=["spec.db_schemas"])).wait()  # fmt: skip
    # a person without access to the project cannot configure it
    with pytest.raises(Exception, match="no access"):
        setup["person"]["w"].postgres.get_data_api(api.name)


def test_reads_with_filters_order_paging_and_count(setup):
    c = client(setup)
    res = c.from_("items").select("id,name,price", count="exact").gte("price", 2).order("price", desc=True).limit(2).execute()
    assert [r["name"] for r in res.data] == ["jam's", "bread"] and res.count == 4
    assert c.from_("items").select("name").eq("name", "jam's").execute().data == [{"name": "jam's"}]
    assert [r["name"] for r in c.from_("items").select("name").in_("name", ["kale", "pear"]).order("name").execute().data] == ["kale", "pear"]
    assert [r["name"] for r in c.from_("items").select("name").is_("kind", "null").execute().data] == ["bread"]
    assert [r["name"] for r in c.from_("items").select("name").ilike("name", "%EA%").order("id").execute().data] == ["pear", "bread"]
    either = c.from_("items").select("name").or_("price.lt.2,kind.eq.leaf").order("id").execute().data
    assert [r["name"] for r in either] == ["apple", "kale"]
    assert c.from_("items").select("name").eq("id", 1).single().execute().data == {"name": "apple"}
    renamed = c.from_("items").select("label:name,cost:price::text").eq("id", 3).execute().data
    assert renamed == [{"label": "kale", "cost": "3.25"}]
    totals = c.from_("items").select("kind,total:price.sum(),count()").eq("kind", "fruit").execute().data
    assert totals == [{"kind": "fruit", "total": 3.5, "count": 2}]
    page = c.from_("items").select("id").order("id").range(1, 2).execute().data
    assert [r["id"] for r in page] == [2, 3]


def test_writes_upserts_and_rpc(setup):
    c = client(setup)
    made = c.from_("items").insert([{"name": "fig", "price": 6}, {"name": "lime", "price": 7}]).execute().data
    assert [(r["name"], r["made_by"]) for r in made] == [("fig", setup["person"]["name"]), ("lime", setup["person"]["name"])]
    changed = c.from_("items").update({"price": 8, "kind": "citrus"}).eq("name", "lime").execute().data
    assert [(r["name"], float(r["price"]), r["kind"]) for r in changed] == [("lime", 8.0, "citrus")]
    up = c.from_("items").upsert({"id": made[0]["id"], "name": "fig", "price": 9}).execute().data
    assert float(up[0]["price"]) == 9.0
    gone = c.from_("items").delete().eq("name", "fig").execute().data
    assert [r["name"] for r in gone] == ["fig"]
    assert c.from_("items").select("id").eq("name", "fig").execute().data == []
    with pytest.raises(APIError) as dup:
        c.from_("items").insert({"name": "apple"}).execute()
    assert dup.value.code == "23505"
    assert c.rpc("add_them", {"a": 2, "b": 40}).execute().data == 42
    cheap = c.rpc("cheaper_than", {"p": 3}).execute().data
    assert [r["name"] for r in cheap] == ["apple", "pear"]
    assert c.rpc("whoami", {}).execute().data == setup["person"]["name"]
    assert c.rpc("add_them", {"a": 1, "b": 1}, get=True).execute().data == 2


def test_grants_and_row_level_security_apply(w, setup):
    c = client(setup)
    with pytest.raises(APIError) as refused:
        c.from_("private").select("*").execute()
    assert refused.value.code == "42501"
    # row-level security: the person sees and changes only their own notes
    assert c.from_("notes").select("body").execute().data == []
    c.from_("notes").insert({"body": "mine"}).execute()
    assert [r["body"] for r in c.from_("notes").select("body").execute().data] == ["mine"]
    assert c.from_("notes").delete().neq("id", 0).execute().data[0]["body"] == "mine"
    # the owner (a workspace token works too) still sees their own note
    owner = client(setup, token=w.config.token)
    assert [r["body"] for r in owner.from_("notes").select("body").execute().data] == ["the owner's note"]


def test_http_details_and_refusals(kiln, w, setup):
    url = setup["api"].status.url
    auth = {"Authorization": f"Bearer {setup['token']}"}
    n = len(client(setup).from_("items").select("id").execute().data)
    r = requests.get(f"{url}/items?select=id&order=id&limit=2", headers={**auth, "Prefer": "count=exact"}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Range"] == f"0-1/{n}" and r.json() == [{"id": 1}, {"id": 2}]
    r = requests.head(f"{url}/items?id=eq.1", headers=auth, timeout=30)
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Range"] == "0-0/*"
    r = requests.get(f"{url}/items", headers={**auth, "Accept": "application/vnd.pgrst.object+json"}, timeout=30)
    assert r.status_code == 406 and r.json()["code"] == "PGRST116"
    r = requests.get(f"{url}/items?price=between.1.2", headers=auth, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "PGRST100"
    r = requests.get(f"{url}/items?select=id,orders(*)", headers=auth, timeout=30)
    assert r.status_code == 400 and "embedding" in r.json()["message"]
    r = requests.get(f"{url}/nope", headers=auth, timeout=30)
    assert r.status_code == 404 and r.json()["code"] == "PGRST205"
    r = requests.get(f"{url}/items", headers={**auth, "Accept-Profile": "secret"}, timeout=30)
    assert r.status_code == 406 and r.json()["code"] == "PGRST106"
    # injection attempts are names and values, never SQL
    r = requests.get(f"{url}/items?select=name&name=eq.x' OR '1'='1", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json() == []
    r = requests.get(f'{url}/items?select=id&order=id";DROP TABLE items;--', headers=auth, timeout=30)
    assert r.status_code == 400 and r.json()["code"] == "PGRST100"
    # the OpenAPI document lists the tables and functions
    doc = requests.get(f"{url}/", headers=auth, timeout=30).json()
    assert "paths" in doc, doc
    assert "/items" in doc["paths"] and "/rpc/add_them" in doc["paths"] and "price" in doc["definitions"]["items"]["properties"]
    # authentication: none, forged, another branch's credential, a user without a role on the branch
    assert requests.get(f"{url}/items", timeout=30).json()["code"] == "PGRST302"
    assert requests.get(f"{url}/items", headers={"Authorization": "Bearer kiln-pg-forged"}, timeout=30).status_code == 401
    w.postgres.create_branch(parent=f"projects/{setup['project']}", branch_id="dev", branch=Branch(
        spec=BranchSpec(source_branch=setup["branch"], no_expiry=True))).wait()  # fmt: skip
    other = w.postgres.generate_database_credential(endpoint=f"projects/{setup['project']}/branches/dev/endpoints/primary").token
    r = requests.get(f"{url}/items", headers={"Authorization": f"Bearer {other}"}, timeout=30)
    assert r.status_code == 401 and "another branch" in r.json()["message"]
    stranger = non_admin(kiln, w, "stranger")
    r = requests.get(f"{url}/items", headers={"Authorization": f"Bearer {stranger['w'].config.token}"}, timeout=30)
    assert r.status_code == 403
    # CORS only for configured origins
    pre = requests.options(f"{url}/items", headers={"Origin": "https://app.example.com"}, timeout=30)
    assert pre.status_code == 403
    w.postgres.update_data_api(setup["api"].name, DataApi(spec=DataApiDataApiSpec(
        server_cors_allowed_origins=["https://app.example.com"], server_timing_enabled=True)),
        update_mask=FieldMask(field_mask=["spec.server_cors_allowed_origins", "spec.server_timing_enabled"])).wait()  # fmt: skip
    pre = requests.options(f"{url}/items", headers={"Origin": "https://app.example.com"}, timeout=30)
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    r = requests.get(f"{url}/items?limit=1", headers={**auth, "Origin": "https://app.example.com"}, timeout=30)
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com" and "total;dur=" in r.headers["Server-Timing"]


def test_max_rows_and_disabling(w, setup):
    name = setup["api"].name
    n = len(client(setup).from_("items").select("id").execute().data)
    w.postgres.update_data_api(name, DataApi(spec=DataApiDataApiSpec(db_max_rows=2)),
                               update_mask=FieldMask(field_mask=["spec.db_max_rows"])).wait()  # fmt: skip
    assert len(client(setup).from_("items").select("id").execute().data) == 2
    w.postgres.delete_data_api(name).wait()
    with pytest.raises(NotFound):
        w.postgres.get_data_api(name)
    r = requests.get(f"{setup['api'].status.url}/items", headers={"Authorization": f"Bearer {setup['token']}"}, timeout=30)
    assert r.status_code == 404
    # enabled again: the data was never touched
    api = w.postgres.create_data_api(parent=setup["database"], data_api=DataApi(spec=DataApiDataApiSpec())).wait()
    assert len(client(setup).from_("items").select("id").execute().data) == n
    assert api.status.url == setup["api"].status.url


def test_postgrest_extras(kiln, w, setup):
    c = client(setup)
    url, auth = setup["api"].status.url, {"Authorization": f"Bearer {setup['token']}"}
    # full-text search and quantified patterns
    assert [r["name"] for r in c.from_("items").select("name").fts("name", "apple").execute().data] == ["apple"]
    found = c.from_("items").select("name").like_any_of("name", "ap*,pe*").order("name").execute().data
    assert [r["name"] for r in found] == ["apple", "pear"]
    # missing=default: a key an object lacks takes the column default (not NULL)
    rows = c.from_("items").insert([{"name": "m1", "kind": "x"}, {"name": "m2"}], default_to_null=False).execute().data
    assert sorted((r["name"], r["kind"]) for r in rows) == [("m1", "x"), ("m2", "misc")]
    rows = c.from_("items").insert([{"name": "n1", "kind": "x"}, {"name": "n2"}]).execute().data
    assert sorted((r["name"], r["kind"]) for r in rows) == [("n1", "x"), ("n2", None)]
    # rpc: an array argument, a NULL scalar, OUT columns are not arguments, a counted set runs once
    assert c.rpc("sum_of", {"xs": [1, 2, 3]}).execute().data == 6
    r = requests.post(f"{url}/rpc/nothing", json={}, headers=auth, timeout=30)
    assert r.status_code == 200 and r.json() is None
    r = requests.post(f"{url}/rpc/counted?n=eq.8", json={}, headers={**auth, "Prefer": "count=exact"}, timeout=30)
    assert r.status_code == 200 and r.json() == [{"n": 8}] and r.headers["Content-Range"] == "0-0/1", r.text
    assert c.from_("calls").select("n", count="exact").execute().count == 1
    # a backwards Range is unsatisfiable; offsets beyond the end answer no rows
    r = requests.get(f"{url}/items", headers={**auth, "Range": "5-2"}, timeout=30)
    assert r.status_code == 416
    r = requests.get(f"{url}/items?offset=18446744073709551615", headers=auth, timeout=30)
    assert r.status_code in (200, 400)
    # nothing about a database is told before authentication
    r = requests.get(f"{url.rsplit('/', 1)[0]}/no-such-db/items", timeout=30)
    assert r.status_code == 401

