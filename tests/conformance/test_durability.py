"""Crash safety: kill -9 the server and start it again on the same data dir.

Uses its own server (kiln_factory) so the shared one is never disturbed.
"""

from __future__ import annotations

import pytest
from databricks.sdk.service.compute import ListClustersFilterBy, State

from kiln_helpers import (
    CLUSTER_TIMEOUT,
    SPARK_VERSION,
    connect_url,
    descends_from,
    engine_main_proc,
    http,
    is_alive,
    kiln_engine_procs,
    spark_sql,
    unique,
    wait_cluster_state,
    wait_for,
)

BAD = (State.ERROR, State.TERMINATED)


def _create(w, srv, name, **kw):
    spec = dict(cluster_name=name, spark_version=SPARK_VERSION, num_workers=0, autotermination_minutes=0)
    spec.update(kw)
    return srv.track(w.clusters.create(**spec).cluster_id)


@pytest.fixture(scope="module")
def crashed(kiln_factory):
    """Build up state, kill -9 the server, start it again; return what was there before."""
    srv = kiln_factory()
    w = srv.client()

    run1 = _create(w, srv, unique("dur-run1"))
    run2 = _create(w, srv, unique("dur-run2"), custom_tags={"keep": "me"})
    stopped = _create(w, srv, unique("dur-stopped"))
    for cid in (run1, run2, stopped):
        wait_cluster_state(w, cid, State.RUNNING, fail_on=BAD)
    w.clusters.delete(stopped)
    wait_cluster_state(w, stopped, State.TERMINATED, fail_on=(State.ERROR,))
    w.clusters.pin(run1)
    w.clusters.resize(run2, num_workers=1)
    wait_cluster_state(w, run2, State.RUNNING, fail_on=BAD)

    sp = w.service_principals.create(display_name=unique("dur-sp"))
    secret = w.service_principal_secrets_proxy.create(service_principal_id=sp.id).secret
    # the very last acknowledged writes before the crash
    late = _create(w, srv, unique("dur-late"))
    tok = w.tokens.create(comment=unique("dur-token"), lifetime_seconds=3600)
    user = w.users.create(user_name=unique("dora") + "@example.com", display_name="Dora")

    before = {c.cluster_id: c for c in w.clusters.list()}
    admin_token = srv.token
    old_server_pid = srv.proc.pid

    old_engines = srv.restart()  # SIGKILL, then `kiln serve` again on the same port and data dir

    # immediately after /health: nothing may claim RUNNING without a live engine of the new server
    violations = []
    first_states = {}
    for cid in (run1, run2, stopped, late):
        c = srv.client().clusters.get(cid)
        first_states[cid] = c.state
        if c.state == State.RUNNING:
            eng = engine_main_proc(cid)
            if eng is None or not descends_from(eng.pid, srv.proc.pid):
                violations.append((cid, c.state, eng))

    return {
        "srv": srv,
        "w": srv.client(),
        "run1": run1,
        "run2": run2,
        "stopped": stopped,
        "late": late,
        "token": tok,
        "user": user,
        "sp": sp,
        "secret": secret,
        "before": before,
        "admin_token": admin_token,
        "old_server_pid": old_server_pid,
        "old_engines": old_engines,
        "violations": violations,
        "first_states": first_states,
    }


def test_old_server_had_engines(crashed):
    ids = {p.cluster_id for p in crashed["old_engines"]}
    assert {crashed["run1"], crashed["run2"]} <= ids
    assert crashed["srv"].proc.pid != crashed["old_server_pid"]


def test_no_orphan_engines_survive_the_killed_server(crashed):
    old = crashed["old_engines"]
    wait_for(lambda: not [p for p in old if is_alive(p)], 30, "engines of the killed server to be gone", 0.1)
    srv = crashed["srv"]
    for p in kiln_engine_procs():
        if p.cluster_id in crashed["before"]:
            assert descends_from(p.pid, srv.proc.pid), f"engine {p} does not belong to the new server"


def test_admin_token_unchanged(crashed):
    srv = crashed["srv"]
    assert srv.token == crashed["admin_token"]
    assert crashed["w"].current_user.me().user_name == "admin"


def test_tokens_survive(crashed):
    srv, tok = crashed["srv"], crashed["token"]
    assert srv.client(token=tok.token_value).current_user.me().user_name == "admin"
    listed = {t.token_id: t for t in crashed["w"].tokens.list()}
    assert tok.token_info.token_id in listed
    assert listed[tok.token_info.token_id].comment == tok.token_info.comment
    assert listed[tok.token_info.token_id].expiry_time == tok.token_info.expiry_time


def test_identities_survive(crashed):
    w, srv = crashed["w"], crashed["srv"]
    user = w.users.get(crashed["user"].id)
    assert user.user_name == crashed["user"].user_name and user.display_name == "Dora"
    sp = crashed["sp"]
    assert w.service_principals.get(sp.id).application_id == sp.application_id
    r = http().post(srv.url("/oidc/v1/token"), auth=(sp.application_id, crashed["secret"]),
                    data={"grant_type": "client_credentials", "scope": "all-apis"})  # fmt: skip
    assert r.status_code == 200, r.text


def test_cluster_records_survive(crashed):
    w = crashed["w"]
    after = {c.cluster_id: c for c in w.clusters.list()}
    assert after.keys() == crashed["before"].keys()
    for cid, old in crashed["before"].items():
        new = after[cid]
        assert (new.cluster_name, new.spark_version, new.creator_user_name) == (
            old.cluster_name, old.spark_version, old.creator_user_name)  # fmt: skip
    assert after[crashed["run2"]].num_workers == 1
    assert (after[crashed["run2"]].custom_tags or {}).get("keep") == "me"
    pinned = {c.cluster_id for c in w.clusters.list(filter_by=ListClustersFilterBy(is_pinned=True))}
    assert crashed["run1"] in pinned


def test_no_cluster_running_without_engine_right_after_restart(crashed):
    assert not crashed["violations"], crashed["violations"]
    for cid in (crashed["run1"], crashed["run2"]):
        assert crashed["first_states"][cid] in (State.PENDING, State.RUNNING), crashed["first_states"]


def test_running_clusters_come_back_with_fresh_engines(crashed):
    w, srv = crashed["w"], crashed["srv"]
    old = {(p.pid, p.starttime) for p in crashed["old_engines"]}
    for cid in (crashed["run1"], crashed["run2"]):
        c = wait_cluster_state(w, cid, State.RUNNING, fail_on=(State.ERROR, State.TERMINATED))
        eng = engine_main_proc(cid)
        assert eng is not None and descends_from(eng.pid, srv.proc.pid)
        assert (eng.pid, eng.starttime) not in old
        assert spark_sql(connect_url(c), "SELECT 41+1 AS x")[0].x == 42


def test_terminated_cluster_stays_terminated(crashed):
    c = crashed["w"].clusters.get(crashed["stopped"])
    assert c.state == State.TERMINATED
    assert not kiln_engine_procs(crashed["stopped"])


def test_cluster_created_just_before_crash_is_not_lost(crashed):
    w, late = crashed["w"], crashed["late"]

    def settled():
        c = w.clusters.get(late)
        return c if c.state in (State.RUNNING, State.TERMINATED, State.ERROR) else None

    c = wait_for(settled, CLUSTER_TIMEOUT, "the late cluster to leave PENDING", 0.1)
    assert c.state in (State.RUNNING, State.TERMINATED), c.state_message
    if c.state == State.RUNNING:
        eng = engine_main_proc(late)
        assert eng is not None and descends_from(eng.pid, crashed["srv"].proc.pid)
    else:
        assert not kiln_engine_procs(late)


def test_graceful_restart_keeps_state(crashed):
    srv = crashed["srv"]
    before = {c.cluster_id for c in crashed["w"].clusters.list()}
    srv.stop()  # SIGTERM; asserts that every engine exited with the server
    assert not [p for p in kiln_engine_procs() if p.cluster_id in before]
    srv.start()
    w = srv.client()
    assert {c.cluster_id for c in w.clusters.list()} == before
    assert srv.client(token=crashed["token"].token_value).current_user.me().user_name == "admin"
    for c in w.clusters.list():
        if c.state == State.RUNNING:
            eng = engine_main_proc(c.cluster_id)
            assert eng is not None and descends_from(eng.pid, srv.proc.pid), c.cluster_id
