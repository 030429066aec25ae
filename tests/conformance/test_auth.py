"""Authentication: PAT, Basic, OAuth M2M, token lifecycle, SCIM identities."""

from __future__ import annotations

import base64
import stat
import time

import pytest
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    NotFound,
    PermissionDenied,
    ResourceConflict,
    Unauthenticated,
)

from kiln_helpers import SPARK_VERSION, assert_error, http, unique

SCIM_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"

# Routes that need credentials (a representative cross-section, including a cluster mutation).
PROTECTED = [
    ("GET", "/api/2.1/clusters/list", None),
    ("GET", "/api/2.0/clusters/list", None),
    ("GET", "/api/2.1/clusters/get?cluster_id=0000-000000-nope", None),
    ("POST", "/api/2.1/clusters/create", {"cluster_name": "unauth", "spark_version": SPARK_VERSION, "num_workers": 0}),
    ("POST", "/api/2.0/clusters/start", {"cluster_id": "0000-000000-nope"}),
    ("GET", "/api/2.1/clusters/spark-versions", None),
    ("GET", "/api/2.0/preview/scim/v2/Me", None),
    ("GET", "/api/2.0/preview/scim/v2/Users", None),
    ("GET", "/api/2.0/token/list", None),
    ("POST", "/api/2.0/token/create", {"comment": "unauth"}),
    ("GET", "/api/1.2/clusters/list", None),
    ("GET", "/api/openapi.json", None),
]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ---------------------------------------------------------------------------------------------
# unauthenticated surface


def test_health_needs_no_auth(kiln):
    r = http().get(kiln.url("/health"))
    assert r.status_code == 200


def test_host_metadata_discovery(kiln):
    r = http().get(kiln.url("/.well-known/databricks-config"))
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["oidc_endpoint"].rstrip("/") == kiln.host + "/oidc"
    assert isinstance(meta["workspace_id"], str) and meta["workspace_id"].isdigit(), meta

    r = http().get(kiln.url("/oidc/.well-known/oauth-authorization-server"))
    assert r.status_code == 200, r.text
    oidc = r.json()
    assert oidc["token_endpoint"] == kiln.host + "/oidc/v1/token"
    assert isinstance(oidc.get("authorization_endpoint"), str) and oidc["authorization_endpoint"]


@pytest.mark.parametrize("method,path,body", PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_missing_credentials_is_401(kiln, method, path, body):
    r = http().request(method, kiln.url(path), json=body)
    assert_error(r, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer dapi00000000000000000000000000000000",
        "Token {token}",  # right secret, wrong scheme
        "{token}",  # no scheme at all
        "Basic not-base64!!",
        "basic:admin:wrong",
    ],
)
def test_bad_authorization_header_is_401(kiln, header):
    r = http().get(kiln.url("/api/2.1/clusters/list"), headers={"Authorization": header.format(token=kiln.token)})
    assert_error(r, 401, "UNAUTHENTICATED")


def test_unauthenticated_create_changes_nothing(kiln, w):
    name = unique("unauth-create")
    r = http().post(kiln.url("/api/2.1/clusters/create"), json={"cluster_name": name, "spark_version": SPARK_VERSION})
    assert r.status_code == 401
    r = http("dapi-bogus").post(kiln.url("/api/2.0/token/create"), json={"comment": name})
    assert r.status_code == 401
    assert name not in {c.cluster_name for c in w.clusters.list()}
    assert name not in {t.comment for t in w.tokens.list()}


def test_sdk_without_credentials_raises_unauthenticated(w):
    # the SDK always authenticates; a request-level no-op auth strips the Authorization header
    with pytest.raises(Unauthenticated):
        w.api_client.do("GET", "/api/2.1/clusters/list", auth=lambda r: r)
    with pytest.raises(Unauthenticated):
        w.api_client.do("GET", "/api/2.0/preview/scim/v2/Me", auth=lambda r: r)


def test_sdk_bad_token_raises_unauthenticated(kiln):
    bad = kiln.client(token="dapi" + "f" * 32)
    with pytest.raises(Unauthenticated):
        bad.current_user.me()
    with pytest.raises(Unauthenticated):
        list(bad.clusters.list())
    # authentication is checked before the cluster lookup
    with pytest.raises(Unauthenticated):
        bad.clusters.get("0000-000000-doesnotexist")
    with pytest.raises(Unauthenticated):
        bad.clusters.start("0000-000000-doesnotexist")
    with pytest.raises(Unauthenticated):
        list(bad.tokens.list())


# ---------------------------------------------------------------------------------------------
# admin identity, PAT and Basic


def test_admin_token_file(kiln):
    f = kiln.data_dir / "admin.token"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert f.read_text().strip() == kiln.token


def test_pat_identifies_admin(w):
    me = w.current_user.me()
    assert me.user_name == "admin"
    assert me.id


def test_scim_me_wire_shape_and_org_id_header(kiln, w):
    r = kiln.http().get(kiln.url("/api/2.0/preview/scim/v2/Me"))
    assert r.status_code == 200, r.text
    org = r.headers.get("X-Databricks-Org-Id")
    assert org and org.isdigit(), dict(r.headers)
    meta = http().get(kiln.url("/.well-known/databricks-config")).json()
    assert org == meta["workspace_id"]
    body = r.json()
    assert body["userName"] == "admin"
    assert "user_name" not in body  # SCIM is camelCase
    assert SCIM_USER_SCHEMA in body["schemas"]
    assert isinstance(body["id"], str) and body["id"]
    # SDK helpers that read the header / host metadata agree
    assert w.get_workspace_id() == int(org)
    assert w.api_client.do("GET", "/api/2.0/preview/scim/v2/Me", response_headers=["X-Databricks-Org-Id"])[
        "X-Databricks-Org-Id"
    ] == org


def test_basic_auth_with_user_and_pat(kiln):
    c = kiln.client(username="admin", password=kiln.token)
    assert c.current_user.me().user_name == "admin"
    assert isinstance(list(c.clusters.list()), list)


def test_basic_auth_with_user_and_password(kiln):
    assert kiln.admin_password
    c = kiln.client(username="admin", password=kiln.admin_password)
    assert c.current_user.me().user_name == "admin"


def test_basic_auth_wrong_password(kiln):
    with pytest.raises(Unauthenticated):
        kiln.client(username="admin", password="definitely-wrong").current_user.me()
    r = http().get(kiln.url("/api/2.1/clusters/list"), headers={"Authorization": basic("admin", "wrong")})
    assert_error(r, 401, "UNAUTHENTICATED")
    r = http().get(kiln.url("/api/2.1/clusters/list"), headers={"Authorization": basic("nobody", kiln.admin_password)})
    assert_error(r, 401, "UNAUTHENTICATED")


# ---------------------------------------------------------------------------------------------
# Token API 2.0


def test_token_create_list_delete(kiln, w):
    comment = unique("tok")
    created = w.tokens.create(comment=comment, lifetime_seconds=3600)
    info = created.token_info
    assert created.token_value and created.token_value.startswith("dapi")
    assert created.token_value != kiln.token
    assert info.token_id and info.comment == comment
    assert abs(info.creation_time / 1000 - time.time()) < 600  # epoch milliseconds, not seconds
    assert abs((info.expiry_time - info.creation_time) - 3600 * 1000) <= 1000

    user = kiln.client(token=created.token_value)
    assert user.current_user.me().user_name == "admin"
    assert isinstance(list(user.clusters.list()), list)

    listed = {t.token_id: t for t in w.tokens.list()}
    assert info.token_id in listed
    assert listed[info.token_id].comment == comment
    raw = kiln.http().get(kiln.url("/api/2.0/token/list"))
    assert raw.status_code == 200 and created.token_value not in raw.text  # secrets are never listed

    w.tokens.delete(info.token_id)
    assert info.token_id not in {t.token_id for t in w.tokens.list()}
    with pytest.raises(Unauthenticated):
        user.current_user.me()
    with pytest.raises(Unauthenticated):
        list(user.clusters.list())
    with pytest.raises(Unauthenticated):
        user.clusters.get("0000-000000-doesnotexist")


def test_token_without_lifetime_does_not_expire(w):
    created = w.tokens.create(comment=unique("forever"))
    try:
        assert created.token_info.expiry_time == -1
    finally:
        w.tokens.delete(created.token_info.token_id)


def test_expired_token_is_rejected(kiln, w):
    created = w.tokens.create(comment=unique("short"), lifetime_seconds=1)
    info = created.token_info
    assert 0 < info.expiry_time - info.creation_time <= 2000
    # wait (precondition, not an assertion) until the server-reported expiry has passed
    time.sleep(max(0.0, info.expiry_time / 1000 - time.time()) + 1.1)
    short = kiln.client(token=created.token_value)
    with pytest.raises(Unauthenticated):
        short.current_user.me()
    with pytest.raises(Unauthenticated):
        list(short.clusters.list())
    r = http(created.token_value).get(kiln.url("/api/2.0/token/list"))
    assert_error(r, 401, "UNAUTHENTICATED")


def test_delete_unknown_token_fails(w):
    with pytest.raises(DatabricksError) as e:
        w.tokens.delete("no-such-token-id")
    assert isinstance(e.value, (NotFound, BadRequest)), type(e.value)


# ---------------------------------------------------------------------------------------------
# SCIM users and a second, non-admin identity


def create_user_with_password(w, user_name: str, password: str) -> str:
    body = {
        "schemas": [SCIM_USER_SCHEMA],
        "userName": user_name,
        "displayName": user_name.split("@")[0],
        "password": password,
    }
    res = w.api_client.do("POST", "/api/2.0/preview/scim/v2/Users", body=body)
    assert res["userName"] == user_name
    assert "password" not in res  # never echoed
    return res["id"]


def test_users_crud(kiln, w):
    name = unique("carol") + "@example.com"
    u = w.users.create(user_name=name, display_name="Carol Example")
    assert u.id and u.user_name == name and u.display_name == "Carol Example"
    assert w.users.get(u.id).user_name == name

    # paging contract the SDK relies on: users.list() walks startIndex until a page is empty,
    # so a start index past the end must return no Resources (or the SDK loops forever)
    r = kiln.http().get(kiln.url("/api/2.0/preview/scim/v2/Users"), params={"startIndex": 1, "count": 10000})
    assert r.status_code == 200, r.text
    total = len(r.json().get("Resources", []))
    assert total >= 2
    r = kiln.http().get(kiln.url("/api/2.0/preview/scim/v2/Users"), params={"startIndex": total + 1, "count": 10})
    assert r.status_code == 200 and not r.json().get("Resources"), r.text
    r = kiln.http().get(kiln.url("/api/2.0/preview/scim/v2/Users"), params={"startIndex": 1, "count": 1})
    assert len(r.json()["Resources"]) == 1

    names = {x.user_name for x in w.users.list()}
    assert {"admin", name} <= names

    with pytest.raises((ResourceConflict, BadRequest)):
        w.users.create(user_name=name)

    w.users.delete(u.id)
    with pytest.raises(NotFound):
        w.users.get(u.id)
    assert name not in {x.user_name for x in w.users.list()}


@pytest.fixture(scope="module")
def alice(kiln, w):
    name = unique("alice") + "@example.com"
    password = "pw-" + unique("alice")
    uid = create_user_with_password(w, name, password)
    return {"name": name, "password": password, "id": uid}


def test_non_admin_basic_login(kiln, alice):
    c = kiln.client(username=alice["name"], password=alice["password"])
    me = c.current_user.me()
    assert me.user_name == alice["name"]
    assert me.id == alice["id"]
    with pytest.raises(Unauthenticated):
        kiln.client(username=alice["name"], password="wrong").current_user.me()


def test_non_admin_gets_own_token(kiln, w, alice):
    basic_client = kiln.client(username=alice["name"], password=alice["password"])
    created = basic_client.tokens.create(comment="alice laptop", lifetime_seconds=600)
    pat_client = kiln.client(token=created.token_value)
    assert pat_client.current_user.me().user_name == alice["name"]

    mine = {t.token_id for t in pat_client.tokens.list()}
    assert created.token_info.token_id in mine
    admin_tokens = {t.token_id for t in w.tokens.list()}
    assert not (mine & admin_tokens), "a user must only list their own tokens"

    # a user cannot revoke somebody else's token
    victim = w.tokens.create(comment=unique("admin-victim"))
    try:
        with pytest.raises(DatabricksError):
            pat_client.tokens.delete(victim.token_info.token_id)
        assert kiln.client(token=victim.token_value).current_user.me().user_name == "admin"
    finally:
        w.tokens.delete(victim.token_info.token_id)


def test_non_admin_cannot_manage_identities(kiln, w, alice):
    c = kiln.client(username=alice["name"], password=alice["password"])
    intruder = unique("mallory") + "@example.com"
    with pytest.raises(PermissionDenied):
        c.users.create(user_name=intruder)
    with pytest.raises(PermissionDenied):
        c.service_principals.create(display_name=unique("mallory-sp"))
    admin_id = w.current_user.me().id
    with pytest.raises(PermissionDenied):
        c.users.delete(admin_id)
    # nothing changed
    names = {u.user_name for u in w.users.list()}
    assert "admin" in names and intruder not in names
    assert w.users.get(admin_id).user_name == "admin"


def test_deleted_user_loses_access(kiln, w):
    name = unique("bob") + "@example.com"
    password = "pw-" + unique("bob")
    uid = create_user_with_password(w, name, password)
    tok = kiln.client(username=name, password=password).tokens.create(comment="bob").token_value
    assert kiln.client(token=tok).current_user.me().user_name == name
    w.users.delete(uid)
    with pytest.raises(Unauthenticated):
        kiln.client(token=tok).current_user.me()
    with pytest.raises(Unauthenticated):
        kiln.client(username=name, password=password).current_user.me()


# ---------------------------------------------------------------------------------------------
# OAuth M2M with a service principal


@pytest.fixture(scope="module")
def service_principal(w):
    display = unique("robot")
    sp = w.service_principals.create(display_name=display)
    assert sp.id and sp.application_id and sp.display_name == display
    secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id)
    assert secret.secret
    return {"sp": sp, "secret": secret.secret, "display": display}


def test_service_principal_listed(kiln, w, service_principal):
    sp = service_principal["sp"]
    # same startIndex contract as Users: the SDK pages until an empty page
    url = kiln.url("/api/2.0/preview/scim/v2/ServicePrincipals")
    total = len(kiln.http().get(url, params={"startIndex": 1, "count": 10000}).json().get("Resources", []))
    assert total >= 1
    r = kiln.http().get(url, params={"startIndex": total + 1, "count": 10})
    assert r.status_code == 200 and not r.json().get("Resources"), r.text
    assert w.service_principals.get(sp.id).application_id == sp.application_id
    assert sp.application_id in {s.application_id for s in w.service_principals.list()}


def test_oauth_m2m_end_to_end_with_sdk(kiln, service_principal):
    sp = service_principal["sp"]
    m2m = kiln.client(client_id=sp.application_id, client_secret=service_principal["secret"], auth_type="oauth-m2m")
    me = m2m.current_user.me()
    assert me.user_name == sp.application_id
    assert me.display_name == service_principal["display"]
    assert isinstance(list(m2m.clusters.list()), list)


def test_oauth_token_endpoint_wire(kiln, service_principal):
    sp = service_principal["sp"]
    r = http().post(
        kiln.url("/oidc/v1/token"),
        auth=(sp.application_id, service_principal["secret"]),
        data={"grant_type": "client_credentials", "scope": "all-apis"},
    )
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "Bearer"
    assert tok["expires_in"] == 3600
    assert isinstance(tok["access_token"], str) and tok["access_token"]
    me = http(tok["access_token"]).get(kiln.url("/api/2.0/preview/scim/v2/Me"))
    assert me.status_code == 200 and me.json()["userName"] == sp.application_id


def test_oauth_token_endpoint_rejects_bad_secret(kiln, service_principal):
    sp = service_principal["sp"]
    r = http().post(
        kiln.url("/oidc/v1/token"),
        auth=(sp.application_id, "wrong-secret"),
        data={"grant_type": "client_credentials", "scope": "all-apis"},
    )
    assert r.status_code in (400, 401), r.text
    assert "json" in r.headers.get("Content-Type", ""), "the SDK parses token errors by Content-Type"
    assert "access_token" not in r.json()
    r = http().post(kiln.url("/oidc/v1/token"), data={"grant_type": "client_credentials"})  # no client auth
    assert r.status_code in (400, 401), r.text


def test_deleted_service_principal_cannot_get_tokens(kiln, w):
    sp = w.service_principals.create(display_name=unique("doomed"))
    secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id).secret
    form = {"grant_type": "client_credentials", "scope": "all-apis"}
    ok = http().post(kiln.url("/oidc/v1/token"), auth=(sp.application_id, secret), data=form)
    assert ok.status_code == 200, ok.text
    access = ok.json()["access_token"]
    w.service_principals.delete(sp.id)
    r = http().post(kiln.url("/oidc/v1/token"), auth=(sp.application_id, secret), data=form)
    assert r.status_code in (400, 401), r.text
    assert_error(http(access).get(kiln.url("/api/2.0/preview/scim/v2/Me")), 401, "UNAUTHENTICATED")
