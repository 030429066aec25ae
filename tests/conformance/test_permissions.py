"""Permissions on clusters, enforced for a non-admin identity level by level;
grants to groups apply to their members; unsupported object types answer 501."""

from __future__ import annotations

import pytest
from databricks.sdk.errors import NotImplemented as NotImplementedError_
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.compute import ClusterAccessControlRequest, ClusterPermissionLevel, Language

from kiln_helpers import non_admin, unique

SPARK_VERSION = "16.4.x-scala2.12"


@pytest.fixture(scope="module")
def carol(kiln, w):
    return non_admin(kiln, w, "carol")


def grant(w, cluster_id, level, user=None, group=None):
    w.clusters.update_permissions(cluster_id, access_control_list=[
        ClusterAccessControlRequest(user_name=user, group_name=group, permission_level=level)])


def test_levels_are_enforced_step_by_step(w, carol):
    c = carol["w"]
    cid = w.clusters.create_and_wait(cluster_name=unique("perm"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    assert cid not in [x.cluster_id for x in c.clusters.list()]
    with pytest.raises(PermissionDenied):
        c.clusters.get(cid)
    with pytest.raises(PermissionDenied):
        c.command_execution.create(cluster_id=cid, language=Language.PYTHON)

    grant(w, cid, ClusterPermissionLevel.CAN_ATTACH_TO, user=carol["name"])
    assert cid in [x.cluster_id for x in c.clusters.list()]
    ctx = c.command_execution.create_and_wait(cluster_id=cid, language=Language.PYTHON)
    r = c.command_execution.execute_and_wait(cluster_id=cid, context_id=ctx.id, language=Language.PYTHON, command="6*7")
    assert (r.status.value, r.results.data) == ("Finished", "42")
    with pytest.raises(PermissionDenied):
        c.clusters.restart(cid)
    with pytest.raises(PermissionDenied):
        c.clusters.set_permissions(cid, access_control_list=[])

    grant(w, cid, ClusterPermissionLevel.CAN_RESTART, user=carol["name"])
    c.clusters.restart_and_wait(cid)
    with pytest.raises(PermissionDenied):
        c.clusters.delete(cid)

    grant(w, cid, ClusterPermissionLevel.CAN_MANAGE, user=carol["name"])
    levels = {p.permission_level for p in c.clusters.get_permission_levels(cid).permission_levels}
    assert levels == {ClusterPermissionLevel.CAN_ATTACH_TO, ClusterPermissionLevel.CAN_RESTART, ClusterPermissionLevel.CAN_MANAGE}
    acl = {a.user_name: a.all_permissions[0].permission_level for a in c.clusters.get_permissions(cid).access_control_list if a.user_name}
    assert acl[carol["name"]] == ClusterPermissionLevel.CAN_MANAGE
    c.clusters.delete_and_wait(cid)
    w.clusters.permanent_delete(cid)


def test_group_grants_apply_to_members(w, carol):
    cid = w.clusters.create(cluster_name=unique("perm-group"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    with pytest.raises(PermissionDenied):
        carol["w"].clusters.get(cid)
    grant(w, cid, ClusterPermissionLevel.CAN_ATTACH_TO, group="users")
    assert carol["w"].clusters.get(cid).cluster_id == cid
    w.clusters.set_permissions(cid, access_control_list=[])
    with pytest.raises(PermissionDenied):
        carol["w"].clusters.get(cid)
    w.clusters.permanent_delete(cid)


def test_creator_manages_own_cluster(w, carol):
    c = carol["w"]
    cid = c.clusters.create(cluster_name=unique("carols"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    assert c.clusters.get(cid).creator_user_name == carol["name"]
    assert cid in [x.cluster_id for x in w.clusters.list()], "admins see every cluster"
    c.clusters.permanent_delete(cid)


def test_unsupported_object_types_are_501(w):
    with pytest.raises(NotImplementedError_):
        w.permissions.get(request_object_type="dashboards", request_object_id="x")
    # Pipelines, jobs and warehouses are served: a missing one is reported as such.
    with pytest.raises(NotFound):
        w.permissions.get(request_object_type="warehouses", request_object_id="x")
    with pytest.raises(NotFound):
        w.permissions.get(request_object_type="jobs", request_object_id="424242")
    with pytest.raises(NotFound):
        w.permissions.get(request_object_type="pipelines", request_object_id="x")
