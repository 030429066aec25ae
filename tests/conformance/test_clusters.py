"""Clusters API (2.1 via the SDK, 2.0 legacy, 1.2) backed by real Sail engines.

Clusters are shared between tests to keep wall time down; every test that needs a RUNNING
cluster calls ensure_running() first, and every lifecycle test checks the events it caused
itself, so tests also pass when run alone (-k).
"""

from __future__ import annotations

import base64
import os
import signal
import time

import pytest
import requests
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    InvalidState,
    NotFound,
    ResourceDoesNotExist,
)
from databricks.sdk.mixins.compute import SemVer
from databricks.sdk.service.compute import (
    AutoScale,
    EventType,
    GetEventsOrder,
    ListClustersFilterBy,
    ListClustersSortBy,
    ListClustersSortByDirection,
    ListClustersSortByField,
    State,
    TerminationReasonCode,
)

from kiln_helpers import (
    CLUSTER_TIMEOUT,
    SDK_TIMEOUT,
    SPARK_VERSION,
    assert_error,
    connect_url,
    engine_main_proc,
    descends_from,
    http,
    is_alive,
    kiln_engine_procs,
    port_accepts,
    spark_sql,
    unique,
    url_port,
    wait_cluster_state,
    wait_for,
)

BAD = (State.ERROR, State.TERMINATED)


def now_ms() -> int:
    return int(time.time() * 1000)


def ensure_running(w, cid):
    c = w.clusters.get(cid)
    if c.state == State.RUNNING:
        return c
    if c.state == State.TERMINATING:
        wait_cluster_state(w, cid, State.TERMINATED, fail_on=(State.ERROR,))
        c = w.clusters.get(cid)
    if c.state == State.TERMINATED:
        w.clusters.start(cid)
    return wait_cluster_state(w, cid, State.RUNNING, fail_on=BAD)


def event_types(events) -> list[str]:
    """Wire type strings of raw event dicts (the SDK maps unknown types to None)."""
    return [e.get("type") for e in events]


def raw_events(w, cid) -> list[dict]:
    """All events of a cluster, oldest first, as wire JSON (follows next_page)."""
    body = {"cluster_id": cid, "order": "ASC", "limit": 500}
    out = []
    while True:
        page = w.api_client.do("POST", "/api/2.1/clusters/events", body=body)
        out += page.get("events", [])
        if not page.get("next_page"):
            return out
        body = page["next_page"]


def events_since(w, cid, t0: int) -> list[dict]:
    return [e for e in raw_events(w, cid) if e["timestamp"] >= t0]


def termination_event_reason(events: list[dict]) -> dict:
    """The reason carried by the last TERMINATING/TERMINATED event.

    Databricks puts `details.reason` on TERMINATING (the SDK's EventType has no TERMINATED).
    """
    ends = [e for e in events if e.get("type") in ("TERMINATING", "TERMINATED") and (e.get("details") or {}).get("reason")]
    assert ends, f"no TERMINATING/TERMINATED event with details.reason in {event_types(events)}"
    return ends[-1]["details"]["reason"]


def assert_subsequence(expected: list[str], actual: list[str]):
    it = iter(actual)
    missing = [x for x in expected if x not in it]
    assert not missing, f"expected event subsequence {expected} in {actual}"


def assert_engine_gone(cid, old=None, old_port=None):
    left = kiln_engine_procs(cid)
    assert not left, f"engine processes still alive for {cid}: {left}"
    if old is not None:
        # an exiting process drops out of kiln_engine_procs (its environ is unreadable) a
        # moment before it is gone
        wait_for(lambda: not is_alive(old), 10, f"old engine {old} to be gone", 0.05)
    if old_port is not None:
        assert not port_accepts(old_port), f"old Spark Connect port {old_port} still accepts connections"


def create_fast(w, kiln, **kw) -> str:
    spec = dict(spark_version=SPARK_VERSION, num_workers=0, autotermination_minutes=0)
    spec.update(kw)
    return kiln.track(w.clusters.create(**spec).cluster_id)


def basic_admin(kiln) -> str:
    return "Basic " + base64.b64encode(f"admin:{kiln.token}".encode()).decode()


# =============================================================================================
# catalogue endpoints


def test_spark_versions_and_select_spark_version(w):
    versions = w.clusters.spark_versions().versions
    keys = {v.key for v in versions}
    assert {"15.4.x-scala2.12", "16.4.x-scala2.12"} <= keys, keys
    assert all(v.key and v.name for v in versions)
    lts = [v.key for v in versions if "LTS" in v.name and "-scala2.12" in v.key and "-ml-" not in v.key
           and "-gpu-" not in v.key and "-photon-" not in v.key and "-aarch64-" not in v.key
           and "-hls-" not in v.key and "apache-spark-" not in v.key and "Beta" not in v.name]  # fmt: skip
    assert lts, "no LTS versions advertised"
    chosen = w.clusters.select_spark_version(latest=True, long_term_support=True)
    assert chosen == max(lts, key=SemVer.parse)
    assert w.clusters.select_spark_version() in keys


def test_node_types_and_select_node_type(w):
    types = w.clusters.list_node_types().node_types
    assert types
    for nt in types:
        assert nt.node_type_id and nt.num_cores > 0 and nt.memory_mb > 0, nt
        # the SDK sorts on these; mixed None/values would make select_node_type raise TypeError
        assert isinstance(nt.is_deprecated, bool), nt
        assert isinstance(nt.num_gpus, int), nt
    ids = {nt.node_type_id for nt in types}
    smallest = w.clusters.select_node_type()
    assert smallest in ids
    assert w.clusters.select_node_type(local_disk=False) in ids
    live = [nt for nt in types if not nt.is_deprecated] or types
    assert next(nt for nt in types if nt.node_type_id == smallest).num_cores == min(nt.num_cores for nt in live)


def test_legacy_20_catalogue_paths(kiln):
    s = kiln.http()
    r = s.get(kiln.url("/api/2.0/clusters/spark-versions"))
    assert r.status_code == 200 and any(v["key"] == SPARK_VERSION for v in r.json()["versions"]), r.text
    r = s.get(kiln.url("/api/2.0/clusters/list-node-types"))
    assert r.status_code == 200 and r.json()["node_types"], r.text


# =============================================================================================
# the main cluster: full lifecycle through the SDK waiters


@pytest.fixture(scope="module")
def main(kiln, w, node_type_id):
    name = unique("main")
    waiter = w.clusters.create(
        cluster_name=name,
        spark_version=SPARK_VERSION,
        node_type_id=node_type_id,
        num_workers=0,
        autotermination_minutes=0,
        custom_tags={"team": "conformance"},
    )
    cid = kiln.track(waiter.cluster_id)
    first = w.clusters.get(cid)  # right after create returned
    running = waiter.result(timeout=SDK_TIMEOUT)  # the SDK's own waiter
    yield {"id": cid, "name": name, "first": first, "running": running, "node_type_id": node_type_id}
    try:
        w.clusters.permanent_delete(cid)
    except DatabricksError:
        pass


def test_create_is_pending_then_running(main, w):
    first, c = main["first"], main["running"]
    # create applies PENDING before replying; a fast engine may already be RUNNING by the first GET
    assert first.state in (State.PENDING, State.RUNNING), first.state
    assert c.state == State.RUNNING
    assert c.cluster_id == main["id"]
    assert c.cluster_name == main["name"]
    assert c.spark_version == SPARK_VERSION
    assert c.node_type_id == main["node_type_id"]
    assert c.num_workers == 0
    assert (c.custom_tags or {}).get("team") == "conformance"
    assert c.creator_user_name == "admin"
    assert abs(c.start_time - now_ms()) < 10 * 60 * 1000  # epoch milliseconds
    assert c.driver is not None and c.driver.host_private_ip == "127.0.0.1"
    connect_url(c)
    types = event_types(raw_events(w, main["id"]))
    assert types and types[0] == "CREATING", types
    assert_subsequence(["CREATING", "RUNNING"], types)


def test_running_cluster_has_a_live_engine(kiln, w, main):
    c = ensure_running(w, main["id"])
    engine = engine_main_proc(main["id"])
    assert engine is not None, "no process with KILN_CLUSTER_ID=<id> in its environment"
    assert engine.is_engine_cmd, engine.cmdline
    assert descends_from(engine.pid, kiln.proc.pid), "engine is not a child of this kiln server"
    assert port_accepts(url_port(connect_url(c)))


def test_spark_connect_query(w, main):
    c = ensure_running(w, main["id"])
    rows = spark_sql(connect_url(c), "SELECT 41+1 AS x")
    assert rows[0].x == 42


def test_start_on_running_cluster_is_invalid_state(kiln, w, main):
    ensure_running(w, main["id"])
    engine = engine_main_proc(main["id"])
    with pytest.raises(InvalidState):
        w.clusters.start(main["id"])
    r = kiln.http().post(kiln.url("/api/2.0/clusters/start"), json={"cluster_id": main["id"]})
    assert_error(r, 400, "INVALID_STATE")
    assert w.clusters.get(main["id"]).state == State.RUNNING
    assert is_alive(engine)
    w.clusters.ensure_cluster_is_running(main["id"])  # SDK mixin: no-op on RUNNING


def test_restart_replaces_engine(w, main):
    ensure_running(w, main["id"])
    old = engine_main_proc(main["id"])
    t0 = now_ms()
    c = w.clusters.restart_and_wait(main["id"], timeout=SDK_TIMEOUT)
    assert c.state == State.RUNNING
    new = engine_main_proc(main["id"])
    assert new is not None and (new.pid, new.starttime) != (old.pid, old.starttime), "restart kept the old engine"
    assert not is_alive(old)
    assert spark_sql(connect_url(c), "SELECT 'after restart' AS s")[0].s == "after restart"
    assert_subsequence(["RESTARTING", "RUNNING"], event_types(events_since(w, main["id"], t0)))


def test_edit_running_cluster(w, main):
    ensure_running(w, main["id"])
    t0 = now_ms()
    new_name = unique("edited")
    c = w.clusters.edit_and_wait(
        main["id"],
        spark_version="16.4.x-scala2.12",
        cluster_name=new_name,
        node_type_id=main["node_type_id"],
        num_workers=0,
        autotermination_minutes=0,
        custom_tags={"team": "edited"},
        timeout=SDK_TIMEOUT,
    )
    assert c.state == State.RUNNING
    got = w.clusters.get(main["id"])
    assert got.cluster_name == new_name
    assert got.spark_version == "16.4.x-scala2.12"
    assert (got.custom_tags or {}).get("team") == "edited"
    assert "EDITED" in event_types(events_since(w, main["id"], t0))
    assert spark_sql(connect_url(got), "SELECT 1 AS one")[0].one == 1


def test_resize(kiln, w, main):
    ensure_running(w, main["id"])
    t0 = now_ms()
    c = w.clusters.resize_and_wait(main["id"], num_workers=2, timeout=SDK_TIMEOUT)
    assert c.state == State.RUNNING and c.num_workers == 2
    assert "RESIZING" in event_types(events_since(w, main["id"], t0))
    c = w.clusters.resize_and_wait(main["id"], autoscale=AutoScale(min_workers=1, max_workers=3), timeout=SDK_TIMEOUT)
    assert c.autoscale is not None and (c.autoscale.min_workers, c.autoscale.max_workers) == (1, 3)
    # legacy 2.0 path back to a fixed size
    r = kiln.http().post(kiln.url("/api/2.0/clusters/resize"), json={"cluster_id": main["id"], "num_workers": 0})
    assert r.status_code == 200 and r.json() == {}, r.text
    c = wait_cluster_state(w, main["id"], State.RUNNING, fail_on=BAD)
    assert c.num_workers == 0


def test_pin_unpin(w, main):
    t0 = now_ms()
    w.clusters.pin(main["id"])
    w.clusters.pin(main["id"])  # idempotent
    pinned = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(is_pinned=True))}
    assert main["id"] in pinned
    w.clusters.unpin(main["id"])
    pinned = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(is_pinned=True))}
    assert main["id"] not in pinned
    unpinned = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(is_pinned=False))}
    assert main["id"] in unpinned
    assert_subsequence(["PINNED", "UNPINNED"], event_types(events_since(w, main["id"], t0)))


def test_delete_terminates_and_stops_engine(w, main):
    c = ensure_running(w, main["id"])
    old = engine_main_proc(main["id"])
    old_port = url_port(connect_url(c))
    t0 = now_ms()
    c = w.clusters.delete_and_wait(main["id"], timeout=SDK_TIMEOUT)
    assert c.state == State.TERMINATED
    assert c.termination_reason is not None and c.termination_reason.code == TerminationReasonCode.USER_REQUEST
    assert c.terminated_time and c.terminated_time >= t0 - 1000
    # TERMINATED means the engine is gone and its endpoint refuses connections
    assert_engine_gone(main["id"], old, old_port)
    evs = events_since(w, main["id"], t0)
    assert "TERMINATING" in event_types(evs)
    assert termination_event_reason(evs)["code"] == "USER_REQUEST"
    terminated = {x.cluster_id for x in w.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.TERMINATED]))}
    assert main["id"] in terminated
    # config is retained
    assert w.clusters.get(main["id"]).spark_version


def test_operations_requiring_running_fail_on_terminated(w, main):
    c = w.clusters.get(main["id"])
    if c.state != State.TERMINATED:
        w.clusters.delete(main["id"])
        wait_cluster_state(w, main["id"], State.TERMINATED, fail_on=(State.ERROR,))
    with pytest.raises(BadRequest):
        w.clusters.resize(main["id"], num_workers=3)
    c = w.clusters.get(main["id"])
    assert c.state == State.TERMINATED and c.num_workers != 3
    assert not kiln_engine_procs(main["id"])


def test_change_owner(w, main):
    c = w.clusters.get(main["id"])
    if c.state != State.TERMINATED:
        w.clusters.delete(main["id"])
        wait_cluster_state(w, main["id"], State.TERMINATED, fail_on=(State.ERROR,))
    user = w.users.create(user_name=unique("owner") + "@example.com")
    with pytest.raises(DatabricksError):
        w.clusters.change_owner(main["id"], owner_username=unique("ghost") + "@example.com")
    assert w.clusters.get(main["id"]).creator_user_name == "admin"
    w.clusters.change_owner(main["id"], owner_username=user.user_name)
    assert w.clusters.get(main["id"]).creator_user_name == user.user_name
    w.clusters.change_owner(main["id"], owner_username="admin")
    assert w.clusters.get(main["id"]).creator_user_name == "admin"


def test_start_terminated_cluster(w, main):
    c = w.clusters.get(main["id"])
    if c.state != State.TERMINATED:
        w.clusters.delete(main["id"])
        wait_cluster_state(w, main["id"], State.TERMINATED, fail_on=(State.ERROR,))
    t0 = now_ms()
    c = w.clusters.start_and_wait(main["id"], timeout=SDK_TIMEOUT)
    assert c.state == State.RUNNING
    assert c.termination_reason is None or c.termination_reason.code is None
    assert engine_main_proc(main["id"]) is not None
    assert spark_sql(connect_url(c), "SELECT 7*6 AS x")[0].x == 42
    assert_subsequence(["STARTING", "RUNNING"], event_types(events_since(w, main["id"], t0)))


def test_events_order_and_paging(kiln, w, main):
    cid = main["id"]
    for _ in range(2):  # make sure there are enough events to page through
        w.clusters.pin(cid)
        w.clusters.unpin(cid)
    asc = list(w.clusters.events(cid, order=GetEventsOrder.ASC))
    assert len(asc) >= 6
    assert all(e.cluster_id == cid for e in asc)
    stamps = [e.timestamp for e in asc]
    assert all(isinstance(t, int) and t > 1_500_000_000_000 for t in stamps), stamps  # epoch ms
    assert stamps == sorted(stamps)
    assert asc[0].type == EventType.CREATING
    key = [(e.timestamp, e.type) for e in asc]

    desc = list(w.clusters.events(cid, order=GetEventsOrder.DESC))
    assert [(e.timestamp, e.type) for e in desc] == key[::-1]

    # legacy offset/limit paging: the SDK re-POSTs next_page verbatim until it is absent
    paged = list(w.clusters.events(cid, order=GetEventsOrder.ASC, limit=2))
    assert [(e.timestamp, e.type) for e in paged] == key

    r = kiln.http().post(kiln.url("/api/2.1/clusters/events"), json={"cluster_id": cid, "order": "ASC", "limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert len(page["events"]) == 2
    assert page.get("next_page"), page
    assert page["next_page"]["cluster_id"] == cid
    if "total_count" in page:
        assert page["total_count"] == len(asc)
    r = kiln.http().post(kiln.url("/api/2.1/clusters/events"),
                         json={"cluster_id": cid, "order": "ASC", "limit": 500})  # fmt: skip
    assert not r.json().get("next_page"), "the last page must not carry next_page"

    only = list(w.clusters.events(cid, event_types=[EventType.PINNED]))
    assert only and all(e.type == EventType.PINNED for e in only)
    assert len(only) == sum(1 for e in asc if e.type == EventType.PINNED)

    # legacy 2.0 path
    r = kiln.http().post(kiln.url("/api/2.0/clusters/events"), json={"cluster_id": cid, "order": "ASC", "limit": 500})
    assert [e["type"] for e in r.json()["events"]] == event_types(raw_events(w, cid))


def test_event_types_are_known_to_the_sdk(w, main):
    # the SDK turns unknown enum strings into None, so SDK users would see events without a type
    wire = event_types(raw_events(w, main["id"]))
    known = {t.value for t in EventType}
    unknown = sorted({t for t in wire if t not in known})
    assert not unknown, f"event types the SDK cannot represent: {unknown} (known: TERMINATING carries the reason)"


# =============================================================================================
# list / filter / sort / paging, REST 1.2 and legacy clients, on three more clusters


@pytest.fixture(scope="module")
def trio(kiln, w):
    prefix = unique("trio")
    names = {k: f"{prefix}-{k}" for k in ("b", "c", "a")}  # created out of name order
    ids = {k: create_fast(w, kiln, cluster_name=n) for k, n in names.items()}
    for cid in ids.values():
        wait_cluster_state(w, cid, State.RUNNING, fail_on=BAD)
    w.clusters.delete(ids["c"])
    wait_cluster_state(w, ids["c"], State.TERMINATED, fail_on=(State.ERROR,))
    yield {"names": names, "ids": ids}
    for cid in ids.values():
        try:
            w.clusters.permanent_delete(cid)
        except DatabricksError:
            pass


def test_list_paging(kiln, w, trio):
    s = kiln.http()
    seen, token, pages = [], None, 0
    while True:
        params = {"page_size": 1}
        if token:
            params["page_token"] = token
        r = s.get(kiln.url("/api/2.1/clusters/list"), params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body.get("clusters", [])) <= 1
        seen += [c["cluster_id"] for c in body.get("clusters", [])]
        pages += 1
        token = body.get("next_page_token")
        if not token:
            break
        assert pages < 1000
    assert len(seen) == len(set(seen)), "a cluster appeared on two pages"
    assert set(trio["ids"].values()) <= set(seen)
    assert pages >= 3
    everything = {c.cluster_id for c in w.clusters.list()}
    assert {c.cluster_id for c in w.clusters.list(page_size=1)} == everything == set(seen)


def test_list_filter_by_state(w, trio):
    ids = trio["ids"]
    term = list(w.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.TERMINATED])))
    assert all(c.state == State.TERMINATED for c in term)
    term_ids = {c.cluster_id for c in term}
    assert ids["c"] in term_ids and ids["a"] not in term_ids and ids["b"] not in term_ids
    running = list(w.clusters.list(filter_by=ListClustersFilterBy(cluster_states=[State.RUNNING])))
    assert all(c.state == State.RUNNING for c in running)
    run_ids = {c.cluster_id for c in running}
    assert {ids["a"], ids["b"]} <= run_ids and ids["c"] not in run_ids
    both = {c.cluster_id for c in w.clusters.list(
        filter_by=ListClustersFilterBy(cluster_states=[State.RUNNING, State.TERMINATED]))}  # fmt: skip
    assert set(ids.values()) <= both


def test_list_sort_by_name(w, trio):
    ours = set(trio["names"].values())
    for direction, expect in ((ListClustersSortByDirection.ASC, ["a", "b", "c"]),
                              (ListClustersSortByDirection.DESC, ["c", "b", "a"])):  # fmt: skip
        listed = w.clusters.list(sort_by=ListClustersSortBy(field=ListClustersSortByField.CLUSTER_NAME, direction=direction))
        names = [c.cluster_name for c in listed if c.cluster_name in ours]
        assert names == [trio["names"][k] for k in expect], (direction, names)


def test_legacy_20_list_is_unpaginated(kiln, trio):
    r = kiln.http().get(kiln.url("/api/2.0/clusters/list"))
    assert r.status_code == 200, r.text
    body = r.json()
    ids = {c["cluster_id"]: c for c in body["clusters"]}
    assert set(trio["ids"].values()) <= ids.keys()
    assert ids[trio["ids"]["a"]]["state"] == "RUNNING"
    assert ids[trio["ids"]["c"]]["state"] == "TERMINATED"


def test_databricks_cli_legacy_client(kiln, trio):
    from databricks_cli.sdk import ApiClient, ClusterService

    api = ApiClient(host=kiln.host, token=kiln.token)
    api.url = kiln.host + "/api/"  # the legacy client drops the port from host (contract §16)
    svc = ClusterService(api)
    a = trio["ids"]["a"]
    assert svc.get_cluster(a)["state"] == "RUNNING"
    assert a in {c["cluster_id"] for c in svc.list_clusters()["clusters"]}
    assert svc.pin_cluster(a) == {}
    assert svc.unpin_cluster(a) == {}
    events = svc.get_events(a, order="ASC", limit=500)
    assert "PINNED" in [e["type"] for e in events["events"]]
    with pytest.raises(requests.HTTPError) as e:
        svc.get_cluster("0000-000000-doesnotexist")
    assert e.value.response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_rest_12_list(kiln, trio):
    r = http().get(kiln.url("/api/1.2/clusters/list"), headers={"Authorization": basic_admin(kiln)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list)
    by_id = {c["id"]: c for c in body}
    for k, status in (("a", "Running"), ("b", "Running"), ("c", "Terminated")):
        c = by_id[trio["ids"][k]]
        assert c["name"] == trio["names"][k]
        assert c["status"] == status
        assert isinstance(c["jdbcPort"], int) and isinstance(c["numWorkers"], int) and c["numWorkers"] == 0
        assert isinstance(c["driverIp"], str)
    assert by_id[trio["ids"]["a"]]["driverIp"] == "127.0.0.1"
    allowed = {"Pending", "Running", "Reconfiguring", "Restarting", "Terminating", "Terminated", "Error", "Unknown"}
    assert {c["status"] for c in body} <= allowed


def test_rest_12_status_query_and_form_body(kiln, trio):
    a = trio["ids"]["a"]
    s = http()
    s.headers["Authorization"] = basic_admin(kiln)
    r = s.get(kiln.url("/api/1.2/clusters/status"), params={"clusterId": a})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == a and r.json()["status"] == "Running" and r.json()["name"] == trio["names"]["a"]
    # curl --request GET .../api/1.2/clusters/status --data clusterId=<id>
    r = s.request("GET", kiln.url("/api/1.2/clusters/status"), data={"clusterId": a})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == a
    r = s.get(kiln.url("/api/1.2/clusters/status"), params={"clusterId": trio["ids"]["c"]})
    assert r.json()["status"] == "Terminated"
    r = s.get(kiln.url("/api/1.2/clusters/status"), params={"clusterId": "0000-000000-doesnotexist"})
    assert 400 <= r.status_code < 500
    body = r.json()
    assert body.get("error") or body.get("error_code"), body
    r = s.get(kiln.url("/api/1.2/clusters/status"))
    assert 400 <= r.status_code < 500


def test_rest_12_restart_with_form_body_and_basic_password(kiln, w, trio):
    b = trio["ids"]["b"]
    ensure_running(w, b)
    old = engine_main_proc(b)
    s = http()
    s.auth = ("admin", kiln.admin_password)  # REST 1.2 docs: Basic auth per call
    r = s.post(kiln.url("/api/1.2/clusters/restart"), data={"clusterId": b})
    assert r.status_code == 200, r.text
    assert r.json() == {"id": b}
    # the transition is applied before replying: never the old engine still reported RUNNING
    c = w.clusters.get(b)
    if c.state == State.RUNNING:
        eng = engine_main_proc(b)
        assert eng is not None and (eng.pid, eng.starttime) != (old.pid, old.starttime), "restart not applied"
    else:
        assert c.state == State.RESTARTING, c.state
    c = wait_cluster_state(w, b, State.RUNNING, fail_on=BAD)
    wait_for(lambda: not is_alive(old), 30, "old engine to exit after restart", 0.1)
    new = engine_main_proc(b)
    assert new is not None and (new.pid, new.starttime) != (old.pid, old.starttime)
    assert spark_sql(connect_url(c), "SELECT 1 AS one")[0].one == 1


def test_permanent_delete_running_cluster(w, trio):
    a = trio["ids"]["a"]
    ensure_running(w, a)
    old = engine_main_proc(a)
    w.clusters.permanent_delete(a)
    with pytest.raises(ResourceDoesNotExist):
        w.clusters.get(a)
    assert a not in {c.cluster_id for c in w.clusters.list()}
    with pytest.raises(DatabricksError):
        list(w.clusters.events(a))
    # A process on its way out loses its readable environment (so it drops out of
    # kiln_engine_procs) a moment before it is gone; wait for both.
    wait_for(lambda: not kiln_engine_procs(a), CLUSTER_TIMEOUT, "engine of a permanently deleted cluster to exit", 0.1)
    wait_for(lambda: not is_alive(old), CLUSTER_TIMEOUT, f"old engine {old.pid} to be gone", 0.05)


def test_permanent_delete_terminated_cluster(w, trio):
    c = trio["ids"]["c"]
    w.clusters.permanent_delete(c)
    with pytest.raises(NotFound):
        w.clusters.get(c)
    with pytest.raises(DatabricksError):
        w.clusters.start(c)
    assert c not in {x.cluster_id for x in w.clusters.list()}


# =============================================================================================
# failures and autotermination


def test_engine_crash_is_detected(kiln, w):
    cid = create_fast(w, kiln, cluster_name=unique("crash"))
    wait_cluster_state(w, cid, State.RUNNING, fail_on=BAD)
    victims = kiln_engine_procs(cid)
    assert victims
    t0 = now_ms()
    for p in victims:
        os.kill(p.pid, signal.SIGKILL)
    c = wait_cluster_state(w, cid, State.TERMINATED, fail_on=(State.ERROR,))
    assert c.termination_reason is not None
    assert c.termination_reason.code == TerminationReasonCode.DRIVER_UNEXPECTED_FAILURE, c.termination_reason
    assert termination_event_reason(events_since(w, cid, t0))["code"] == "DRIVER_UNEXPECTED_FAILURE"
    # the cluster is usable again
    c = w.clusters.start_and_wait(cid, timeout=SDK_TIMEOUT)
    assert spark_sql(connect_url(c), "SELECT 2 AS two")[0].two == 2
    w.clusters.permanent_delete(cid)
    wait_for(lambda: not kiln_engine_procs(cid), CLUSTER_TIMEOUT, "engine exit after permanent delete", 0.1)


def test_autotermination_after_inactivity(kiln, w):
    # the session server runs with [clusters] autotermination_minute_seconds = 1, so 10 "minutes"
    # (the smallest non-zero value Databricks accepts) last 10 s
    cid = create_fast(w, kiln, cluster_name=unique("idle"), autotermination_minutes=10)
    c = wait_cluster_state(w, cid, State.RUNNING, fail_on=BAD)
    assert c.autotermination_minutes == 10
    port = url_port(connect_url(c))
    # API polling is not cluster activity; poll gently until the idle timer fires
    c = wait_cluster_state(w, cid, State.TERMINATED, fail_on=(State.ERROR,), timeout=60, interval=0.5)
    assert c.termination_reason is not None and c.termination_reason.code == TerminationReasonCode.INACTIVITY
    assert_engine_gone(cid, old_port=port)
    assert termination_event_reason(raw_events(w, cid))["code"] == "INACTIVITY"
    w.clusters.permanent_delete(cid)


def test_cluster_without_autotermination_stays_up(w, main):
    # main has autotermination_minutes=0 and has been idle through the autotermination test
    assert w.clusters.get(main["id"]).state == State.RUNNING
