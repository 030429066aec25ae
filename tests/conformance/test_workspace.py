"""Workspace API 2.0 with the SDK: notebooks and files round-trip byte-exactly,
SOURCE notebooks are recognised, bad paths get Databricks' errors and change nothing."""

from __future__ import annotations

import base64
import io
import json

import pytest
from databricks.sdk.errors import BadRequest, NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

from kiln_helpers import unique


@pytest.fixture
def folder(w):
    me = w.current_user.me().user_name
    path = f"/Users/{me}/{unique('ws')}"
    w.workspace.mkdirs(path)
    yield path
    w.workspace.delete(path, recursive=True)


def test_home_and_shared_exist(w):
    me = w.current_user.me().user_name
    assert w.workspace.get_status(f"/Users/{me}").object_type == ObjectType.DIRECTORY
    assert w.workspace.get_status("/Shared").object_type == ObjectType.DIRECTORY


def test_source_notebook_upload_download(w, folder):
    source = "# Databricks notebook source\nprint('hi')\n\n# COMMAND ----------\n\nx = 1\n"
    w.workspace.upload(f"{folder}/nb", io.BytesIO(source.encode()), format=ImportFormat.SOURCE, language=Language.PYTHON)
    status = w.workspace.get_status(f"{folder}/nb")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.PYTHON)
    with w.workspace.download(f"{folder}/nb", format=ExportFormat.SOURCE) as f:
        assert f.read().decode() == source


def test_auto_import_recognises_sql_notebooks(w, folder):
    sql = "-- Databricks notebook source\nSELECT 1\n"
    w.workspace.import_(f"{folder}/q", content=base64.b64encode(sql.encode()).decode(), format=ImportFormat.AUTO)
    status = w.workspace.get_status(f"{folder}/q")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.SQL)
    exported = w.workspace.export(f"{folder}/q", format=ExportFormat.SOURCE)
    assert base64.b64decode(exported.content).decode() == sql


def test_binary_file_round_trip_is_byte_exact(w, folder):
    data = bytes(range(256)) * 10
    w.workspace.upload(f"{folder}/blob.bin", io.BytesIO(data), format=ImportFormat.AUTO)
    status = w.workspace.get_status(f"{folder}/blob.bin")
    assert status.object_type == ObjectType.FILE
    with w.workspace.download(f"{folder}/blob.bin") as f:
        assert f.read() == data


def test_jupyter_round_trip(w, folder):
    ipynb = {"cells": [{"cell_type": "code", "source": ["a = 1\n", "a + 1"], "metadata": {}, "outputs": []}],
             "metadata": {"language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    w.workspace.import_(f"{folder}/j", content=base64.b64encode(json.dumps(ipynb).encode()).decode(), format=ImportFormat.JUPYTER)
    assert w.workspace.get_status(f"{folder}/j").object_type == ObjectType.NOTEBOOK
    exported = json.loads(base64.b64decode(w.workspace.export(f"{folder}/j", format=ExportFormat.JUPYTER).content))
    assert exported["cells"][0]["source"] == "a = 1\na + 1"


def test_list_and_recursive_list(w, folder):
    w.workspace.mkdirs(f"{folder}/a/b")
    w.workspace.upload(f"{folder}/a/b/f.txt", io.BytesIO(b"x"), format=ImportFormat.AUTO)
    assert [o.path for o in w.workspace.list(folder)] == [f"{folder}/a"]
    assert f"{folder}/a/b/f.txt" in [o.path for o in w.workspace.list(folder, recursive=True)]


def test_errors_change_nothing(w, folder):
    w.workspace.upload(f"{folder}/f.txt", io.BytesIO(b"one"), format=ImportFormat.AUTO)
    with pytest.raises(ResourceAlreadyExists):
        w.workspace.upload(f"{folder}/f.txt", io.BytesIO(b"two"), format=ImportFormat.AUTO)
    with w.workspace.download(f"{folder}/f.txt") as f:
        assert f.read() == b"one"
    w.workspace.upload(f"{folder}/f.txt", io.BytesIO(b"two"), format=ImportFormat.AUTO, overwrite=True)
    with w.workspace.download(f"{folder}/f.txt") as f:
        assert f.read() == b"two"
    with pytest.raises(NotFound):
        w.workspace.upload(f"{folder}/missing/f.txt", io.BytesIO(b"x"), format=ImportFormat.AUTO)
    with pytest.raises(BadRequest):
        w.workspace.import_("relative/path", content="", format=ImportFormat.AUTO)
    with pytest.raises(BadRequest):
        w.workspace.import_(f"{folder}/../../escape", content="", format=ImportFormat.AUTO)
    with pytest.raises(NotFound):
        w.workspace.get_status(f"{folder}/nothing")
    w.workspace.mkdirs(f"{folder}/full/inner")
    with pytest.raises(BadRequest):
        w.workspace.delete(f"{folder}/full")
    assert w.workspace.get_status(f"{folder}/full/inner").object_type == ObjectType.DIRECTORY
