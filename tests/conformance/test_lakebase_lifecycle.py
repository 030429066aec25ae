"""The lifecycle of Lakebase data: soft delete and undelete of projects and branches
(data kept, processes stopped, listed with show_deleted), purge (at once, or by the
reconciler after the retention), and branches removed when they expire."""

from __future__ import annotations

from pathlib import Path

import pytest
from databricks.sdk.errors import AlreadyExists, InvalidParameterValue, NotFound
from databricks.sdk.service.postgres import Branch, BranchSpec, BranchStatusState, Project, ProjectSpec
from google.protobuf.duration_pb2 import Duration

from kiln_helpers import wait_for
from test_lakebase import a_moment_between_writes, connect, create_project, pid, postgres_procs, primary, rows


def test_soft_delete_and_undelete_keep_the_data(kiln, w):
    project_id = pid("trash")
    create_project(w, project_id)
    with connect(kiln, w, primary(w, project_id)) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    branch_uid = w.postgres.get_branch(f"projects/{project_id}/branches/production").uid
    w.postgres.delete_project(f"projects/{project_id}").wait()
    with pytest.raises(NotFound):
        w.postgres.get_project(f"projects/{project_id}")
    assert project_id not in [p.project_id for p in w.postgres.list_projects()]
    listed = [p for p in w.postgres.list_projects(show_deleted=True) if p.project_id == project_id]
    assert listed and listed[0].delete_time and listed[0].purge_time, listed
    assert listed[0].purge_time.ToDatetime() > listed[0].delete_time.ToDatetime()
    wait_for(lambda: not postgres_procs(f"/b/{branch_uid}/pgdata"), 30, "postgres to stop after a soft delete")
    with pytest.raises(AlreadyExists, match="undelete"):
        create_project(w, project_id)
    w.postgres.undelete_project(f"projects/{project_id}").wait()
    ep = primary(w, project_id)
    with connect(kiln, w, ep) as conn:  # woken on connect, data intact
        assert rows(conn) == [1, 2]
        conn.execute("INSERT INTO t VALUES (3)")
    # a branch: soft delete, listed as DELETED, undelete
    dev = w.postgres.create_branch(f"projects/{project_id}", Branch(spec=BranchSpec(no_expiry=True)), branch_id="dev").wait()
    with connect(kiln, w, primary(w, project_id, "dev")) as conn:
        conn.execute("INSERT INTO t VALUES (30)")
    w.postgres.delete_branch(dev.name).wait()
    with pytest.raises(NotFound):
        w.postgres.get_branch(dev.name)
    deleted = [b for b in w.postgres.list_branches(f"projects/{project_id}", show_deleted=True) if b.branch_id == "dev"]
    assert deleted and deleted[0].status.current_state == BranchStatusState.DELETED and deleted[0].status.purge_time
    w.postgres.undelete_branch(dev.name).wait()
    with connect(kiln, w, primary(w, project_id, "dev")) as conn:
        assert rows(conn) == [1, 2, 3, 30]
    with pytest.raises(NotFound):
        w.postgres.undelete_branch(f"projects/{project_id}/branches/never").wait()
    # purge: gone at once, not listed, its id free again
    w.postgres.delete_project(f"projects/{project_id}", purge=True).wait()
    assert project_id not in [p.project_id for p in w.postgres.list_projects(show_deleted=True)]


def test_the_reconciler_purges_and_removes_expired_branches(kiln_factory):
    server = kiln_factory(lakebase={"deleted_retention_seconds": 2})
    w = server.client()
    project_id = pid("purge")
    create_project(w, project_id)
    root = Path(server.config["lakebase"]["dir"])
    short = w.postgres.create_branch(f"projects/{project_id}", Branch(spec=BranchSpec(ttl=Duration(seconds=20))), branch_id="short").wait()
    assert short.status.expire_time
    short_dir = root / "b" / short.uid
    assert short_dir.is_dir()

    def gone():
        try:
            w.postgres.get_branch(short.name)
            return False
        except NotFound:
            return True

    wait_for(lambda: gone() and not short_dir.exists(), 60, "the expired branch and its data to be removed")
    assert not any(b.branch_id == "short" for b in w.postgres.list_branches(f"projects/{project_id}", show_deleted=True))
    # a soft-deleted project's data goes after the retention
    uid = w.postgres.get_branch(f"projects/{project_id}/branches/production").uid
    w.postgres.delete_project(f"projects/{project_id}").wait()
    wait_for(lambda: not (root / "b" / uid).exists(), 60, "the deleted project's data to be purged")
    with pytest.raises(NotFound):
        w.postgres.undelete_project(f"projects/{project_id}").wait()
    create_project(w, project_id)  # the id is free again
    w.postgres.delete_project(f"projects/{project_id}", purge=True).wait()


def test_a_connection_storm_wakes_an_idle_endpoint_once(kiln_factory):
    """500 clients connect at once to a suspended endpoint: one postmaster start, all served."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from databricks.sdk.service.postgres import EndpointStatusState, ProjectDefaultEndpointSettings

    server = kiln_factory()
    w = server.client()
    project_id = pid("storm")
    create_project(w, project_id, default_endpoint_settings=ProjectDefaultEndpointSettings(
        autoscaling_limit_min_cu=0.5, autoscaling_limit_max_cu=4, suspend_timeout_duration=Duration(seconds=1)))  # fmt: skip
    ep = primary(w, project_id)
    wait_for(lambda: primary(w, project_id).status.current_state == EndpointStatusState.IDLE, 60, "the endpoint to suspend")
    token = w.postgres.generate_database_credential(endpoint=ep.name).token
    clients = 500
    barrier = threading.Barrier(clients, timeout=180)

    def one(_):
        conn = connect(server, w, ep, token=token, user="admin")
        try:
            value = conn.execute("SELECT 1").fetchone()[0]
            barrier.wait()  # every session open at the same time
            return value
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(clients)))
    assert results == [1] * clients
    log = server.log_path.read_text(errors="replace")
    starts = [line for line in log.splitlines() if "endpoint started on demand" in line and ep.name in line]
    assert len(starts) == 1, starts
    w.postgres.delete_project(f"projects/{project_id}", purge=True).wait()


def test_a_snapshot_restores_a_branch_and_expires(kiln, w):
    from databricks.sdk.service.postgres import Snapshot, SnapshotSpec

    project_id = pid("snap")
    create_project(w, project_id)
    production = f"projects/{project_id}/branches/production"
    with connect(kiln, w, primary(w, project_id)) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    snap = w.postgres.create_snapshot(parent=f"projects/{project_id}", snapshot_id="before-change",
                                      snapshot=Snapshot(spec=SnapshotSpec(source_branch=production, no_expiry=True))).wait()  # fmt: skip
    assert snap.name == f"projects/{project_id}/snapshots/before-change" and snap.status.source_branch == production
    with connect(kiln, w, primary(w, project_id)) as conn:
        conn.execute("INSERT INTO t VALUES (3)")
    listed = list(w.postgres.list_snapshots(f"projects/{project_id}"))
    assert [s.snapshot_id for s in listed] == ["before-change"] and listed[0].status.full_size_bytes > 0
    restored = w.postgres.create_branch(f"projects/{project_id}", branch_id="restored", branch=Branch(spec=BranchSpec(
        source_snapshot=snap.name, no_expiry=True))).wait()  # fmt: skip
    assert restored.status.source_snapshot == snap.name
    with connect(kiln, w, primary(w, project_id, "restored")) as conn:
        assert rows(conn) == [1, 2]  # the snapshot's state, not the later write
        conn.execute("INSERT INTO t VALUES (20)")
    with connect(kiln, w, primary(w, project_id)) as conn:
        assert rows(conn) == [1, 2, 3]
    # the snapshot outlives its use and is independent of it; deleting it leaves the branch
    w.postgres.delete_snapshot(snap.name).wait()
    with pytest.raises(NotFound):
        w.postgres.get_snapshot(snap.name)
    with connect(kiln, w, primary(w, project_id, "restored")) as conn:
        assert rows(conn) == [1, 2, 20]
    # a snapshot with a ttl is removed by the reconciler
    short = w.postgres.create_snapshot(parent=f"projects/{project_id}", snapshot_id="short",
                                       snapshot=Snapshot(spec=SnapshotSpec(source_branch=production, ttl=Duration(seconds=2)))).wait()  # fmt: skip

    def expired():
        try:
            w.postgres.get_snapshot(short.name)
            return False
        except NotFound:
            return True

    wait_for(expired, 60, "the snapshot to expire")
    # a schedule whose period is already due takes its snapshot at once, kept for the retention
    import datetime

    from databricks.sdk.common.types.fieldmask import FieldMask
    from databricks.sdk.service.postgres import DailySchedule, ScheduleCadence, SnapshotSchedule

    schedule_name = f"{production}/snapshot-schedule"
    assert not w.postgres.get_snapshot_schedule(schedule_name).schedule
    hour = datetime.datetime.now(datetime.timezone.utc).hour
    w.postgres.update_snapshot_schedule(schedule_name, SnapshotSchedule(schedule=[ScheduleCadence(
        retention=Duration(seconds=7200), daily_schedule=DailySchedule(hour=hour))]),
        update_mask=FieldMask(field_mask=["schedule"])).wait()  # fmt: skip
    got = w.postgres.get_snapshot_schedule(schedule_name)
    assert got.schedule[0].daily_schedule.hour == hour and got.schedule[0].retention.seconds == 7200

    def auto():
        return [s for s in w.postgres.list_snapshots(f"projects/{project_id}") if s.snapshot_id.startswith("auto-production-")]

    taken = wait_for(auto, 120, "the scheduled snapshot")
    assert len(taken) == 1 and taken[0].status.expire_time, taken
    with pytest.raises(InvalidParameterValue, match="at least 1 hour"):  # a retention under one hour is refused
        w.postgres.update_snapshot_schedule(schedule_name, SnapshotSchedule(schedule=[ScheduleCadence(
            retention=Duration(seconds=60), daily_schedule=DailySchedule(hour=1))]),
            update_mask=FieldMask(field_mask=["schedule"])).wait()  # fmt: skip
    w.postgres.update_snapshot_schedule(schedule_name, SnapshotSchedule(schedule=[]), update_mask=FieldMask(field_mask=["schedule"])).wait()
    assert len(auto()) == 1, "one snapshot per period, not one per tick"
    w.postgres.delete_project(f"projects/{project_id}", purge=True).wait()


def test_a_base_backup_missing_at_start_is_taken_then(kiln_factory):
    """A Kiln that stopped before it took a new branch's base backup takes it when it starts (from the
    stopped data directory), and point-in-time branches of that branch work from it."""
    import shutil

    server = kiln_factory()
    w = server.client()
    project_id = pid("base")
    create_project(w, project_id)
    dev = w.postgres.create_branch(f"projects/{project_id}", Branch(spec=BranchSpec(no_expiry=True)),
                                   branch_id="dev").wait()  # fmt: skip
    with connect(server, w, primary(w, project_id, "dev")) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    branch_dir = Path(server.config["lakebase"]["dir"]) / "b" / dev.uid
    wait_for(lambda: (branch_dir / "base").is_dir(), 60, "the new branch's base backup")
    server.stop()
    # as if Kiln had stopped before taking it, in the middle of a copy
    shutil.rmtree(branch_dir / "base")
    staged = Path(server.config["lakebase"]["dir"]) / "staging" / f"base-{dev.uid}"
    staged.mkdir(parents=True, exist_ok=True)
    (staged / "half-copied").write_text("x")
    server.start()
    wait_for(lambda: (branch_dir / "base").is_dir(), 60, "the base backup to be taken at start")
    assert not (branch_dir / "base" / "half-copied").exists() and not staged.exists()
    w = server.client()
    with connect(server, w, primary(w, project_id, "dev")) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    at = a_moment_between_writes()
    with connect(server, w, primary(w, project_id, "dev")) as conn:
        conn.execute("INSERT INTO t VALUES (3)")
    back = w.postgres.create_branch(f"projects/{project_id}", Branch(spec=BranchSpec(
        no_expiry=True, source_branch=dev.name, source_branch_time=at)), branch_id="dev-back").wait()  # fmt: skip
    with connect(server, w, primary(w, project_id, "dev-back")) as conn:
        assert rows(conn) == [1, 2]
