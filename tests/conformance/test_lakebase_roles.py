"""Lakebase roles and databases with the SDK (`w.postgres.*_role`, `*_database`,
`reveal_role_password`) on real PostgreSQL: password roles logging in with psql's
protocol (psycopg) through Kiln's TLS proxy when the project allows native login,
rotation, identity roles with OAuth credentials, grants really applied, roles and
databases copied into branches, databases created, renamed, re-owned and dropped."""

from __future__ import annotations

import socket
import ssl
import struct

import psycopg
import pytest
from databricks.sdk.common.types.fieldmask import FieldMask
from databricks.sdk.errors import AlreadyExists, InvalidParameterValue, NotFound, PermissionDenied
from databricks.sdk.service.postgres import (
    Branch,
    BranchSpec,
    Database,
    DatabaseDatabaseSpec,
    Project,
    ProjectSpec,
    Role,
    RoleAttributes,
    RoleAuthMethod,
    RoleIdentityType,
    RoleMembershipRole,
    RoleRoleSpec,
)

from kiln_helpers import non_admin
from test_lakebase import DB, connect, pid, primary


def password_login(kiln, endpoint, user, password, dbname=DB):
    return psycopg.connect(host=endpoint.status.hosts.host, hostaddr="127.0.0.1", port=kiln.pg_port, user=user,
                           password=password, dbname=dbname, sslmode="require", connect_timeout=30,
                           autocommit=True)  # fmt: skip


def auth_request(kiln, endpoint, user):
    """The authentication the proxy asks for (code, mechanisms) after a TLS startup as `user`."""
    raw = socket.create_connection(("127.0.0.1", kiln.pg_port), timeout=30)
    raw.sendall(struct.pack("!ii", 8, 80877103))
    assert raw.recv(1) == b"S"
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    tls = context.wrap_socket(raw, server_hostname=endpoint.status.hosts.host)
    params = b"user\0" + user.encode() + b"\0database\0" + DB.encode() + b"\0\0"
    tls.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    kind, length = struct.unpack("!ci", tls.recv(5))
    body = tls.recv(length - 4)
    tls.close()
    assert kind == b"R", (kind, body)
    return struct.unpack("!i", body[:4])[0], body[4:]


@pytest.fixture(scope="module")
def project(w):
    project_id = pid("roles")
    w.postgres.create_project(project=Project(spec=ProjectSpec(enable_pg_native_login=True)), project_id=project_id).wait()
    yield project_id
    w.postgres.delete_project(f"projects/{project_id}").wait()


def test_a_password_role_logs_in_and_rotates(kiln, w, project):
    branch = f"projects/{project}/branches/production"
    role = w.postgres.create_role(parent=branch, role_id="app-writer", role=Role(spec=RoleRoleSpec(
        postgres_role="app_writer", attributes=RoleAttributes(createdb=True)))).wait()  # fmt: skip
    assert role.name == f"{branch}/roles/app-writer"
    assert role.status.auth_method == RoleAuthMethod.PG_PASSWORD_SCRAM_SHA_256
    assert role.status.postgres_role == "app_writer" and role.status.attributes.createdb
    password = w.postgres.reveal_role_password(role.name).password
    assert len(password) >= 24
    ep = primary(w, project)
    with password_login(kiln, ep, "app_writer", password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app_writer",)
        flags = conn.execute("SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'app_writer'").fetchone()
        assert flags == (True, False)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        password_login(kiln, ep, "app_writer", password + "x")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        password_login(kiln, ep, "admin", password)  # another role's password
    # rotation: setting the password method again makes a new password; the old one stops working
    w.postgres.update_role(role.name, Role(spec=RoleRoleSpec(auth_method=RoleAuthMethod.PG_PASSWORD_SCRAM_SHA_256)),
                           update_mask=FieldMask(field_mask=["spec.auth_method"])).wait()  # fmt: skip
    rotated = w.postgres.reveal_role_password(role.name).password
    assert rotated != password
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        password_login(kiln, ep, "app_writer", password)
    with password_login(kiln, ep, "app_writer", rotated) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # the proxy asks a password role for SCRAM-SHA-256 (the password never crosses the wire), and an
    # identity role for its Lakebase credential as a cleartext password inside TLS
    assert auth_request(kiln, ep, "app_writer") == (10, b"SCRAM-SHA-256\0\0")
    assert auth_request(kiln, ep, "admin") == (3, b"")
    # the password is sealed at rest: not in Kiln's store in clear
    db = (kiln.data_dir / "kiln.db").read_bytes() + (kiln.data_dir / "kiln.db-wal").read_bytes()
    assert rotated.encode() not in db
    # native login off for the project: refused, with the reason
    w.postgres.update_project(f"projects/{project}", Project(spec=ProjectSpec(enable_pg_native_login=False)),
                              update_mask=FieldMask(field_mask=["spec.enable_pg_native_login"])).wait()  # fmt: skip
    with pytest.raises(psycopg.OperationalError, match="enable_pg_native_login"):
        password_login(kiln, ep, "app_writer", rotated)
    w.postgres.update_project(f"projects/{project}", Project(spec=ProjectSpec(enable_pg_native_login=True)),
                              update_mask=FieldMask(field_mask=["spec.enable_pg_native_login"])).wait()  # fmt: skip


def test_grants_apply_and_roles_follow_into_branches(kiln, w, project):
    branch = f"projects/{project}/branches/production"
    reader = w.postgres.create_role(parent=branch, role_id="reader", role=Role(spec=RoleRoleSpec(
        postgres_role="reader"))).wait()  # fmt: skip
    ep = primary(w, project)
    with connect(kiln, w, ep) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS secrets_t (x int)")
        conn.execute("CREATE TABLE IF NOT EXISTS open_t (x int)")
        conn.execute("INSERT INTO open_t VALUES (7)")
        conn.execute("GRANT SELECT ON open_t TO reader")
    password = w.postgres.reveal_role_password(reader.name).password
    with password_login(kiln, ep, "reader", password) as conn:
        assert conn.execute("SELECT x FROM open_t").fetchall() == [(7,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT x FROM secrets_t")
    # membership in databricks_superuser gives read/write on everything
    w.postgres.update_role(reader.name, Role(spec=RoleRoleSpec(membership_roles=[RoleMembershipRole.DATABRICKS_SUPERUSER])),
                           update_mask=FieldMask(field_mask=["spec.membership_roles"])).wait()  # fmt: skip
    with password_login(kiln, ep, "reader", password) as conn:
        assert conn.execute("SELECT count(*) FROM secrets_t").fetchone() == (0,)
    # a branch has the same roles (Postgres copied them) and the same passwords
    dev = w.postgres.create_branch(f"projects/{project}", Branch(spec=BranchSpec(no_expiry=True)), branch_id="dev").wait()
    roles = {r.role_id for r in w.postgres.list_roles(dev.name)}
    assert {"reader", "app-writer"} <= roles, roles
    dev_ep = primary(w, project, "dev")
    with password_login(kiln, dev_ep, "reader", w.postgres.reveal_role_password(f"{dev.name}/roles/reader").password) as conn:
        assert conn.execute("SELECT x FROM open_t").fetchall() == [(7,)]
    w.postgres.delete_branch(dev.name).wait()


def test_identity_roles_use_oauth_credentials(kiln, w, project):
    person = non_admin(kiln, w, "lbrole")
    branch = f"projects/{project}/branches/production"
    with pytest.raises(InvalidParameterValue):
        w.postgres.create_role(parent=branch, role_id="ghost", role=Role(spec=RoleRoleSpec(
            postgres_role="nobody@example.com", identity_type=RoleIdentityType.USER))).wait()  # fmt: skip
    role = w.postgres.create_role(parent=branch, role_id="person", role=Role(spec=RoleRoleSpec(
        postgres_role=person["name"], identity_type=RoleIdentityType.USER))).wait()  # fmt: skip
    assert role.status.auth_method == RoleAuthMethod.LAKEBASE_OAUTH_V1
    with pytest.raises(Exception, match="does not log in with a password"):
        w.postgres.reveal_role_password(role.name)
    ep = primary(w, project)
    # the owner's credential does not log in as the person; the person's own does (its role gives access)
    with pytest.raises(psycopg.OperationalError):
        connect(kiln, w, ep, user=person["name"])
    token = person["w"].postgres.generate_database_credential(endpoint=ep.name).token
    with connect(kiln, w, ep, token=token, user=person["name"]) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (person["name"],)
    with pytest.raises(PermissionDenied, match="has no access to project"):  # not on another branch of the project
        person["w"].postgres.generate_database_credential(endpoint=f"projects/{project}/branches/nope/endpoints/primary")
    owner_roles = [r for r in w.postgres.list_roles(branch) if r.status.postgres_role == "admin"]
    assert owner_roles and owner_roles[0].status.identity_type == RoleIdentityType.USER
    with pytest.raises(AlreadyExists):
        w.postgres.create_role(parent=branch, role_id="again", role=Role(spec=RoleRoleSpec(postgres_role=person["name"],
                               identity_type=RoleIdentityType.USER))).wait()  # fmt: skip
    for bad in ["pg_evil", "kiln_admin", "databricks_superuser", ""]:
        with pytest.raises(InvalidParameterValue):
            w.postgres.create_role(parent=branch, role=Role(spec=RoleRoleSpec(postgres_role=bad))).wait()
    w.postgres.delete_role(role.name).wait()
    with pytest.raises(NotFound):
        w.postgres.get_role(role.name)


def test_databases_created_renamed_reowned_and_dropped(kiln, w, project):
    branch = f"projects/{project}/branches/production"
    listed = {d.database_id: d.status.postgres_database for d in w.postgres.list_databases(branch)}
    assert listed.get("databricks-postgres") == DB
    owner = w.postgres.create_role(parent=branch, role_id="shop-owner", role=Role(spec=RoleRoleSpec(
        postgres_role="shop_owner"))).wait()  # fmt: skip
    db = w.postgres.create_database(parent=branch, database_id="shop-db", database=Database(spec=DatabaseDatabaseSpec(
        postgres_database="shop", role=owner.name))).wait()  # fmt: skip
    assert (db.name, db.status.postgres_database, db.status.role) == (f"{branch}/databases/shop-db", "shop", owner.name)
    ep = primary(w, project)
    password = w.postgres.reveal_role_password(owner.name).password
    with password_login(kiln, ep, "shop_owner", password, dbname="shop") as conn:
        assert conn.execute("SELECT current_database(), pg_get_userbyid(datdba) FROM pg_database "
                            "WHERE datname = current_database()").fetchone() == ("shop", "shop_owner")  # fmt: skip
        conn.execute("CREATE TABLE orders (id int)")
    with pytest.raises(AlreadyExists):
        w.postgres.create_database(parent=branch, database_id="shop-two", database=Database(spec=DatabaseDatabaseSpec(
            postgres_database="shop", role=owner.name))).wait()  # fmt: skip
    # a role that owns objects cannot be dropped unless they are reassigned
    with pytest.raises(Exception, match="cannot be dropped because some objects depend on it"):
        w.postgres.delete_role(owner.name).wait()
    renamed = w.postgres.update_database(db.name, Database(spec=DatabaseDatabaseSpec(postgres_database="shop_v2", role=owner.name)),
                                         update_mask=FieldMask(field_mask=["spec.postgres_database"])).wait()  # fmt: skip
    assert renamed.status.postgres_database == "shop_v2"
    admin_role = next(r for r in w.postgres.list_roles(branch) if r.status.postgres_role == "admin")
    w.postgres.delete_role(owner.name, reassign_owned_to=admin_role.name).wait()
    assert w.postgres.get_database(db.name).status.role == admin_role.name
    with connect(kiln, w, ep) as conn:
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop_v2'").fetchone() == ("admin",)
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'shop_owner'").fetchone() == (0,)
    w.postgres.delete_database(db.name).wait()
    with connect(kiln, w, ep) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'shop_v2'").fetchone() == (0,)
    with pytest.raises(NotFound):
        w.postgres.get_database(db.name)
