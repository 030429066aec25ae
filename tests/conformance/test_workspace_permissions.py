"""Permissions on workspace objects (notebooks, directories, files) with the SDK
as two identities: home folders are private, levels are enforced step by step,
grants on a directory are inherited by what is inside it, creators manage what
they create, and /Shared is open to every user."""

from __future__ import annotations

import base64
import io

import pytest
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.workspace import (
    ImportFormat,
    Language,
    WorkspaceObjectAccessControlRequest,
    WorkspaceObjectPermissionLevel as Level,
)

from kiln_helpers import non_admin, unique

SOURCE = "# Databricks notebook source\nprint('v1')\n"


@pytest.fixture(scope="module")
def dave(kiln, w):
    return non_admin(kiln, w, "dave")


@pytest.fixture
def admin_dir(w):
    """A directory in the admin's home folder with one notebook in it."""
    me = w.current_user.me().user_name
    path = f"/Users/{me}/{unique('wsperm')}"
    w.workspace.mkdirs(path)
    w.workspace.upload(f"{path}/nb", io.BytesIO(SOURCE.encode()), format=ImportFormat.SOURCE, language=Language.PYTHON)
    yield path
    w.workspace.delete(path, recursive=True)


def object_id(w, path):
    return str(w.workspace.get_status(path).object_id)


def grant(w, kind, oid, level, user=None, group=None):
    return w.workspace.update_permissions(kind, oid, access_control_list=[
        WorkspaceObjectAccessControlRequest(user_name=user, group_name=group, permission_level=level)])


def read_source(client, path):
    with client.workspace.download(path) as f:
        return f.read().decode()


def test_home_folders_are_private(w, dave, admin_dir):
    d = dave["w"]
    me = w.current_user.me().user_name
    with pytest.raises(PermissionDenied):
        d.workspace.get_status(f"{admin_dir}/nb")
    with pytest.raises(PermissionDenied):
        list(d.workspace.list(f"/Users/{me}"))
    with pytest.raises(PermissionDenied):
        read_source(d, f"{admin_dir}/nb")
    listed = {o.path for o in d.workspace.list("/Users")}
    assert f"/Users/{dave['name']}" in listed and f"/Users/{me}" not in listed
    # The owner of a home folder manages it; admins see everything.
    mine = f"/Users/{dave['name']}/{unique('own')}"
    d.workspace.upload(mine, io.BytesIO(SOURCE.encode()), format=ImportFormat.SOURCE, language=Language.PYTHON)
    assert read_source(w, mine) == SOURCE
    d.workspace.delete(mine)


def test_levels_are_enforced_and_inherited_from_directories(w, dave, admin_dir):
    d = dave["w"]
    nb = f"{admin_dir}/nb"
    dir_id, nb_id = object_id(w, admin_dir), object_id(w, nb)

    grant(w, "directories", dir_id, Level.CAN_READ, user=dave["name"])
    assert [o.path for o in d.workspace.list(admin_dir)] == [nb]
    assert read_source(d, nb) == SOURCE
    with pytest.raises(PermissionDenied):
        d.workspace.upload(nb, io.BytesIO(b"# Databricks notebook source\nprint('v2')\n"), format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    with pytest.raises(PermissionDenied):
        d.workspace.delete(nb)
    with pytest.raises(PermissionDenied):
        d.workspace.set_permissions("notebooks", nb_id, access_control_list=[])
    acl = d.workspace.get_permissions("notebooks", nb_id)
    assert acl.object_id == f"/notebooks/{nb_id}"
    mine = [a for a in acl.access_control_list if a.user_name == dave["name"]]
    assert mine and mine[0].all_permissions[0].inherited
    assert mine[0].all_permissions[0].inherited_from_object == [f"/directories/{dir_id}"]

    grant(w, "notebooks", nb_id, Level.CAN_EDIT, user=dave["name"])
    v2 = "# Databricks notebook source\nprint('v2')\n"
    d.workspace.upload(nb, io.BytesIO(v2.encode()), format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    assert read_source(w, nb) == v2
    with pytest.raises(PermissionDenied):
        d.workspace.mkdirs(f"{admin_dir}/sub")  # CAN_READ on the directory only
    with pytest.raises(PermissionDenied):
        d.workspace.update_permissions("notebooks", nb_id, access_control_list=[])

    grant(w, "notebooks", nb_id, Level.CAN_MANAGE, user=dave["name"])
    levels = {p.permission_level for p in d.workspace.get_permission_levels("notebooks", nb_id).permission_levels}
    assert levels == {Level.CAN_READ, Level.CAN_RUN, Level.CAN_EDIT, Level.CAN_MANAGE}
    d.workspace.delete(nb)
    with pytest.raises(NotFound):
        w.workspace.get_status(nb)


def test_revoking_a_grant_takes_access_away(w, dave, admin_dir):
    d = dave["w"]
    dir_id = object_id(w, admin_dir)
    grant(w, "directories", dir_id, Level.CAN_EDIT, user=dave["name"])
    d.workspace.import_(f"{admin_dir}/f.txt", content=base64.b64encode(b"x").decode(), format=ImportFormat.RAW)
    w.workspace.set_permissions("directories", dir_id, access_control_list=[])
    with pytest.raises(PermissionDenied):
        list(d.workspace.list(admin_dir))
    # What dave created stays his to manage (creators get CAN_MANAGE).
    assert read_source(d, f"{admin_dir}/f.txt") == "x"
    with pytest.raises(PermissionDenied):
        d.workspace.get_status(f"{admin_dir}/nb")


def test_creator_manages_what_it_creates_outside_its_home(w, dave, admin_dir):
    d = dave["w"]
    grant(w, "directories", object_id(w, admin_dir), Level.CAN_EDIT, user=dave["name"])
    d.workspace.mkdirs(f"{admin_dir}/sub/deeper")
    sub_id = object_id(d, f"{admin_dir}/sub")
    acl = d.workspace.get_permissions("directories", sub_id).access_control_list
    direct = [a for a in acl if a.user_name == dave["name"] and not a.all_permissions[0].inherited]
    assert direct and direct[0].all_permissions[0].permission_level == Level.CAN_MANAGE
    d.workspace.set_permissions("directories", sub_id, access_control_list=[
        WorkspaceObjectAccessControlRequest(user_name=dave["name"], permission_level=Level.CAN_MANAGE),
        WorkspaceObjectAccessControlRequest(group_name="users", permission_level=Level.CAN_READ)])
    with pytest.raises(PermissionDenied):
        d.workspace.set_permissions("directories", object_id(w, admin_dir), access_control_list=[])


def test_shared_folder_is_open_to_all_users(w, dave):
    d = dave["w"]
    path = f"/Shared/{unique('shared')}"
    d.workspace.mkdirs(path)
    d.workspace.upload(f"{path}/nb", io.BytesIO(SOURCE.encode()), format=ImportFormat.SOURCE, language=Language.PYTHON)
    assert read_source(w, f"{path}/nb") == SOURCE
    w.workspace.delete(path, recursive=True)


def test_wrong_object_type_or_id_is_not_found(w, admin_dir):
    with pytest.raises(NotFound):
        w.workspace.get_permissions("notebooks", object_id(w, admin_dir))
    with pytest.raises(NotFound):
        w.workspace.get_permissions("directories", "123456789")
