"""DBFS API 2.0: binary and text round trips through the SDK (put, streaming
upload, download), multipart put, traversal refused, and the same files seen
by code running on a cluster."""

from __future__ import annotations

import base64
import io
import os

import pytest
from databricks.sdk.errors import NotFound, ResourceAlreadyExists
from databricks.sdk.service.compute import Language

from kiln_helpers import unique

SPARK_VERSION = "16.4.x-scala2.12"


def test_put_read_status_list_delete(w):
    root = "/" + unique("dbfs")
    w.dbfs.mkdirs(root)
    data = bytes(range(256)) * 3
    w.dbfs.put(f"{root}/bin.dat", contents=base64.b64encode(data).decode())
    w.dbfs.put(f"dbfs:{root}/hello.txt", contents=base64.b64encode("héllo wörld\n".encode()).decode())
    status = w.dbfs.get_status(f"{root}/bin.dat")
    assert (status.is_dir, status.file_size) == (False, len(data))
    read = w.dbfs.read(f"{root}/bin.dat", offset=10, length=20)
    assert (read.bytes_read, base64.b64decode(read.data)) == (20, data[10:30])
    assert sorted(f.path for f in w.dbfs.list(root)) == [f"{root}/bin.dat", f"{root}/hello.txt"]
    with pytest.raises(ResourceAlreadyExists):
        w.dbfs.put(f"{root}/bin.dat", contents=base64.b64encode(b"x").decode())
    w.dbfs.put(f"{root}/bin.dat", contents=base64.b64encode(b"new").decode(), overwrite=True)
    assert base64.b64decode(w.dbfs.read(f"{root}/bin.dat").data) == b"new"
    w.dbfs.move_(f"{root}/hello.txt", f"{root}/sub/hello.txt")
    assert base64.b64decode(w.dbfs.read(f"{root}/sub/hello.txt").data).decode() == "héllo wörld\n"
    w.dbfs.delete(root, recursive=True)
    with pytest.raises(NotFound):
        w.dbfs.get_status(root)


def test_streaming_upload_and_download_of_a_multi_block_file(w):
    path = "/" + unique("big") + ".bin"
    data = os.urandom(2 * 1024 * 1024 + 12345)
    w.dbfs.upload(path, io.BytesIO(data), overwrite=True)
    assert w.dbfs.get_status(path).file_size == len(data)
    with w.dbfs.download(path) as f:
        assert f.read() == data
    w.dbfs.delete(path)


def test_multipart_put(kiln, w):
    path = "/" + unique("multipart") + ".bin"
    payload = b"\x00\x01binary\xff\xfe"
    response = kiln.http().post(kiln.url("/api/2.0/dbfs/put"), data={"path": path, "overwrite": "true"}, files={"contents": ("x.bin", payload)})
    assert response.status_code == 200, response.text
    assert base64.b64decode(w.dbfs.read(path).data) == payload


@pytest.mark.parametrize("path", ["/../../etc/passwd", "dbfs:/a/../../outside", "relative/file"])
def test_paths_never_escape(kiln, path):
    response = kiln.http().get(kiln.url("/api/2.0/dbfs/get-status"), params={"path": path})
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_symlinks_cannot_escape(kiln, w):
    link = kiln.dbfs_dir / unique("link")
    os.symlink("/etc", link)
    response = kiln.http().get(kiln.url("/api/2.0/dbfs/read"), params={"path": f"/{link.name}/hostname"})
    assert response.status_code == 400, response.text


def test_engines_see_what_the_api_wrote(w):
    root = "/" + unique("shared")
    w.dbfs.put(f"{root}/people.csv", contents=base64.b64encode(b"name,age\nada,36\nalan,41\n").decode())
    cluster = w.clusters.create_and_wait(cluster_name=unique("dbfs"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON)
    code = (
        f"names = [f.name for f in dbutils.fs.ls('dbfs:{root}')]\n"
        f"df = spark.read.option('header', True).csv('dbfs:{root}/people.csv')\n"
        f"(names, sorted(r['name'] for r in df.collect()))"
    )
    result = w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx.id, language=Language.PYTHON, command=code)
    assert (result.status.value, result.results.data) == ("Finished", "(['people.csv'], ['ada', 'alan'])")
    write = f"spark.range(3).write.mode('overwrite').parquet('dbfs:{root}/out')"
    result = w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx.id, language=Language.PYTHON, command=write)
    assert result.status.value == "Finished", result.results.as_dict()
    assert any(f.path.endswith(".parquet") for f in w.dbfs.list(f"{root}/out"))
    w.clusters.permanent_delete(cluster)


def test_bare_absolute_paths_are_dbfs_in_contexts(w):
    root = "/" + unique("bare")
    w.dbfs.put(f"{root}/x.json", contents=base64.b64encode(b'{"a": 1}\n{"a": 2}\n').decode())
    cluster = w.clusters.create_and_wait(cluster_name=unique("bare"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    try:
        ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON)
        code = f"sorted(r['a'] for r in spark.read.json('{root}/x.json').collect())"
        result = w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx.id, language=Language.PYTHON, command=code)
        assert (result.status.value, result.results.data) == ("Finished", "[1, 2]")
        sql_ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.SQL)
        result = w.command_execution.execute_and_wait(
            cluster_id=cluster, context_id=sql_ctx.id, language=Language.SQL,
            command=f"SELECT sum(a) AS s FROM json.`{root}/x.json`")
        assert (result.status.value, result.results.data) == ("Finished", [[3]]), result.results.as_dict()
    finally:
        w.clusters.permanent_delete(cluster)
