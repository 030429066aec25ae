"""Error model: status/error_code pairs, SDK exception mapping, request parsing, rate limiting."""

from __future__ import annotations

import json
import re
import time

import pytest
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    InvalidParameterValue,
    NotFound,
    ResourceDoesNotExist,
)
from databricks.sdk.errors import NotImplemented as DbNotImplemented
from databricks.sdk.service.compute import ListClustersFilterBy, State

from kiln_helpers import SPARK_VERSION, assert_error, error_body, http, unique, wait_cluster_state

MISSING = "0000-000000-doesnotexist"


def cluster_snapshot(w) -> dict:
    """id -> name of every cluster (states are left out: other clusters may be mid-transition)."""
    return {c.cluster_id: c.cluster_name for c in w.clusters.list()}


@pytest.fixture(scope="module")
def terminated_cluster(kiln, w):
    """A real cluster, started once and then terminated (so it costs no engine afterwards)."""
    name = unique("errors")
    cid = kiln.track(w.clusters.create(cluster_name=name, spark_version=SPARK_VERSION, num_workers=0,
                                       autotermination_minutes=0).cluster_id)  # fmt: skip
    wait_cluster_state(w, cid, State.RUNNING, fail_on=(State.ERROR, State.TERMINATED))
    w.clusters.delete(cid)
    wait_cluster_state(w, cid, State.TERMINATED, fail_on=(State.ERROR,))
    return cid


# ---------------------------------------------------------------------------------------------
# missing resources


def test_get_missing_cluster_raises_resource_does_not_exist(w):
    with pytest.raises(ResourceDoesNotExist) as e:
        w.clusters.get(MISSING)
    assert isinstance(e.value, NotFound)
    assert MISSING in str(e.value)


@pytest.mark.parametrize("prefix", ["/api/2.0", "/api/2.1"])
def test_get_missing_cluster_wire_shape(kiln, prefix):
    r = kiln.http().get(kiln.url(f"{prefix}/clusters/get"), params={"cluster_id": MISSING})
    body = assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert re.search(r"Cluster .* does not exist", body["message"]), body
    assert MISSING in body["message"]


OPS_ON_MISSING = {
    "start": lambda w: w.clusters.start(MISSING),
    "restart": lambda w: w.clusters.restart(MISSING),
    "delete": lambda w: w.clusters.delete(MISSING),
    "permanent_delete": lambda w: w.clusters.permanent_delete(MISSING),
    "pin": lambda w: w.clusters.pin(MISSING),
    "unpin": lambda w: w.clusters.unpin(MISSING),
    "resize": lambda w: w.clusters.resize(MISSING, num_workers=1),
    "edit": lambda w: w.clusters.edit(MISSING, spark_version=SPARK_VERSION, num_workers=0),
    "events": lambda w: list(w.clusters.events(MISSING)),
}


@pytest.mark.parametrize("op", sorted(OPS_ON_MISSING))
def test_operations_on_missing_cluster_fail(w, op):
    before = cluster_snapshot(w)
    with pytest.raises(DatabricksError) as e:
        OPS_ON_MISSING[op](w)
    assert isinstance(e.value, (InvalidParameterValue, ResourceDoesNotExist)), (type(e.value), e.value.error_code)
    assert MISSING in str(e.value)
    assert MISSING not in {c.cluster_id for c in w.clusters.list()}
    assert cluster_snapshot(w) == before


# ---------------------------------------------------------------------------------------------
# request validation


def test_create_without_spark_version(w):
    name = unique("nosv")
    with pytest.raises(InvalidParameterValue) as e:
        w.clusters.create(spark_version=None, cluster_name=name, num_workers=0)
    assert "spark_version" in str(e.value)
    assert name not in {c.cluster_name for c in w.clusters.list()}


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_workers", "three"),
        ("num_workers", -1),
        ("autotermination_minutes", "soon"),
        ("autotermination_minutes", 5),  # Databricks accepts 0 or 10..43200
        ("custom_tags", ["not", "a", "map"]),
        ("spark_conf", "x=y"),
        ("spark_version", 15.4),
        ("cluster_name", {"nested": True}),
    ],
)
def test_create_with_wrong_field_type(w, field, value):
    name = unique("badtype")
    body = {"cluster_name": name, "spark_version": SPARK_VERSION, "num_workers": 0, field: value}
    with pytest.raises(InvalidParameterValue) as e:
        w.api_client.do("POST", "/api/2.1/clusters/create", body=body)
    assert field in str(e.value)
    assert name not in {c.cluster_name for c in w.clusters.list()}


def test_missing_required_field_on_cluster_op(w):
    with pytest.raises(InvalidParameterValue) as e:
        w.api_client.do("POST", "/api/2.1/clusters/start", body={})
    assert "cluster_id" in str(e.value)
    with pytest.raises(InvalidParameterValue) as e:
        w.api_client.do("POST", "/api/2.1/clusters/resize", body={"cluster_id": 12})
    assert "cluster_id" in str(e.value)


@pytest.mark.parametrize(
    "payload",
    ['{"spark_version": ', "not json at all", '{"spark_version": "15.4.x-scala2.12",}', "\x00\x01"],
    ids=["truncated", "text", "trailing-comma", "binary"],
)
def test_malformed_json_body(kiln, w, payload):
    before = cluster_snapshot(w)
    r = kiln.http().post(kiln.url("/api/2.1/clusters/create"), data=payload, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "MALFORMED_REQUEST")
    assert cluster_snapshot(w) == before


def test_malformed_json_via_sdk_is_bad_request(w):
    with pytest.raises(BadRequest) as e:
        w.api_client.do("POST", "/api/2.0/token/create", data='{"comment": ', headers={"Content-Type": "application/json"})
    assert e.value.error_code == "MALFORMED_REQUEST"


def test_non_object_json_body(kiln):
    r = kiln.http().post(kiln.url("/api/2.1/clusters/create"), json=[1, 2, 3])
    body = assert_error(r, 400)
    assert body["error_code"] in ("MALFORMED_REQUEST", "INVALID_PARAMETER_VALUE"), body


# ---------------------------------------------------------------------------------------------
# routing


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/api/2.0/no/such/endpoint"), ("POST", "/api/2.1/clusters/frobnicate"), ("GET", "/api/9.9/clusters/list")],
)
def test_unknown_path_is_endpoint_not_found(kiln, method, path):
    r = kiln.http().request(method, kiln.url(path), json={} if method == "POST" else None)
    assert_error(r, 404, "ENDPOINT_NOT_FOUND")


def test_unknown_path_via_sdk_is_not_found(w):
    with pytest.raises(NotFound) as e:
        w.api_client.do("GET", "/api/2.0/no/such/endpoint")
    assert e.value.error_code == "ENDPOINT_NOT_FOUND"


@pytest.mark.parametrize("method,path", [("GET", "/api/2.2/jobs/runs/export"), ("GET", "/api/2.0/sql/queries")])
def test_known_unimplemented_endpoint_is_501(kiln, method, path):
    r = kiln.http().request(method, kiln.url(path), json={} if method == "POST" else None)
    assert_error(r, 501, "NOT_IMPLEMENTED")


def test_unimplemented_via_sdk_raises_not_implemented(w):
    with pytest.raises(DbNotImplemented):
        list(w.queries.list())


def test_openapi_document(kiln):
    assert http().get(kiln.url("/api/openapi.json")).status_code == 401
    r = kiln.http().get(kiln.url("/api/openapi.json"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert str(doc["openapi"]).startswith("3.")
    paths = doc["paths"]
    for p in (
        "/api/2.1/clusters/create",
        "/api/2.1/clusters/get",
        "/api/2.1/clusters/list",
        "/api/2.0/clusters/list",
        "/api/2.0/token/create",
        "/api/2.0/preview/scim/v2/Me",
        "/api/1.2/clusters/list",
    ):
        assert p in paths, f"{p} missing from openapi paths"
    assert "/api/2.0/sql/queries" not in paths  # only implemented paths are listed
    assert "/api/2.0/sql/warehouses" in paths


# ---------------------------------------------------------------------------------------------
# what legacy clients and curl send


@pytest.mark.parametrize("prefix", ["/api/2.0", "/api/2.1"])
@pytest.mark.parametrize("ctype", [None, "application/x-www-form-urlencoded", "application/json", "text/json"])
def test_get_with_json_body(kiln, terminated_cluster, prefix, ctype):
    # curl --request GET .../clusters/get --data '{"cluster_id": "..."}'
    headers = {"Content-Type": ctype} if ctype else {}
    r = kiln.http().request("GET", kiln.url(f"{prefix}/clusters/get"),
                            data=json.dumps({"cluster_id": terminated_cluster}), headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["cluster_id"] == terminated_cluster
    r = kiln.http().request("GET", kiln.url(f"{prefix}/clusters/get"),
                            data=json.dumps({"cluster_id": MISSING}), headers=headers)  # fmt: skip
    body = assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert MISSING in body["message"]


def test_text_json_bodies_and_empty_object_replies(kiln, w, terminated_cluster):
    s = kiln.http()
    s.headers["Content-Type"] = "text/json"  # what databricks-cli sends
    body = json.dumps({"cluster_id": terminated_cluster})
    r = s.post(kiln.url("/api/2.0/clusters/pin"), data=body)
    assert r.status_code == 200 and r.json() == {}, r.text
    pinned = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(is_pinned=True))}
    assert terminated_cluster in pinned
    r = s.post(kiln.url("/api/2.0/clusters/unpin"), data=body)
    assert r.status_code == 200 and r.json() == {}, r.text
    pinned = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(is_pinned=True))}
    assert terminated_cluster not in pinned
    # validation still applies to text/json bodies
    r = s.post(kiln.url("/api/2.0/clusters/create"), data=json.dumps({"cluster_name": unique("tj")}))
    body = assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert "spark_version" in body["message"]


def test_delete_request_with_json_body(kiln, w):
    user = w.users.create(user_name=unique("del") + "@example.com")
    r = kiln.http().delete(kiln.url(f"/api/2.0/preview/scim/v2/Users/{user.id}"), data="{}",
                           headers={"Content-Type": "text/json"})  # fmt: skip
    assert 200 <= r.status_code < 300, r.text
    with pytest.raises(NotFound):
        w.users.get(user.id)


def test_workspace_id_header_is_accepted(kiln):
    meta = http().get(kiln.url("/.well-known/databricks-config")).json()
    r = kiln.http().get(kiln.url("/api/2.1/clusters/list"), headers={"X-Databricks-Workspace-Id": meta["workspace_id"]})
    assert r.status_code == 200, r.text
    assert isinstance(r.json().get("clusters", []), list)


def test_failed_requests_change_nothing(kiln, w, terminated_cluster):
    clusters_before = cluster_snapshot(w)
    tokens_before = {t.token_id for t in w.tokens.list()}
    s = kiln.http()
    attempts = [
        s.post(kiln.url("/api/2.1/clusters/create"), json={"cluster_name": "x", "num_workers": "many"}),
        s.post(kiln.url("/api/2.1/clusters/create"), data="{", headers={"Content-Type": "application/json"}),
        s.post(kiln.url("/api/2.1/clusters/edit"), json={"cluster_id": terminated_cluster, "num_workers": "x",
                                                         "spark_version": SPARK_VERSION}),  # fmt: skip
        s.post(kiln.url("/api/2.1/clusters/resize"), json={"cluster_id": terminated_cluster, "num_workers": "x"}),
        s.post(kiln.url("/api/2.0/token/create"), json={"comment": "x", "lifetime_seconds": "forever"}),
        s.post(kiln.url("/api/2.1/clusters/permanent-delete"), json={"cluster_id": MISSING}),
    ]
    for r in attempts:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        error_body(r)
    assert cluster_snapshot(w) == clusters_before
    assert {t.token_id for t in w.tokens.list()} == tokens_before
    assert w.clusters.get(terminated_cluster).num_workers == 0


# ---------------------------------------------------------------------------------------------
# rate limiting (separate server: 2 requests/s, burst 3)


@pytest.fixture(scope="module")
def limited(kiln_factory):
    return kiln_factory(rate_limit={"requests_per_second": 2.0, "burst": 3})


def _retry_after(r) -> int:
    h = r.headers.get("Retry-After")
    assert h is not None and h.strip().isdigit(), f"429 needs an integer Retry-After header, got {h!r}"
    return int(h)


def test_rate_limit_returns_429_with_retry_after(limited):
    s = limited.http()
    url = limited.url("/api/2.1/clusters/list")
    responses = [s.get(url) for _ in range(12)]
    statuses = [r.status_code for r in responses]
    assert statuses[:3] == [200, 200, 200], statuses  # the burst
    limited_responses = [r for r in responses if r.status_code == 429]
    assert limited_responses, statuses
    assert set(statuses) <= {200, 429}, statuses
    r = limited_responses[0]
    assert_error(r, 429, "REQUEST_LIMIT_EXCEEDED")
    wait = _retry_after(r)
    assert wait >= 1
    time.sleep(wait)  # honour the server's own hint, then it must let us in again
    assert s.get(url).status_code == 200


def test_rate_limited_posts_are_not_executed(limited):
    s = limited.http()
    tag = unique("burst")
    responses = [s.post(limited.url("/api/2.0/token/create"), json={"comment": f"{tag}-{i}"}) for i in range(10)]
    ok = [i for i, r in enumerate(responses) if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 429]
    assert rejected, [r.status_code for r in responses]
    assert len(ok) + len(rejected) == len(responses)
    for r in rejected:
        _retry_after(r)
    # read back (itself rate limited: follow Retry-After)
    while True:
        listing = s.get(limited.url("/api/2.0/token/list"))
        if listing.status_code != 429:
            break
        time.sleep(_retry_after(listing))
    assert listing.status_code == 200, listing.text
    comments = sorted(t["comment"] for t in listing.json().get("token_infos", []) if t.get("comment", "").startswith(tag))
    assert comments == sorted(f"{tag}-{i}" for i in ok)


def test_sdk_rides_out_rate_limit_without_duplicates(limited):
    c = limited.client()
    tag = unique("sdk")
    for i in range(5):  # exceeds the burst; the SDK retries 429s after Retry-After
        c.tokens.create(comment=f"{tag}-{i}")
    comments = sorted(t.comment for t in c.tokens.list() if (t.comment or "").startswith(tag))
    assert comments == [f"{tag}-{i}" for i in range(5)]
