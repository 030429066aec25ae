"""Volumes on an object-store data root (issue 26 part 1): `[storage] root = "s3://…"` on moto.

The volume tests of `test_volumes.py` run again against a Kiln whose MANAGED volumes live in the bucket
(Files API, SDK multipart uploads, privileges, commands reading and writing `/Volumes/…` with Spark, SQL,
`open()` and pandas, `dbutils.fs`, a pipeline, a wheel). Then what only object storage has: the bytes
really are objects in the bucket, a file a command writes is an object once `close()` returns, a planted
link is refused, and after kill -9 the mount is cleared and comes back."""

from __future__ import annotations

import datetime
import io
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.catalog import VolumeType
from databricks.sdk.service.compute import Language

from conftest import base_config
from kiln_helpers import KilnServer, all_procs, free_port, unique, wait_for
from test_volumes import (  # noqa: F401  (fixtures and tests run again here, on S3)
    cluster,
    run,
    test_a_pipeline_reads_a_volume,
    test_a_wheel_from_a_volume_installs,
    test_files_upload_download_list_delete,
    test_large_upload_takes_the_sdks_multipart_path,
    test_sdk_dbutils_fs_on_volumes,
    test_the_same_files_from_commands,
    test_volume_lifecycle,
    test_volume_privileges,
    volume,
)

BUCKET = "kiln-volumes-test"
PREFIX = "tenant-a/root"
KEYS = {"access_key_id": "testing", "secret_access_key": "testing-secret-key"}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "ab")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"

    def bucket():
        try:
            return requests.put(f"{endpoint}/{BUCKET}", timeout=5).ok
        except requests.ConnectionError:
            return False

    wait_for(bucket, 30, "moto to create the bucket", 0.2)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def s3(moto):
    return boto3.client("s3", endpoint_url=moto, aws_access_key_id=KEYS["access_key_id"],
                        aws_secret_access_key=KEYS["secret_access_key"], region_name="us-east-1")  # fmt: skip


@pytest.fixture(scope="module")
def kiln(kiln_binary, tmp_path_factory, moto):
    storage = {"root": f"s3://{BUCKET}/{PREFIX}", "endpoint": moto, "allow_http": True, "region": "us-east-1", **KEYS}
    server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-s3"), base_config(storage=storage))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def w(kiln):
    return kiln.client()


def key(volume, rel: str) -> str:
    return f"{PREFIX}/volumes/main/default/{volume.name}/{rel}"


def test_the_bytes_are_objects_in_the_bucket(w, s3, volume):
    base = f"/Volumes/main/default/{volume.name}"
    w.files.upload(f"{base}/in/a.txt", io.BytesIO(b"through the files api"), overwrite=True)
    assert s3.get_object(Bucket=BUCKET, Key=key(volume, "in/a.txt"))["Body"].read() == b"through the files api"
    s3.put_object(Bucket=BUCKET, Key=key(volume, "in/b.txt"), Body=b"put straight into the bucket")
    assert w.files.download(f"{base}/in/b.txt").contents.read() == b"put straight into the bucket"
    assert sorted(e.name for e in w.files.list_directory_contents(f"{base}/in")) == ["a.txt", "b.txt"]
    # nothing of Kiln's own (upload parts, check objects) is left in the bucket
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])]
    assert not [k for k in keys if "/.kiln-" in k], keys


def test_a_file_a_command_writes_is_an_object_when_close_returns(w, s3, cluster, volume):
    base = f"/Volumes/main/default/{volume.name}"
    s3.put_object(Bucket=BUCKET, Key=key(volume, "cmd/in.txt"), Body=b"from the bucket")
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, cluster, ctx, f"open('{base}/cmd/in.txt').read()") == "'from the bucket'"
        code = (f"import os\nwith open('{base}/cmd/big.bin', 'wb') as f:\n    f.write(os.urandom(24 << 20))\n"
                f"with open('{base}/cmd/seek.bin', 'wb') as f:\n    f.write(b'a' * 10); f.seek(100); f.write(b'b')\n"
                f"os.path.getsize('{base}/cmd/seek.bin')")  # fmt: skip
        assert run(w, cluster, ctx, code) == "101"
        # stored when close() returned: no wait
        assert s3.head_object(Bucket=BUCKET, Key=key(volume, "cmd/big.bin"))["ContentLength"] == 24 << 20
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)


def test_names_are_the_same_in_the_files_api_the_bucket_the_mount_and_spark(w, s3, cluster, volume):
    base = f"/Volumes/main/default/{volume.name}/names"
    w.files.upload(f"{base}/a[1] b%.txt", io.BytesIO(b"odd name"), overwrite=True)
    assert s3.get_object(Bucket=BUCKET, Key=key(volume, "names/a[1] b%.txt"))["Body"].read() == b"odd name"
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, cluster, ctx, f"open('{base}/a[1] b%.txt').read()") == "'odd name'"
        run(w, cluster, ctx, f"spark.range(4).write.mode('overwrite').parquet('{base}/out #1')")
        assert run(w, cluster, ctx, f"spark.read.parquet('{base}/out #1').count()") == "4"
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    names = sorted(e.name for e in w.files.list_directory_contents(base))
    assert names == ["a[1] b%.txt", "out #1"], names
    # a file and a directory never share a name
    with pytest.raises(DatabricksError):
        w.files.upload(f"{base}/a[1] b%.txt/inside.txt", io.BytesIO(b"x"))


def test_paths_never_leave_their_volume_on_object_storage(kiln, w, volume):
    s = kiln.http()
    base = f"/api/2.0/fs/files/Volumes/main/default/{volume.name}"
    for bad in ("/../../../../etc/passwd", "/a/%2E%2E/%2E%2E/x", "/./x"):
        r = s.get(kiln.url(base + bad))
        assert r.status_code in (400, 404), (bad, r.status_code, r.text)
    # a link planted through the mount (as user code could) is refused for reads and directory writes
    link = kiln.shared_dir / "dbfs" / "Volumes" / "main" / "default" / volume.name / "link"
    link.symlink_to("/etc")
    try:
        assert s.get(kiln.url(base + "/link/passwd")).status_code == 400
        r = s.put(kiln.url(f"/api/2.0/fs/directories/Volumes/main/default/{volume.name}/link/kiln-was-here"))
        assert r.status_code == 400, r.text
        assert not Path("/etc/kiln-was-here").exists()
    finally:
        link.unlink()


def test_external_volumes_are_refused_on_object_storage(w):
    with pytest.raises(DatabricksError, match="object storage"):
        w.volumes.create(catalog_name="main", schema_name="default", name=unique("ext").replace("-", "_"),
                         volume_type=VolumeType.EXTERNAL, storage_location="file:///tmp")  # fmt: skip


def test_delta_on_a_volume_is_written_to_the_bucket_by_the_engine(w, s3, cluster, volume):
    """Spark paths under /Volumes are the bucket's URLs for the engine (Delta's commits cannot go through
    FUSE); `open()` on the same path reads the same objects through the mount."""
    base = f"/Volumes/main/default/{volume.name}/delta/events"
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        run(w, cluster, ctx, f"spark.range(5).write.format('delta').save('{base}')")
        run(w, cluster, ctx, f"spark.range(7).write.format('delta').mode('overwrite').save('{base}')")
        assert run(w, cluster, ctx, f"spark.read.format('delta').load('{base}').count()") == "7"
        assert run(w, cluster, ctx, f"SELECT count(*) AS n FROM delta.`{base}`", Language.SQL) == [[7]]
        logs = run(w, cluster, ctx, f"import os\nsorted(os.listdir('{base}/_delta_log'))")
        assert "00000000000000000000.json" in logs and "00000000000000000001.json" in logs, logs
        # the kernel gets the URL, not the store's credentials (the engine has them)
        assert run(w, cluster, ctx, "import os\n'AWS_SECRET_ACCESS_KEY' in os.environ") == "False"
        assert run(w, cluster, ctx, "os.environ['KILN_VOLUMES_URL']") == f"'s3://{BUCKET}/{PREFIX}/volumes'"
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=key(volume, "delta/events/_delta_log/"))["Contents"]]
    assert key(volume, "delta/events/_delta_log/00000000000000000001.json") in keys, keys
    listed = w.files.list_directory_contents(f"/Volumes/main/default/{volume.name}/delta/events")
    assert any(e.name.endswith(".parquet") for e in listed)


def s3fs_procs(kiln) -> list:
    mount = str(kiln.shared_dir / "dbfs" / "Volumes")
    return [p for p in all_procs() if p.cmdline.split(" ")[0].endswith("s3fs") and mount in p.cmdline]


def test_a_crashed_s3fs_is_mounted_again(kiln, w, volume):
    import os
    import signal

    base = f"/Volumes/main/default/{volume.name}"
    w.files.upload(f"{base}/crash/c.txt", io.BytesIO(b"still here"), overwrite=True)
    mounted = kiln.shared_dir / "dbfs" / "Volumes" / "main" / "default" / volume.name / "crash" / "c.txt"
    [old] = s3fs_procs(kiln)
    os.kill(old.pid, signal.SIGKILL)

    def served():
        procs = s3fs_procs(kiln)
        try:
            return bool(procs) and procs[0].pid != old.pid and mounted.read_bytes() == b"still here"
        except OSError:
            return False

    wait_for(served, 30, "s3fs to be started again and serve the mount", 0.2)


def test_kill_9_then_restart_brings_the_mount_back(kiln, w, s3, volume):
    base = f"/Volumes/main/default/{volume.name}"
    w.files.upload(f"{base}/kept/k.txt", io.BytesIO(b"kept across a crash"), overwrite=True)
    assert s3fs_procs(kiln), "s3fs serves the mount"
    kiln.kill9()
    wait_for(lambda: not s3fs_procs(kiln), 10, "s3fs to die with Kiln")
    kiln.start()
    assert len(s3fs_procs(kiln)) == 1
    mounted = kiln.shared_dir / "dbfs" / "Volumes" / "main" / "default" / volume.name / "kept" / "k.txt"
    assert mounted.read_bytes() == b"kept across a crash"
    assert w.files.download(f"{base}/kept/k.txt").contents.read() == b"kept across a crash"
