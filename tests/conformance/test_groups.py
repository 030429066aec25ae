"""SCIM Groups with the SDK: built-in admins/users, custom groups with members,
membership changes through PATCH, and grants to a group applying to its members
(clusters, workspace objects, secret scopes) and to nobody else."""

from __future__ import annotations

import pytest
from databricks.sdk.errors import BadRequest, NotFound, PermissionDenied, ResourceAlreadyExists
from databricks.sdk.service import iam
from databricks.sdk.service.compute import ClusterAccessControlRequest, ClusterPermissionLevel

from kiln_helpers import non_admin, unique

SPARK_VERSION = "16.4.x-scala2.12"
PATCH = [iam.PatchSchema.URN_IETF_PARAMS_SCIM_API_MESSAGES_2_0_PATCH_OP]


@pytest.fixture(scope="module")
def erin(kiln, w):
    user = non_admin(kiln, w, "erin")
    user["id"] = user["w"].current_user.me().id
    return user


def member_ids(w, group_id):
    return {m.value for m in (w.groups.get(group_id).members or [])}


def test_builtin_groups_exist_with_their_members(w, erin):
    by_name = {g.display_name: g for g in w.groups.list()}
    assert {"admins", "users"} <= set(by_name)
    assert erin["id"] in member_ids(w, by_name["users"].id)
    assert erin["id"] not in member_ids(w, by_name["admins"].id)
    with pytest.raises(BadRequest):
        w.groups.delete(by_name["users"].id)


def test_custom_group_lifecycle(w, erin):
    name = unique("analysts")
    g = w.groups.create(display_name=name, members=[iam.ComplexValue(value=erin["id"])])
    assert g.display_name == name and member_ids(w, g.id) == {erin["id"]}
    assert [x.id for x in w.groups.list(filter=f'displayName eq "{name}"')] == [g.id]
    assert name in {x.display for x in erin["w"].current_user.me().groups}
    with pytest.raises(ResourceAlreadyExists):
        w.groups.create(display_name=name)
    with pytest.raises(PermissionDenied):
        erin["w"].groups.create(display_name=unique("nope"))

    w.groups.patch(g.id, schemas=PATCH, operations=[
        iam.Patch(op=iam.PatchOp.REMOVE, path=f'members[value eq "{erin["id"]}"]')])
    assert member_ids(w, g.id) == set()
    w.groups.patch(g.id, schemas=PATCH, operations=[
        iam.Patch(op=iam.PatchOp.ADD, value={"members": [{"value": erin["id"]}]})])
    assert member_ids(w, g.id) == {erin["id"]}
    with pytest.raises(BadRequest):
        w.groups.patch(g.id, schemas=PATCH, operations=[
            iam.Patch(op=iam.PatchOp.ADD, value={"members": [{"value": "999999999"}]})])
    assert member_ids(w, g.id) == {erin["id"]}, "a refused PATCH changes nothing"

    w.groups.delete(g.id)
    with pytest.raises(NotFound):
        w.groups.get(g.id)


def test_group_grants_apply_to_members_only(kiln, w, erin):
    frank = non_admin(kiln, w, "frank")
    g = w.groups.create(display_name=unique("eng"), members=[iam.ComplexValue(value=erin["id"])])
    cid = w.clusters.create(cluster_name=unique("grp"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    w.clusters.update_permissions(cid, access_control_list=[
        ClusterAccessControlRequest(group_name=g.display_name, permission_level=ClusterPermissionLevel.CAN_ATTACH_TO)])
    assert erin["w"].clusters.get(cid).cluster_id == cid
    assert cid in [c.cluster_id for c in erin["w"].clusters.list()]
    with pytest.raises(PermissionDenied):
        frank["w"].clusters.get(cid)
    assert cid not in [c.cluster_id for c in frank["w"].clusters.list()]

    scope = unique("grp-scope")
    w.secrets.create_scope(scope)
    w.secrets.put_secret(scope, "k", string_value="group-visible")
    w.secrets.put_acl(scope, g.display_name, iam_acl_read())
    assert erin["w"].secrets.get_secret(scope, "k").value
    with pytest.raises(PermissionDenied):
        frank["w"].secrets.get_secret(scope, "k")

    # Leaving the group takes the access away (the cached cluster list too).
    w.groups.patch(g.id, schemas=PATCH, operations=[
        iam.Patch(op=iam.PatchOp.REMOVE, path=f'members[value eq "{erin["id"]}"]')])
    with pytest.raises(PermissionDenied):
        erin["w"].clusters.get(cid)
    assert cid not in [c.cluster_id for c in erin["w"].clusters.list()]
    with pytest.raises(PermissionDenied):
        erin["w"].secrets.get_secret(scope, "k")
    w.secrets.delete_scope(scope)
    w.clusters.permanent_delete(cid)
    w.groups.delete(g.id)


def test_granting_to_an_unknown_group_is_refused(w):
    cid = w.clusters.create(cluster_name=unique("grp-x"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    with pytest.raises(BadRequest):
        w.clusters.update_permissions(cid, access_control_list=[
            ClusterAccessControlRequest(group_name=unique("ghost"), permission_level=ClusterPermissionLevel.CAN_ATTACH_TO)])
    w.clusters.permanent_delete(cid)


def test_adding_to_admins_makes_an_admin(kiln, w):
    gina = non_admin(kiln, w, "gina")
    gid = gina["w"].current_user.me().id
    admins = next(g for g in w.groups.list() if g.display_name == "admins")
    with pytest.raises(PermissionDenied):
        gina["w"].groups.create(display_name=unique("x"))
    w.groups.patch(admins.id, schemas=PATCH, operations=[
        iam.Patch(op=iam.PatchOp.ADD, path="members", value=[{"value": gid}])])
    g = gina["w"].groups.create(display_name=unique("by-gina"))
    gina["w"].groups.delete(g.id)
    w.groups.patch(admins.id, schemas=PATCH, operations=[
        iam.Patch(op=iam.PatchOp.REMOVE, path=f'members[value eq "{gid}"]')])
    with pytest.raises(PermissionDenied):
        gina["w"].groups.create(display_name=unique("y"))


def iam_acl_read():
    from databricks.sdk.service.workspace import AclPermission

    return AclPermission.READ
