"""Unity Catalog volumes and the Files API (issue 14, first part): `w.volumes`, `w.files` and
`w.grants` with the SDK, two identities for privileges, and the same files from a command on a
real cluster (Spark readers and writers, SQL, `open()`/pandas, `dbutils.fs`) by the paths a
Databricks user writes (`/Volumes/<catalog>/<schema>/<volume>/…`)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from databricks.sdk.errors import AlreadyExists, DatabricksError, NotFound, PermissionDenied
from databricks.sdk.service.catalog import PermissionsChange, Privilege, VolumeType
from databricks.sdk.service.compute import CommandStatus, Language, State

from kiln_helpers import SDK_TIMEOUT, SPARK_VERSION, http, non_admin, unique


@pytest.fixture(scope="module")
def volume(w):
    name = unique("vol").replace("-", "_")
    v = w.volumes.create(catalog_name="main", schema_name="default", name=name, volume_type=VolumeType.MANAGED)
    yield v
    try:
        w.volumes.delete(v.full_name)
    except DatabricksError:
        pass


def test_volume_lifecycle(w, volume):
    assert volume.full_name == f"main.default.{volume.name}" and volume.volume_type == VolumeType.MANAGED
    assert w.volumes.read(volume.full_name).volume_id == volume.volume_id
    listed = [v.full_name for v in w.volumes.list(catalog_name="main", schema_name="default")]
    assert volume.full_name in listed
    with pytest.raises(AlreadyExists):
        w.volumes.create(catalog_name="main", schema_name="default", name=volume.name, volume_type=VolumeType.MANAGED)
    other = w.volumes.create(catalog_name="main", schema_name="default", name=volume.name + "_b",
                             volume_type=VolumeType.MANAGED, comment="first")  # fmt: skip
    w.files.upload(f"/Volumes/main/default/{other.name}/keep.txt", io.BytesIO(b"kept"))
    renamed = w.volumes.update(other.full_name, new_name=volume.name + "_c", comment="second")
    assert (renamed.name, renamed.comment) == (volume.name + "_c", "second")
    # the files moved with it
    assert w.files.download(f"/Volumes/main/default/{renamed.name}/keep.txt").contents.read() == b"kept"
    w.volumes.delete(renamed.full_name)
    with pytest.raises(NotFound):
        w.volumes.read(renamed.full_name)
    with pytest.raises(DatabricksError):
        w.files.get_metadata(f"/Volumes/main/default/{renamed.name}/keep.txt")


def test_files_upload_download_list_delete(kiln, w, volume):
    base = f"/Volumes/main/default/{volume.name}"
    data = bytes(range(256)) * 4096  # 1 MiB
    w.files.upload(f"{base}/raw/a.bin", io.BytesIO(data))
    assert w.files.download(f"{base}/raw/a.bin").contents.read() == data
    meta = w.files.get_metadata(f"{base}/raw/a.bin")
    assert meta.content_length == len(data) and meta.last_modified
    with pytest.raises(AlreadyExists):
        w.files.upload(f"{base}/raw/a.bin", io.BytesIO(b"x"), overwrite=False)
    w.files.upload(f"{base}/raw/a.bin", io.BytesIO(b"new"), overwrite=True)
    assert w.files.download(f"{base}/raw/a.bin").contents.read() == b"new"
    w.files.create_directory(f"{base}/raw/sub")
    w.files.get_directory_metadata(f"{base}/raw/sub")
    entries = {e.name: e for e in w.files.list_directory_contents(f"{base}/raw")}
    assert set(entries) == {"a.bin", "sub"} and entries["sub"].is_directory and entries["a.bin"].file_size == 3
    assert entries["a.bin"].path == f"{base}/raw/a.bin"
    # ranged reads
    w.files.upload(f"{base}/range.bin", io.BytesIO(data), overwrite=True)
    s = kiln.http()
    r = s.get(kiln.url(f"/api/2.0/fs/files{base}/range.bin"), headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000], r.status_code
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert s.get(kiln.url(f"/api/2.0/fs/files{base}/range.bin"), headers={"Range": "bytes=-10"}).content == data[-10:]
    assert s.get(kiln.url(f"/api/2.0/fs/files{base}/range.bin"), headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    # deletes: a non-empty directory stays, an empty one goes
    with pytest.raises(DatabricksError):
        w.files.delete_directory(f"{base}/raw")
    w.files.delete(f"{base}/raw/a.bin")
    w.files.delete_directory(f"{base}/raw/sub")
    with pytest.raises(NotFound):
        w.files.get_metadata(f"{base}/raw/a.bin")


def test_paths_never_leave_their_volume(kiln, w, volume):
    s = kiln.http()
    base = f"/api/2.0/fs/files/Volumes/main/default/{volume.name}"
    for bad in ("/../../../../etc/passwd", "/a/%2E%2E/%2E%2E/x", "/./x"):
        r = s.get(kiln.url(base + bad))
        assert r.status_code in (400, 404), (bad, r.status_code, r.text)
        assert "root:" not in r.text
    r = s.get(kiln.url("/api/2.0/fs/files/etc/passwd"))
    assert r.status_code == 400
    # a symlink planted inside the volume (as user code could) is refused
    target = kiln.dbfs_dir / "Volumes" / "main" / "default" / volume.name / "link"
    target.symlink_to("/etc")
    try:
        assert s.get(kiln.url(base + "/link/passwd")).status_code == 400
    finally:
        target.unlink()
    # the DBFS API does not reach volumes (their privileges are the Files API's)
    r = s.get(kiln.url("/api/2.0/dbfs/list"), params={"path": f"/Volumes/main/default/{volume.name}"})
    assert r.status_code == 403, r.text


def test_volume_privileges(kiln, w, volume):
    base = f"/Volumes/main/default/{volume.name}"
    w.files.upload(f"{base}/shared.txt", io.BytesIO(b"for readers"), overwrite=True)
    other = non_admin(kiln, w, "volpriv")
    ow = other["w"]
    with pytest.raises(PermissionDenied):
        ow.files.download(f"{base}/shared.txt")
    w.grants.update("volume", volume.full_name,
                    changes=[PermissionsChange(principal=other["name"], add=[Privilege.READ_VOLUME])])  # fmt: skip
    got = w.grants.get("volume", volume.full_name)
    assert {(a.principal, tuple(a.privileges)) for a in got.privilege_assignments} == {(other["name"], (Privilege.READ_VOLUME,))}
    assert ow.files.download(f"{base}/shared.txt").contents.read() == b"for readers"
    assert "shared.txt" in [e.name for e in ow.files.list_directory_contents(base)]
    with pytest.raises(PermissionDenied):
        ow.files.upload(f"{base}/mine.txt", io.BytesIO(b"x"))
    with pytest.raises(PermissionDenied):
        ow.volumes.update(volume.full_name, comment="not yours")
    with pytest.raises(PermissionDenied):
        ow.grants.update("volume", volume.full_name,
                         changes=[PermissionsChange(principal=other["name"], add=[Privilege.WRITE_VOLUME])])  # fmt: skip
    w.grants.update("volume", volume.full_name,
                    changes=[PermissionsChange(principal=other["name"], add=[Privilege.WRITE_VOLUME])])  # fmt: skip
    ow.files.upload(f"{base}/mine.txt", io.BytesIO(b"x"))
    w.grants.update("volume", volume.full_name,
                    changes=[PermissionsChange(principal=other["name"], remove=[Privilege.READ_VOLUME, Privilege.WRITE_VOLUME])])  # fmt: skip
    with pytest.raises(PermissionDenied):
        ow.files.download(f"{base}/shared.txt")


@pytest.fixture(scope="module")
def cluster(kiln, w):
    c = w.clusters.create_and_wait(cluster_name=unique("vols"), spark_version=SPARK_VERSION, num_workers=0,
                                   timeout=SDK_TIMEOUT)  # fmt: skip
    assert c.state == State.RUNNING
    yield kiln.track(c.cluster_id)
    w.clusters.permanent_delete(c.cluster_id)


def run(w, cluster, ctx, command, language=Language.PYTHON):
    import datetime

    res = w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx, language=language, command=command,
                                               timeout=datetime.timedelta(seconds=300))  # fmt: skip
    assert res.status == CommandStatus.FINISHED, res.results
    return res.results.data


def test_the_same_files_from_commands(w, cluster, volume):
    import datetime

    base = f"/Volumes/main/default/{volume.name}"
    rows = "\n".join(json.dumps({"id": i, "v": i * i}) for i in range(5))
    w.files.upload(f"{base}/landing/events.json", io.BytesIO(rows.encode()), overwrite=True)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, cluster, ctx, f"spark.read.json('{base}/landing/').count()") == "5"
        assert run(w, cluster, ctx, f"spark.read.json('dbfs:{base}/landing/events.json').count()") == "5"
        assert run(w, cluster, ctx, f"SELECT sum(v) AS s FROM json.`{base}/landing/`", Language.SQL) == [[30]]
        code = (
            f"import pandas\n"
            f"int(pandas.read_json('{base}/landing/events.json', lines=True).v.sum())"
        )
        assert run(w, cluster, ctx, code) == "30"
        code = f"sorted((f.name, f.size) for f in dbutils.fs.ls('{base}/landing'))"
        assert run(w, cluster, ctx, code) == f"[('events.json', {len(rows)})]"
        run(w, cluster, ctx, f"spark.range(3).write.mode('overwrite').parquet('{base}/out/numbers')")
        run(w, cluster, ctx, f"open('{base}/out/note.txt', 'w').write('from a command')")
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    names = {e.name for e in w.files.list_directory_contents(f"{base}/out")}
    assert names == {"numbers", "note.txt"}, names
    assert w.files.download(f"{base}/out/note.txt").contents.read() == b"from a command"
    parts = [e.name for e in w.files.list_directory_contents(f"{base}/out/numbers") if e.name.endswith(".parquet")]
    assert parts, "Spark wrote parquet files into the volume"


def test_sdk_dbutils_fs_on_volumes(w, volume):
    """`w.dbutils.fs` (the SDK's local dbutils) drives the Files API for /Volumes paths."""
    base = f"/Volumes/main/default/{volume.name}/dbu"
    fs = w.dbutils.fs
    assert fs.mkdirs(base)
    fs.put(f"{base}/hello.txt", "hello volumes", overwrite=True)
    assert fs.head(f"{base}/hello.txt") == "hello volumes"
    fs.cp(f"{base}/hello.txt", f"{base}/copy.txt")
    listed = {f.name: f.size for f in fs.ls(base)}
    assert listed == {"hello.txt": 13, "copy.txt": 13}, listed
    fs.rm(f"{base}/copy.txt")
    assert [f.name for f in fs.ls(base)] == ["hello.txt"]


def run_pipeline(kiln, w, text, target):
    """A pipeline of one SQL notebook, updated once to COMPLETED; its id."""
    import base64

    from databricks.sdk.service.workspace import ImportFormat
    from databricks.sdk.service.workspace import Language as NbLanguage

    from kiln_helpers import wait_for

    path = f"/Users/admin/{unique('volpipe')}"
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=NbLanguage.SQL,
                        content=base64.b64encode(text.encode()).decode(), overwrite=True)  # fmt: skip
    r = kiln.http().post(kiln.url("/api/2.0/pipelines"),
                         json={"name": target, "libraries": [{"notebook": {"path": path}}], "target": target})  # fmt: skip
    assert r.status_code == 200, r.text
    pid = r.json()["pipeline_id"]
    update = w.pipelines.start_update(pipeline_id=pid).update_id

    def done():
        u = w.pipelines.get_update(pipeline_id=pid, update_id=update).update
        return u if u.state.value in ("COMPLETED", "FAILED", "CANCELED") else None

    assert wait_for(done, 300, "the pipeline update", interval=0.5).state.value == "COMPLETED"
    return pid


def test_a_pipeline_reads_a_volume(kiln, w, cluster, volume):
    import datetime

    base = f"/Volumes/main/default/{volume.name}/pipe"
    rows = "\n".join(json.dumps({"id": i}) for i in range(7))
    w.files.upload(f"{base}/part-0.json", io.BytesIO(rows.encode()), overwrite=True)
    text = f"CREATE OR REFRESH MATERIALIZED VIEW from_volume AS SELECT * FROM read_files('{base}/', format => 'json')"
    target = unique("volpipe").replace("-", "_")
    pid = run_pipeline(kiln, w, text, target)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, cluster, ctx, f"spark.table('main.{target}.from_volume').count()") == "7"
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    w.pipelines.delete(pipeline_id=pid)


def test_a_wheel_from_a_volume_installs(kiln, w, cluster, volume):
    import datetime

    from databricks.sdk.service.compute import Library, LibraryInstallStatus

    from kiln_helpers import wait_for
    from test_libraries import build_wheel

    name = f"volwheel_{unique('w').replace('-', '_')}"
    path = f"/Volumes/main/default/{volume.name}/libs/{name}-1.0.0-py3-none-any.whl"
    w.files.upload(path, io.BytesIO(build_wheel(name, "1.0.0", 41)), overwrite=True)
    # a user who may manage the cluster but not read the volume is refused
    other = non_admin(kiln, w, "volwhl")
    w.api_client.do("PATCH", f"/api/2.0/permissions/clusters/{cluster}",
                    body={"access_control_list": [{"user_name": other["name"], "permission_level": "CAN_MANAGE"}]})  # fmt: skip
    with pytest.raises(PermissionDenied):
        other["w"].libraries.install(cluster, [Library(whl=path)])
    w.libraries.install(cluster, [Library(whl=path)])

    def installed():
        for s in w.libraries.cluster_status(cluster):
            if s.library.whl == path:
                assert s.status != LibraryInstallStatus.FAILED, s.messages
                return s.status == LibraryInstallStatus.INSTALLED
        return False

    wait_for(installed, 300, "the wheel from the volume to install", interval=1)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, cluster, ctx, f"import {name}\n{name}.VALUE + 1") == "42"
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)


def test_a_fresh_dbfs_root_and_its_sample_datasets(w, cluster):
    import datetime

    top = {f.path for f in w.dbfs.list("/")}
    assert {"/FileStore", "/tmp", "/user", "/databricks-datasets"} <= top, top
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        code = "spark.read.json('/databricks-datasets/kiln-samples/clickstream/').count()"
        assert run(w, cluster, ctx, code) == "2000"
        code = ("spark.read.option('header', True).csv('dbfs:/databricks-datasets/kiln-samples/orders/orders.csv')"
                ".selectExpr('count(*)').first()[0]")  # fmt: skip
        assert run(w, cluster, ctx, code) == "1000"
        assert "dbfs:/Volumes/" in run(w, cluster, ctx, "[m.mountPoint for m in dbutils.fs.mounts()] and str(dbutils.fs.ls('/'))")
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)


def test_unity_catalog_updates_and_metastore(kiln, w, cluster):
    import datetime

    summary = w.metastores.summary()
    assert summary.metastore_id and summary.metastore_id == w.metastores.current().metastore_id
    assert w.metastores.current().default_catalog_name == "main"
    schema = w.schemas.create(name=unique("upd").replace("-", "_"), catalog_name="main")
    updated = w.schemas.update(schema.full_name, comment="described", properties={"team": "data"})
    assert (updated.comment, updated.properties) == ("described", {"team": "data"})
    assert w.schemas.get(schema.full_name).comment == "described"
    cat = w.catalogs.update("main", comment="the default catalog, updated")
    assert w.catalogs.get("main").comment == cat.comment
    with pytest.raises(DatabricksError):
        w.schemas.update(schema.full_name, new_name="renamed")
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        run(w, cluster, ctx, f"spark.range(2).write.saveAsTable('{schema.full_name}.t')")
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    other = non_admin(kiln, w, "ucupd")
    with pytest.raises(PermissionDenied):
        other["w"].tables.update(f"{schema.full_name}.t", owner=other["name"])
    w.tables.update(f"{schema.full_name}.t", owner=other["name"])
    assert w.tables.get(f"{schema.full_name}.t").owner == other["name"]
    listed = list(w.tables.list(catalog_name="main", schema_name=schema.name, omit_columns=True, include_browse=True))
    assert [t.name for t in listed] == ["t"] and not listed[0].columns
    assert list(w.tables.list(catalog_name="main", schema_name=schema.name))[0].columns
    w.schemas.delete(schema.full_name, force=True)


def test_large_upload_takes_the_sdks_multipart_path(kiln, w, volume):
    import hashlib
    import os as _os

    path = f"/Volumes/main/default/{volume.name}/big/blob.bin"
    data = _os.urandom(64 * 1024 * 1024 + 12345)  # above the SDK's 50 MB multipart threshold
    w.files.upload(path, io.BytesIO(data), overwrite=True)
    got = w.files.download(path).contents.read()
    assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # the parts are gone; only the file is listed
    assert [e.name for e in w.files.list_directory_contents(f"/Volumes/main/default/{volume.name}/big")] == ["blob.bin"]
    local = kiln.dbfs_dir / "Volumes" / "main" / "default" / volume.name / "big"
    assert sorted(p.name for p in local.iterdir()) == ["blob.bin"]
    # a part URL without its signature, or with another part's, is refused
    s = http()
    r = s.put(kiln.url("/api/2.0/fs/upload-parts/0123456789abcdef/1"), data=b"x")
    assert r.status_code == 403, r.text


def test_external_volumes_and_a_planted_link(kiln_factory, tmp_path):
    import os as _os
    import shutil

    from conftest import reachable_dir

    allowed = Path(reachable_dir()) / unique("ext")
    allowed.mkdir(parents=True)
    server = kiln_factory(catalog={"external_locations": [str(allowed)]})
    w = server.client()
    with pytest.raises(DatabricksError):  # outside every allowed location
        w.volumes.create(catalog_name="main", schema_name="default", name="bad", volume_type=VolumeType.EXTERNAL,
                         storage_location="file:///etc")  # fmt: skip
    ext = w.volumes.create(catalog_name="main", schema_name="default", name="ext", volume_type=VolumeType.EXTERNAL,
                           storage_location=f"file://{allowed}/landing")  # fmt: skip
    assert ext.storage_location == f"file://{allowed.resolve()}/landing"
    w.files.upload("/Volumes/main/default/ext/a.txt", io.BytesIO(b"external"))
    assert (allowed / "landing" / "a.txt").read_bytes() == b"external"
    w.volumes.delete(ext.full_name)
    assert (allowed / "landing" / "a.txt").exists(), "an external volume's data stays"
    # code on a cluster could replace a managed volume's directory by a link to Kiln's private files:
    # the Files API refuses what resolves outside the volume
    managed = w.volumes.create(catalog_name="main", schema_name="default", name="m", volume_type=VolumeType.MANAGED)
    local = server.shared_dir / "dbfs" / "Volumes" / "main" / "default" / "m"
    shutil.rmtree(local)
    local.symlink_to(server.data_dir)
    r = server.http().get(server.url("/api/2.0/fs/files/Volumes/main/default/m/admin.token"))
    assert r.status_code == 400 and "dapi" not in r.text, r.text
    r = server.http().get(server.url("/api/2.0/fs/directories/Volumes/main/default/m"))
    assert r.status_code == 400, r.text
    _os.unlink(local)
    w.volumes.delete(managed.full_name)


def test_an_external_volume_from_commands_sql_and_pipelines(kiln_factory):
    """Code on a cluster and a pipeline reach an EXTERNAL volume by its /Volumes name."""
    import datetime

    from conftest import reachable_dir

    allowed = Path(reachable_dir()) / unique("extc")
    server = kiln_factory(catalog={"external_locations": [str(allowed)]})
    w = server.client()
    w.volumes.create(catalog_name="main", schema_name="default", name="landing", volume_type=VolumeType.EXTERNAL,
                     storage_location=f"file://{allowed}/landing")  # fmt: skip
    base = "/Volumes/main/default/landing"
    rows = "\n".join(json.dumps({"id": i, "v": i * 2}) for i in range(6))
    w.files.upload(f"{base}/in/events.json", io.BytesIO(rows.encode()))
    c = w.clusters.create_and_wait(cluster_name=unique("extc"), spark_version=SPARK_VERSION, num_workers=0,
                                   timeout=SDK_TIMEOUT)  # fmt: skip
    server.track(c.cluster_id)
    ctx = w.command_execution.create_and_wait(cluster_id=c.cluster_id, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, c.cluster_id, ctx, f"spark.read.json('{base}/in/').count()") == "6"
        assert run(w, c.cluster_id, ctx, f"len(open('{base}/in/events.json').read().splitlines())") == "6"
        assert run(w, c.cluster_id, ctx, f"[f.path for f in dbutils.fs.ls('{base}/in')]") == \
            f"['dbfs:{base}/in/events.json']"  # fmt: skip
        run(w, c.cluster_id, ctx, f"dbutils.fs.put('{base}/out/note.txt', 'from a command', True)")
        run(w, c.cluster_id, ctx, f"spark.range(4).write.mode('overwrite').parquet('{base}/out/numbers')")
        sql = f"CREATE TABLE main.default.ext_events USING json LOCATION '{base}/in'"
        run(w, c.cluster_id, ctx, sql, Language.SQL)
        assert run(w, c.cluster_id, ctx, "SELECT sum(v) FROM main.default.ext_events", Language.SQL) == [[30]]
        # a link planted in DBFS to a place outside DBFS and the external locations is refused
        (server.shared_dir / "dbfs" / "tmp" / "etc-link").symlink_to("/etc")
        code = "open('/dbfs/tmp/etc-link/hostname').read()"
        res = w.command_execution.execute_and_wait(cluster_id=c.cluster_id, context_id=ctx, language=Language.PYTHON,
                                                   command=code)  # fmt: skip
        assert res.results.result_type.value == "error" and "escapes" in res.results.cause, res.results
    finally:
        w.command_execution.destroy(cluster_id=c.cluster_id, context_id=ctx)
    assert (allowed / "landing" / "out" / "note.txt").read_text() == "from a command"
    assert w.files.download(f"{base}/out/note.txt").contents.read() == b"from a command"
    assert any(e.name.endswith(".parquet") for e in w.files.list_directory_contents(f"{base}/out/numbers"))
    run_pipeline(server, w, f"CREATE OR REFRESH MATERIALIZED VIEW ext_mv AS SELECT * FROM read_files('{base}/in', format => 'json')",
                 "extpipe")  # fmt: skip
    ctx = w.command_execution.create_and_wait(cluster_id=c.cluster_id, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, c.cluster_id, ctx, "spark.table('main.extpipe.ext_mv').count()") == "6"
    finally:
        w.command_execution.destroy(cluster_id=c.cluster_id, context_id=ctx)
