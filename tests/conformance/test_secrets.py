"""Secrets API 2.0 as two identities: ACLs enforced for the non-admin, values
readable in code through dbutils.secrets, redacted from every command output,
and never stored in plaintext."""

from __future__ import annotations

import base64
import os

import pytest
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service.compute import ClusterAccessControlRequest, ClusterPermissionLevel, Language
from databricks.sdk.service.workspace import AclPermission

from kiln_helpers import non_admin, unique

SPARK_VERSION = "16.4.x-scala2.12"


@pytest.fixture(scope="module")
def bob(kiln, w):
    return non_admin(kiln, w, "bob")


@pytest.fixture(scope="module")
def cluster(w, bob):
    cluster_id = w.clusters.create_and_wait(cluster_name=unique("secrets"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    # bob may attach to the cluster; what he may read is decided by the secret ACLs alone
    w.clusters.update_permissions(cluster_id, access_control_list=[
        ClusterAccessControlRequest(user_name=bob["name"], permission_level=ClusterPermissionLevel.CAN_ATTACH_TO)])
    return cluster_id


@pytest.fixture
def scope(w):
    name = unique("scope")
    w.secrets.create_scope(scope=name)
    yield name
    w.secrets.delete_scope(scope=name)


def run(client, cluster_id, code):
    ctx = client.command_execution.create_and_wait(cluster_id=cluster_id, language=Language.PYTHON)
    try:
        r = client.command_execution.execute_and_wait(cluster_id=cluster_id, context_id=ctx.id, language=Language.PYTHON, command=code)
        return r.status.value, r.results.as_dict()
    finally:
        client.command_execution.destroy(cluster_id=cluster_id, context_id=ctx.id)


def test_scope_and_secret_round_trip(w, scope):
    w.secrets.put_secret(scope=scope, key="text", string_value="hello secret")
    w.secrets.put_secret(scope=scope, key="bin", bytes_value=base64.b64encode(b"\x00\xffbytes").decode())
    assert scope in [s.name for s in w.secrets.list_scopes()]
    assert sorted(s.key for s in w.secrets.list_secrets(scope=scope)) == ["bin", "text"]
    assert base64.b64decode(w.secrets.get_secret(scope=scope, key="text").value) == b"hello secret"
    assert base64.b64decode(w.secrets.get_secret(scope=scope, key="bin").value) == b"\x00\xffbytes"
    w.secrets.delete_secret(scope=scope, key="bin")
    with pytest.raises(NotFound):
        w.secrets.get_secret(scope=scope, key="bin")
    with pytest.raises(ResourceAlreadyExists):
        w.secrets.create_scope(scope=scope)


def test_acls_are_enforced_for_a_non_admin(w, bob, scope):
    w.secrets.put_secret(scope=scope, key="k", string_value="v1")
    with pytest.raises(PermissionDenied):
        bob["w"].secrets.get_secret(scope=scope, key="k")
    with pytest.raises(PermissionDenied):
        bob["w"].secrets.list_secrets(scope=scope)
    w.secrets.put_acl(scope=scope, principal=bob["name"], permission=AclPermission.READ)
    assert base64.b64decode(bob["w"].secrets.get_secret(scope=scope, key="k").value) == b"v1"
    with pytest.raises(PermissionDenied):
        bob["w"].secrets.put_secret(scope=scope, key="k", string_value="overwritten")
    with pytest.raises(PermissionDenied):
        bob["w"].secrets.put_acl(scope=scope, principal=bob["name"], permission=AclPermission.MANAGE)
    acls = {a.principal: a.permission for a in w.secrets.list_acls(scope=scope)}
    assert acls[bob["name"]] == AclPermission.READ
    w.secrets.delete_acl(scope=scope, principal=bob["name"])
    with pytest.raises(PermissionDenied):
        bob["w"].secrets.get_secret(scope=scope, key="k")


def test_dbutils_secrets_in_code_respects_acls_and_redacts(w, bob, scope, cluster):
    value = "kiln-" + unique("value")
    w.secrets.put_secret(scope=scope, key="password", string_value=value)
    status, results = run(bob["w"], cluster, f"dbutils.secrets.get('{scope}', 'password')")
    assert status == "Error" and "PERMISSION_DENIED" in results["summary"]
    w.secrets.put_acl(scope=scope, principal=bob["name"], permission=AclPermission.READ)
    code = f"v = dbutils.secrets.get('{scope}', 'password')\nprint('the password is', v)\nprint(len(v))\nv"
    status, results = run(bob["w"], cluster, code)
    assert status == "Finished", results
    assert value not in results["data"]
    assert results["data"] == f"the password is [REDACTED]\n{len(value)}\n'[REDACTED]'"
    status, results = run(w, cluster, f"display(spark.createDataFrame([(dbutils.secrets.get('{scope}', 'password'),)], 's string'))")
    assert status == "Finished" and results["data"] == [["[REDACTED]"]]
    status, results = run(w, cluster, f"raise ValueError(dbutils.secrets.get('{scope}', 'password'))")
    assert status == "Error" and value not in results["summary"] + results["cause"]


def test_secret_values_are_not_stored_in_plaintext(kiln, w, scope):
    value = "plaintext-canary-" + unique("v")
    w.secrets.put_secret(scope=scope, key="canary", string_value=value)
    needle = value.encode()
    for root, _dirs, files in os.walk(kiln.data_dir):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                assert needle not in f.read(), f"secret found in plaintext in {path}"
    key_file = kiln.data_dir / "secrets.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
