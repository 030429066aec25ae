"""Lakebase Postgres with the SDK (`w.postgres`) and psycopg through Kiln's TLS
proxy: projects and their operations, update masks, id rules, credentials,
branches (head and point in time), read replicas, scale to zero and wake on
connect, refused tokens, restart and cleanup — all on real PostgreSQL."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import psycopg
import pytest
from databricks.sdk.common.types.fieldmask import FieldMask
from databricks.sdk.errors import AlreadyExists, BadRequest, InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service.postgres import (
    Branch,
    BranchSpec,
    Endpoint,
    EndpointSettings,
    EndpointSpec,
    EndpointStatusState,
    EndpointType,
    Project,
    ProjectDefaultEndpointSettings,
    ProjectSpec,
)
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from kiln_helpers import non_admin, unique, wait_for

DB = "databricks_postgres"


def pid(prefix="p"):
    return unique(prefix).lower()


def create_project(w, project_id, **spec):
    return w.postgres.create_project(project=Project(spec=ProjectSpec(**spec)), project_id=project_id).wait()


def primary(w, project_id, branch="production"):
    return w.postgres.get_endpoint(f"projects/{project_id}/branches/{branch}/endpoints/primary")


def connect(kiln, w, endpoint, *, sni=True, token=None, user=None):
    """psycopg through the proxy with sslmode=require, by SNI host name or options."""
    token = token or w.postgres.generate_database_credential(endpoint=endpoint.name).token
    user = user or w.current_user.me().user_name
    target = (
        {"host": endpoint.status.hosts.host, "hostaddr": "127.0.0.1"}
        if sni
        else {"host": "127.0.0.1", "options": f"endpoint={endpoint.uid}"}
    )
    conn = psycopg.connect(port=kiln.pg_port, user=user, password=token, dbname=DB, sslmode="require",
                           connect_timeout=30, autocommit=True, **target)
    assert conn.pgconn.ssl_in_use
    return conn


def a_moment_between_writes() -> Timestamp:
    """A point in time a second after the writes before it and a second before those after it."""
    time.sleep(1.0)
    at = Timestamp()
    at.FromDatetime(datetime.datetime.now(datetime.timezone.utc))
    time.sleep(1.0)
    return at


def rows(conn, sql="SELECT x FROM t ORDER BY x"):
    return [r[0] for r in conn.execute(sql).fetchall()]


def postgres_procs(path_part: str) -> list[int]:
    """Live (not zombie) postgres processes whose command line names path_part."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "postgres" in cmd and path_part in cmd and state != "Z":
            out.append(int(entry.name))
    return out


@pytest.fixture(scope="module")
def project(w):
    project_id = pid("shop")
    create_project(w, project_id, display_name="Shop")
    yield project_id
    w.postgres.delete_project(f"projects/{project_id}").wait()


def test_create_wait_get_list_and_connect(kiln, w, project):
    p = w.postgres.get_project(f"projects/{project}")
    assert (p.name, p.status.display_name, p.status.owner) == (f"projects/{project}", "Shop", "admin")
    assert p.status.default_branch == f"projects/{project}/branches/production"
    assert p.status.history_retention_duration.seconds == 604800
    assert project in [x.project_id for x in w.postgres.list_projects()]
    branches = list(w.postgres.list_branches(f"projects/{project}"))
    assert [b.branch_id for b in branches] == ["production"] and branches[0].status.default
    ep = primary(w, project)
    assert ep.status.endpoint_type == EndpointType.ENDPOINT_TYPE_READ_WRITE
    assert ep.status.current_state == EndpointStatusState.ACTIVE
    assert ep.status.hosts.host == f"{ep.uid}.localhost" and ep.uid.startswith("ep-")
    with connect(kiln, w, ep) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("admin", DB)
    with connect(kiln, w, ep, sni=False) as conn:
        assert rows(conn) == [1, 2]


def test_operation_is_readable_and_display_name_defaults_to_id(w):
    project_id = pid("op")
    op = w.postgres.create_project(project=Project(spec=ProjectSpec()), project_id=project_id)
    assert op.name().startswith(f"projects/{project_id}/operations/")
    p = op.wait()
    assert p.status.display_name == project_id
    again = w.postgres.get_operation(op.name())
    assert again.done and again.response["name"] == f"projects/{project_id}"
    deleted = w.postgres.delete_project(f"projects/{project_id}")
    deleted.wait()
    assert w.postgres.get_operation(deleted.name()).done


def test_update_with_mask_changes_only_masked_fields(w, project):
    name = f"projects/{project}"
    w.postgres.update_project(name, Project(spec=ProjectSpec(display_name="Shop v2", history_retention_duration=Duration(seconds=172800))),
                              FieldMask(field_mask=["spec.display_name"])).wait()
    p = w.postgres.get_project(name)
    assert p.status.display_name == "Shop v2"
    assert p.status.history_retention_duration.seconds == 604800, "not in the mask, unchanged"
    with pytest.raises(InvalidParameterValue):
        w.api_client.do("PATCH", f"/api/2.0/postgres/{name}", body={"spec": {"display_name": "x"}})
    with pytest.raises(InvalidParameterValue):
        w.postgres.update_project(name, Project(spec=ProjectSpec(pg_version=16)), FieldMask(field_mask=["spec.pg_version"]))
    assert w.postgres.get_project(name).status.display_name == "Shop v2"


def test_bad_ids_duplicates_and_versions(w, project):
    for bad in ["Upper", "-lead", "trail-", "under_score", "a" * 64, ""]:
        with pytest.raises(InvalidParameterValue):
            w.postgres.create_project(project=Project(spec=ProjectSpec()), project_id=bad)
    with pytest.raises(AlreadyExists):
        w.postgres.create_project(project=Project(spec=ProjectSpec()), project_id=project)
    with pytest.raises(InvalidParameterValue, match="available"):
        w.postgres.create_project(project=Project(spec=ProjectSpec(pg_version=99)), project_id=pid("v"))
    with pytest.raises(InvalidParameterValue):
        w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(no_expiry=True)), branch_id="Bad")
    with pytest.raises(NotFound):
        w.postgres.get_project(f"projects/{pid('missing')}")
    # the documented rules: a leading digit is fine (`123-app`, `customer-123`)
    digits = f"123-{pid('app')}"
    created = create_project(w, digits)
    assert created.name == f"projects/{digits}"
    w.postgres.delete_project(created.name).wait()


def test_branch_sees_pre_fork_data_and_not_later_writes(kiln, w, project):
    ep = primary(w, project)
    with connect(kiln, w, ep) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fork (x int)")
        conn.execute("INSERT INTO fork VALUES (10)")
    b = w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(no_expiry=True)), branch_id="dev").wait()
    assert b.status.source_branch == f"projects/{project}/branches/production" and b.status.source_branch_lsn
    with connect(kiln, w, ep) as conn:
        conn.execute("INSERT INTO fork VALUES (11)")
    dev = primary(w, project, "dev")
    assert dev.uid != ep.uid
    with connect(kiln, w, dev) as conn:
        assert rows(conn, "SELECT x FROM fork ORDER BY x") == [10]
        conn.execute("INSERT INTO fork VALUES (12)")
    with connect(kiln, w, ep) as conn:
        assert rows(conn, "SELECT x FROM fork ORDER BY x") == [10, 11]


def test_point_in_time_branch(kiln, w, project):
    ep = primary(w, project)
    with connect(kiln, w, ep) as conn:
        conn.execute("CREATE TABLE pitr (x int)")
        conn.execute("INSERT INTO pitr VALUES (1)")
    at = a_moment_between_writes()
    with connect(kiln, w, ep) as conn:
        conn.execute("INSERT INTO pitr VALUES (2)")
    b = w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(no_expiry=True, source_branch_time=at)),
                                 branch_id="restore").wait()
    assert b.status.source_branch_time.seconds == at.seconds
    with connect(kiln, w, primary(w, project, "restore")) as conn:
        assert rows(conn, "SELECT x FROM pitr ORDER BY x") == [1]
    past = Timestamp()
    past.FromDatetime(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    with pytest.raises(InvalidParameterValue):
        w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(source_branch_time=past)), branch_id="too-old")


def test_a_new_branch_takes_its_base_backup_after_it_answers(kiln, w, project):
    """A branch create copies the data once; its base backup (its restore floor) follows in the
    background, and a point-in-time branch of it right away waits for that base."""
    fresh = w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(no_expiry=True)),
                                     branch_id="fresh").wait()  # fmt: skip
    with connect(kiln, w, primary(w, project, "fresh")) as conn:
        conn.execute("CREATE TABLE later (x int)")
        conn.execute("INSERT INTO later VALUES (1)")
    at = a_moment_between_writes()
    with connect(kiln, w, primary(w, project, "fresh")) as conn:
        conn.execute("INSERT INTO later VALUES (2)")
    b = w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(
        no_expiry=True, source_branch=fresh.name, source_branch_time=at)), branch_id="fresh-pitr").wait()  # fmt: skip
    assert b.status.source_branch == fresh.name
    with connect(kiln, w, primary(w, project, "fresh-pitr")) as conn:
        assert rows(conn, "SELECT x FROM later ORDER BY x") == [1]
    root = Path(kiln.config["lakebase"]["dir"]) / "b"
    for uid in (fresh.uid, b.uid):
        wait_for(lambda: (root / uid / "base").is_dir(), 60, f"the base backup of {uid}")
        assert not (root.parent / "staging" / f"base-{uid}").exists()


def test_read_replica_sees_writes_and_refuses_them(kiln, w, project):
    parent = f"projects/{project}/branches/production"
    replica = w.postgres.create_endpoint(parent, Endpoint(spec=EndpointSpec(endpoint_type=EndpointType.ENDPOINT_TYPE_READ_ONLY)),
                                         endpoint_id="replica").wait()
    assert replica.status.endpoint_type == EndpointType.ENDPOINT_TYPE_READ_ONLY
    with pytest.raises(InvalidParameterValue):
        w.postgres.create_endpoint(parent, Endpoint(spec=EndpointSpec(endpoint_type=EndpointType.ENDPOINT_TYPE_READ_WRITE)),
                                   endpoint_id="second-rw")
    with connect(kiln, w, primary(w, project)) as conn:
        conn.execute("CREATE TABLE rep (x int)")
        conn.execute("INSERT INTO rep VALUES (7)")
    with connect(kiln, w, replica) as conn:
        wait_for(lambda: _try_rows(conn, "SELECT x FROM rep") == [7], 30, "the replica to see the write")
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO rep VALUES (8)")
    w.postgres.delete_endpoint(replica.name).wait()
    with pytest.raises(NotFound):
        w.postgres.get_endpoint(replica.name)


def _try_rows(conn, sql):
    try:
        return rows(conn, sql)
    except psycopg.errors.UndefinedTable:
        return None


def test_scale_to_zero_and_wake_on_connect(kiln, w, project):
    ep = primary(w, project, "dev")
    w.postgres.update_endpoint(ep.name, Endpoint(spec=EndpointSpec(endpoint_type=EndpointType.ENDPOINT_TYPE_READ_WRITE,
                                                                    suspend_timeout_duration=Duration(seconds=1))),
                               FieldMask(field_mask=["spec.suspend_timeout_duration"])).wait()
    wait_for(lambda: primary(w, project, "dev").status.current_state == EndpointStatusState.IDLE, 30, "the endpoint to suspend")
    assert not postgres_procs(f"/b/{w.postgres.get_branch(ep.parent).uid}/pgdata"), "an IDLE endpoint has no postgres"
    with connect(kiln, w, ep) as conn:
        assert rows(conn, "SELECT x FROM fork ORDER BY x") == [10, 12]
    assert primary(w, project, "dev").status.current_state == EndpointStatusState.ACTIVE


def test_expired_foreign_and_forged_tokens_are_refused(kiln, w, project):
    ep = primary(w, project)
    short = w.postgres.generate_database_credential(endpoint=ep.name, ttl=Duration(seconds=1))
    time.sleep(1.5)
    with pytest.raises(psycopg.OperationalError, match="expired"):
        connect(kiln, w, ep, token=short.token)
    with pytest.raises(psycopg.OperationalError, match="not a valid"):
        connect(kiln, w, ep, token="kiln-pg-forged")
    with pytest.raises(InvalidParameterValue):
        w.postgres.generate_database_credential(endpoint=ep.name, ttl=Duration(seconds=7200))
    other = non_admin(kiln, w, "lb")
    theirs = other["w"]
    with pytest.raises(PermissionDenied):
        theirs.postgres.get_project(f"projects/{project}")
    with pytest.raises(PermissionDenied):
        theirs.postgres.generate_database_credential(endpoint=ep.name)
    own = pid("own")
    create_project(theirs, own)
    their_ep = primary(theirs, own)
    token = theirs.postgres.generate_database_credential(endpoint=their_ep.name).token
    with pytest.raises(psycopg.OperationalError, match="another identity"):
        connect(kiln, w, ep, token=token, user="admin")
    # a credential opens only the project it was issued for, even for its own identity
    admins = w.postgres.generate_database_credential(endpoint=ep.name).token
    with pytest.raises(psycopg.OperationalError, match="another project"):
        connect(kiln, w, their_ep, token=admins, user="admin")
    with connect(kiln, theirs, their_ep, token=token, user=other["name"]) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == other["name"]
    assert own in [p.project_id for p in w.postgres.list_projects()], "admins see every project"
    assert project not in [p.project_id for p in theirs.postgres.list_projects()]
    theirs.postgres.delete_project(f"projects/{own}").wait()


@pytest.mark.parametrize("setting", [
    "archive_command", "restore_command", "shared_preload_libraries", "listen_addresses",
    "ssl_key_file", "unix_socket_directories", "hba_file", "data_directory", "log_directory",
])  # fmt: skip
def test_pg_settings_outside_the_allowlist_are_refused(w, project, setting):
    ep = primary(w, project)
    with pytest.raises(InvalidParameterValue, match=setting):
        w.postgres.update_endpoint(
            name=ep.name,
            endpoint=Endpoint(spec=EndpointSpec(endpoint_type=EndpointType.ENDPOINT_TYPE_READ_WRITE, settings=EndpointSettings(pg_settings={setting: "x"}))),
            update_mask=FieldMask(field_mask=["spec.settings.pg_settings"]),
        ).wait()
    with pytest.raises(InvalidParameterValue, match=setting):
        create_project(w, pid("bad-pg"), default_endpoint_settings=ProjectDefaultEndpointSettings(pg_settings={setting: "x"}))
    assert setting not in (primary(w, project).status.settings.pg_settings or {})


def test_allowed_pg_settings_reach_postgres(kiln, w, project):
    ep = primary(w, project)
    w.postgres.update_endpoint(
        name=ep.name,
        endpoint=Endpoint(spec=EndpointSpec(endpoint_type=EndpointType.ENDPOINT_TYPE_READ_WRITE, settings=EndpointSettings(pg_settings={"work_mem": "7MB"}))),
        update_mask=FieldMask(field_mask=["spec.settings.pg_settings"]),
    ).wait()
    with connect(kiln, w, primary(w, project)) as conn:
        assert conn.execute("SHOW work_mem").fetchone()[0] == "7MB"


def test_protected_and_default_branches_refuse_delete(w, project):
    parent = f"projects/{project}"
    b = w.postgres.create_branch(parent, Branch(spec=BranchSpec(no_expiry=True, is_protected=True)), branch_id="keep").wait()
    with pytest.raises(BadRequest, match="protected"):
        w.postgres.delete_branch(b.name)
    w.postgres.update_branch(b.name, Branch(spec=BranchSpec(is_protected=False)), FieldMask(field_mask=["spec.is_protected"])).wait()
    assert not w.postgres.get_branch(b.name).status.is_protected
    w.postgres.delete_branch(b.name).wait()
    with pytest.raises(BadRequest, match="default branch"):
        w.postgres.delete_branch(f"{parent}/branches/production")


def test_restart_keeps_states_and_delete_cleans_up(kiln_factory):
    server = kiln_factory()
    w = server.client()
    project_id = pid("durable")
    create_project(w, project_id)
    ep = primary(w, project_id)
    with connect(server, w, ep) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (5)")
    branch_uid = w.postgres.get_branch(ep.parent).uid
    before = postgres_procs(f"/b/{branch_uid}/pgdata")
    assert before
    server.restart()
    wait_for(lambda: not any(p in postgres_procs(f"/b/{branch_uid}/pgdata") for p in before), 30, "old postgres to die")
    w = server.client()
    assert primary(w, project_id).status.current_state == EndpointStatusState.ACTIVE
    with connect(server, w, ep) as conn:
        assert rows(conn) == [5]
    data = Path(server.config["lakebase"]["dir"]) / "b" / branch_uid
    assert data.is_dir()
    w.postgres.delete_project(f"projects/{project_id}", purge=True).wait()
    assert not data.exists()
    wait_for(lambda: not postgres_procs(f"/b/{branch_uid}/pgdata"), 30, "postgres to stop after delete")
    with pytest.raises(NotFound):
        w.postgres.get_project(f"projects/{project_id}")


def test_operations_are_long_running_and_survive_a_crash(kiln_factory):
    """With no grace to finish in the request (operation_wait_ms = 0), a create
    answers `done: false`, the SDK's wait() polls the operation to its result,
    and an operation pending when Kiln is killed ends done after restart."""
    server = kiln_factory(lakebase={"operation_wait_ms": 0})
    w = server.client()
    s = server.http()
    project_id = pid("lro")
    r = s.post(server.url(f"/api/2.0/postgres/projects?project_id={project_id}"), json={"spec": {}})
    assert r.status_code == 200, r.text
    op = r.json()
    assert op["done"] is False and "response" not in op, op
    assert op["name"].startswith(f"projects/{project_id}/operations/")
    done = wait_for(lambda: (lambda o: o if o["done"] else None)(s.get(server.url(f"/api/2.0/postgres/{op['name']}")).json()),
                    120, "the operation to finish", 0.1)
    assert done["response"]["name"] == f"projects/{project_id}" and "error" not in done, done
    # validation failures are still the request's own errors, not operations
    dup = s.post(server.url(f"/api/2.0/postgres/projects?project_id={project_id}"), json={"spec": {}})
    assert dup.status_code == 409, dup.text
    # the SDK polls a pending operation to its result
    branch = w.postgres.create_branch(f"projects/{project_id}", Branch(spec=BranchSpec(no_expiry=True)), branch_id="dev").wait()
    assert branch.name == f"projects/{project_id}/branches/dev"
    # kill -9 while an operation may still run: after restart it is done, never stuck pending
    other = pid("lro-crash")
    pending = s.post(server.url(f"/api/2.0/postgres/projects?project_id={other}"), json={"spec": {}}).json()
    server.restart()
    after = server.http().get(server.url(f"/api/2.0/postgres/{pending['name']}")).json()
    assert after["done"] is True, after
    exists = server.http().get(server.url(f"/api/2.0/postgres/projects/{other}")).status_code == 200
    if "error" in after:
        assert after["error"]["error_code"] == "ABORTED" and not exists, after
    else:
        assert exists, after
    w = server.client()
    for p in (project_id, other):
        if server.http().get(server.url(f"/api/2.0/postgres/projects/{p}")).status_code == 200:
            w.postgres.delete_project(f"projects/{p}").wait()
