"""Warm engines (`[clusters] warm_engines`): an engine started ahead of a cluster create, for a
reserved cluster id, so that a new cluster is RUNNING without an engine start.

Each test runs its own server so that the pool's contents are known.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from databricks.sdk.service.compute import State

from conftest import base_config
from kiln_helpers import (
    SPARK_VERSION,
    KilnServer,
    connect_url,
    is_alive,
    spark_sql,
    unique,
    wait_cluster_state,
    wait_for,
)

MARKER = ".kiln-warm"


def warm_engines(srv: KilnServer) -> list:
    """Engine processes of `srv` whose cluster id is no cluster's (the pool's)."""
    known = {c["cluster_id"] for c in srv.http().get(f"{srv.host}/api/2.0/clusters/list").json().get("clusters", [])}
    return [p for p in srv.engine_procs() if p.is_engine_cmd and p.cluster_id not in known]


def ready_warm(srv: KilnServer, count: int):
    """The warm engines once Kiln has logged `count` of them ready (a process may still be starting)."""

    def ready():
        logged = srv.log_path.read_text(errors="replace").count("warm engine ready")
        return warm_engines(srv) if logged >= count else None

    # generous: the first warm engine of a fresh machine may build a runtime first
    return wait_for(ready, 600, f"warm engine #{count} to be ready", 0.1)


def engines_dir(srv: KilnServer) -> Path:
    found = srv.shared_dir / "engines"
    assert found.is_dir(), f"no {found}"
    return found


@pytest.fixture
def server(kiln_binary, tmp_path):
    made = []

    def make(**clusters):
        srv = KilnServer(kiln_binary, tmp_path / f"kiln-{len(made)}", base_config(clusters=clusters))
        made.append(srv)
        return srv.start()

    yield make
    for srv in made:
        srv.stop()


def test_a_new_cluster_runs_on_the_warm_engine_and_another_is_started(server):
    srv = server(warm_engines=1)
    w = srv.client()
    # A fresh Kiln warms the runtime of a cluster that names none (16.4); a create of another
    # runtime (or the first one, if it is the same) points the keeper at its runtime.
    primer = srv.track(w.clusters.create(cluster_name=unique("primer"), spark_version=SPARK_VERSION,
                                         num_workers=0, autotermination_minutes=0).cluster_id)  # fmt: skip
    wait_cluster_state(w, primer, State.RUNNING, fail_on=(State.ERROR, State.TERMINATED))
    [warm] = ready_warm(srv, 2)
    reserved = engines_dir(srv) / warm.cluster_id
    assert (reserved / MARKER).exists()

    cid = srv.track(w.clusters.create(cluster_name=unique("warm"), spark_version=SPARK_VERSION,
                                      num_workers=0, autotermination_minutes=0).cluster_id)  # fmt: skip
    # the create takes the reserved id: the engine already running is the cluster's own
    assert cid == warm.cluster_id
    c = wait_cluster_state(w, cid, State.RUNNING, fail_on=(State.ERROR, State.TERMINATED))
    assert is_alive(warm)
    engine = [p for p in srv.engine_procs() if p.is_engine_cmd and p.cluster_id == cid]
    assert [p.pid for p in engine] == [warm.pid]
    assert not (reserved / MARKER).exists()
    assert [tuple(r) for r in spark_sql(connect_url(c), "SELECT 40 + 2 AS v")] == [(42,)]
    types = [e.type.value for e in w.clusters.events(cid)]
    assert "CREATING" in types and "RUNNING" in types

    # the keeper starts the next one, for a new id
    [again] = ready_warm(srv, 3)
    assert again.cluster_id != cid and again.pid != warm.pid

    # a configuration the warm engine was not started for gets an engine of its own
    other = srv.track(w.clusters.create(cluster_name=unique("env"), spark_version=SPARK_VERSION, num_workers=0,
                                        autotermination_minutes=0,
                                        spark_env_vars={"TEAM_SETTING": "on"}).cluster_id)  # fmt: skip
    assert other != again.cluster_id
    wait_cluster_state(w, other, State.RUNNING, fail_on=(State.ERROR, State.TERMINATED))
    assert is_alive(again)
    [own] = [p for p in srv.engine_procs() if p.is_engine_cmd and p.cluster_id == other]
    environ = Path(f"/proc/{own.pid}/environ").read_bytes().split(b"\0")
    assert b"TEAM_SETTING=on" in environ

    # terminate stops the adopted engine like any other
    w.clusters.delete(cid)
    wait_cluster_state(w, cid, State.TERMINATED)
    wait_for(lambda: not is_alive(warm), 30, "the adopted engine to exit", 0.1)
    # and a graceful stop takes the warm engine and its reserved directory with it
    w.clusters.delete(other)
    srv.stop()
    wait_for(lambda: not is_alive(again), 30, "the warm engine to stop with Kiln", 0.1)
    assert not (engines_dir(srv) / again.cluster_id).exists()


def test_kill_9_leaves_no_warm_engine_and_its_directory_is_swept(server):
    srv = server(warm_engines=1)
    [warm] = ready_warm(srv, 1)
    reserved = engines_dir(srv) / warm.cluster_id
    srv.kill9()
    wait_for(lambda: not is_alive(warm), 30, "the warm engine to die with Kiln", 0.1)
    assert reserved.exists()
    srv.start()
    wait_for(lambda: not reserved.exists(), 30, "the leftover reserved directory to be swept", 0.1)
    [fresh] = ready_warm(srv, 2)
    assert fresh.cluster_id != warm.cluster_id


def test_zero_keeps_no_warm_engine(server):
    srv = server(warm_engines=0)
    w = srv.client()
    cid = srv.track(w.clusters.create(cluster_name=unique("cold"), spark_version=SPARK_VERSION, num_workers=0,
                                      autotermination_minutes=0).cluster_id)  # fmt: skip
    wait_cluster_state(w, cid, State.RUNNING, fail_on=(State.ERROR, State.TERMINATED))
    assert warm_engines(srv) == []
    w.clusters.delete(cid)
