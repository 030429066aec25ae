"""DBFS and volumes on an object-store data root (issue 26 part 1): `[storage] root = "s3://…"` on moto.

The tests of `test_volumes.py` and `test_dbfs.py` run again against a Kiln whose DBFS and MANAGED volumes
live in the bucket (Files API and DBFS API, SDK multipart uploads, privileges, commands reading and writing
`/Volumes/…` and `dbfs:/…` with Spark, SQL, `open()` and pandas, `dbutils.fs`, a pipeline, a wheel). Then
what only object storage has: the bytes really are objects in the bucket, a file a command writes is an
object once `close()` returns, Delta on DBFS and volumes, a pipeline's event log, a planted link is
refused, a crashed s3fs is mounted again, and after kill -9 the mount is cleared and comes back."""

from __future__ import annotations

import datetime
import io
import subprocess
from pathlib import Path

import boto3
import pytest
import requests
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.catalog import VolumeType
from databricks.sdk.service.compute import Language

from conftest import base_config
from kiln_helpers import SPARK_VERSION, KilnServer, all_procs, start_moto, unique, wait_for
from test_dbfs import (  # noqa: F401  (tests run again here, on S3)
    test_bare_absolute_paths_are_dbfs_in_contexts,
    test_engines_see_what_the_api_wrote,
    test_multipart_put,
    test_paths_never_escape,
    test_put_read_status_list_delete,
    test_symlinks_cannot_escape,
    test_streaming_upload_and_download_of_a_multi_block_file,
)
from test_volumes import (  # noqa: F401  (fixtures and tests run again here, on S3)
    cluster,
    run,
    test_a_pipeline_reads_a_volume,
    test_a_wheel_from_a_volume_installs,
    test_files_upload_download_list_delete,
    test_large_upload_takes_the_sdks_multipart_path,
    test_paths_never_leave_their_volume,
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
    proc, endpoint = start_moto("127.0.0.1", tmp_path_factory.mktemp("moto"))
    assert requests.put(f"{endpoint}/{BUCKET}", timeout=5).ok
    yield endpoint
    proc.terminate()
    proc.wait(timeout=30)


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
    return f"{PREFIX}/dbfs/Volumes/main/default/{volume.name}/{rel}"


def mounted(kiln) -> Path:
    """Where user code's file calls see DBFS (the s3fs mount)."""
    assert kiln.dbfs_dir == kiln.shared_dir / "object-store" / "dbfs"
    return kiln.dbfs_dir


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


def test_dbfs_files_are_objects_and_delta_on_dbfs_commits_in_the_bucket(w, s3, cluster):
    import base64

    root = "/" + unique("s3dbfs")
    w.dbfs.put(f"{root}/a.txt", contents=base64.b64encode(b"via the dbfs api").decode())
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/dbfs{root}/a.txt")["Body"].read() == b"via the dbfs api"
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/dbfs{root}/b.txt", Body=b"straight into the bucket")
    assert base64.b64decode(w.dbfs.read(f"{root}/b.txt").data) == b"straight into the bucket"
    assert w.dbfs.get_status(f"{root}/b.txt").file_size == len(b"straight into the bucket")
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        assert run(w, cluster, ctx, f"open('/dbfs{root}/b.txt').read()") == "'straight into the bucket'"
        run(w, cluster, ctx, f"spark.range(6).write.format('delta').save('dbfs:{root}/t')")
        run(w, cluster, ctx, f"spark.range(2).write.format('delta').mode('append').save('{root}/t')")
        assert run(w, cluster, ctx, f"SELECT count(*) AS n FROM delta.`dbfs:{root}/t`", Language.SQL) == [[8]]
        assert run(w, cluster, ctx, "spark.read.json('/databricks-datasets/kiln-samples/clickstream/').count()") == "2000"
        assert run(w, cluster, ctx, "import os\nos.environ['KILN_DBFS_URL']") == f"'s3://{BUCKET}/{PREFIX}/dbfs'"
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/dbfs{root}/t/_delta_log/")["Contents"]]
    assert f"{PREFIX}/dbfs{root}/t/_delta_log/00000000000000000001.json" in keys, keys
    # the DBFS API lists what the engine wrote
    assert "_delta_log" in {f.path.rsplit("/", 1)[-1] for f in w.dbfs.list(f"{root}/t")}


def test_a_pipelines_event_log_is_a_delta_table_in_the_bucket(kiln, w, s3, cluster, volume):
    from test_volumes import run_pipeline

    target = unique("s3pipe").replace("-", "_")
    pid = run_pipeline(kiln, w, "CREATE OR REFRESH MATERIALIZED VIEW nums AS SELECT id FROM range(3)", target)
    events = f"{PREFIX}/dbfs/pipelines/{pid}/system/events/_delta_log/00000000000000000000.json"

    def logged():
        try:
            return s3.head_object(Bucket=BUCKET, Key=events)
        except s3.exceptions.ClientError:
            return None

    wait_for(logged, 60, "the event log in the bucket", 0.5)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    try:
        n = run(w, cluster, ctx, f"spark.read.format('delta').load('dbfs:/pipelines/{pid}/system/events').count()")
        assert int(n) > 0
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    w.pipelines.delete(pipeline_id=pid)


def test_the_mount_is_kept_from_processes_outside_the_data_group(kiln):
    """The mount is open to all inside; the directory that holds it (2770, the data group) is not."""
    import os
    import stat

    holder = mounted(kiln).parent
    mode = os.stat(holder).st_mode
    assert stat.S_IMODE(mode) & 0o007 == 0, oct(mode)
    if os.geteuid() == 0:
        out = subprocess.run(["setpriv", "--reuid", "45678", "--regid", "45678", "--clear-groups",
                              "ls", str(mounted(kiln))], capture_output=True, text=True)  # fmt: skip
        assert out.returncode != 0 and "Permission denied" in out.stderr, out


def test_file_arrival_triggers_watch_a_volume_in_the_bucket(w, s3, volume):
    """Listed through object_store (never by stat-ing every file through the mount); files put straight into
    the bucket count, and a second file in the same second as the last one fires again."""
    import time

    from databricks.sdk.service import jobs

    base = f"/Volumes/main/default/{volume.name}/arrive"
    w.files.upload(f"{base}/in/before.csv", io.BytesIO(b"0"))
    cond = {"op": "EQUAL_TO", "left": "{{job.trigger.type}}", "right": "FILE_ARRIVAL"}
    job = w.api_client.do("POST", "/api/2.2/jobs/create", body={
        "name": unique("s3arrival"), "tasks": [{"task_key": "t", "condition_task": cond}],
        "trigger": {"file_arrival": {"url": f"{base}/in/", "wait_after_last_change_seconds": 1}}})["job_id"]  # fmt: skip
    runs = lambda: list(w.jobs.list_runs(job_id=job))  # noqa: E731
    time.sleep(2.5)
    assert not runs()
    s3.put_object(Bucket=BUCKET, Key=key(volume, "arrive/in/sub/a.csv"), Body=b"1")
    wait_for(lambda: len(runs()) == 1, 20, "a file-arrival run", interval=0.2)
    assert runs()[0].trigger == jobs.TriggerType.FILE_ARRIVAL
    time.sleep(2.5)
    assert len(runs()) == 1  # one arrival fires once
    s3.put_object(Bucket=BUCKET, Key=key(volume, "arrive/in/b.csv"), Body=b"2")
    s3.put_object(Bucket=BUCKET, Key=key(volume, "arrive/in/c.csv"), Body=b"3")
    wait_for(lambda: len(runs()) == 2, 20, "a second file-arrival run", interval=0.2)
    w.jobs.delete(job)


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
        assert run(w, cluster, ctx, "os.environ['KILN_DBFS_URL']") == f"'s3://{BUCKET}/{PREFIX}/dbfs'"
    finally:
        w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=key(volume, "delta/events/_delta_log/"))["Contents"]]
    assert key(volume, "delta/events/_delta_log/00000000000000000001.json") in keys, keys
    listed = w.files.list_directory_contents(f"/Volumes/main/default/{volume.name}/delta/events")
    assert any(e.name.endswith(".parquet") for e in listed)


def s3fs_procs(kiln) -> list:
    mount = str(mounted(kiln))
    return [p for p in all_procs() if p.cmdline.split(" ")[0].endswith("s3fs") and mount in p.cmdline]


def test_a_crashed_s3fs_is_mounted_again(kiln, w, volume):
    import os
    import signal

    base = f"/Volumes/main/default/{volume.name}"
    w.files.upload(f"{base}/crash/c.txt", io.BytesIO(b"still here"), overwrite=True)
    file = mounted(kiln) / "Volumes" / "main" / "default" / volume.name / "crash" / "c.txt"
    [old] = s3fs_procs(kiln)
    os.kill(old.pid, signal.SIGKILL)

    def served():
        procs = s3fs_procs(kiln)
        try:
            return bool(procs) and procs[0].pid != old.pid and file.read_bytes() == b"still here"
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
    file = mounted(kiln) / "Volumes" / "main" / "default" / volume.name / "kept" / "k.txt"
    assert file.read_bytes() == b"kept across a crash"
    assert w.files.download(f"{base}/kept/k.txt").contents.read() == b"kept across a crash"


def test_an_upload_cut_off_by_kill_9_is_aborted_at_restart(kiln, w, s3, volume):
    """The S3 multipart upload under a streamed PUT is written down before its first part; a Kiln killed
    mid-upload aborts it at the next start (no parts left billed in the bucket, no object)."""
    import os
    import threading
    import time

    path = f"/Volumes/main/default/{volume.name}/cut/big.bin"
    sent = threading.Event()

    def body():
        for _ in range(4):  # 32 MiB: parts go up, then the body stalls
            yield os.urandom(8 << 20)
        sent.set()
        time.sleep(120)
        yield b"never"

    def put():
        try:
            kiln.http().put(kiln.url(f"/api/2.0/fs/files{path}"), data=body(), timeout=180)
        except requests.RequestException:
            pass

    threading.Thread(target=put, daemon=True).start()
    uploads = lambda: s3.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX).get("Uploads", [])  # noqa: E731
    wait_for(lambda: sent.is_set() and uploads(), 60, "a multipart upload in the bucket", 0.2)
    kiln.kill9()
    assert uploads(), "the killed Kiln left its upload in the bucket"
    kiln.start()
    assert uploads() == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=key(volume, "cut/"))
    w.files.upload(path, io.BytesIO(b"after the crash"), overwrite=True)  # the volume works on
    assert w.files.download(path).contents.read() == b"after the crash"


def test_a_sandboxed_kiln_mounts_the_bucket_for_its_sandboxes(kiln_binary, moto, s3):
    """Kiln not running as root (sandbox mode): s3fs runs as Kiln's user, the mount is that user's alone,
    and user code in bubblewrap's sandbox reads and writes DBFS and volumes on the bucket."""
    import shutil
    import tempfile

    from test_trust import Ctx, _sandbox_works, unprivileged_server

    if not _sandbox_works():
        pytest.skip("bubblewrap cannot make a sandbox for an unprivileged user on this host")
    prefix = "sandboxed"
    storage = {"root": f"s3://{BUCKET}/{prefix}", "endpoint": moto, "allow_http": True, "region": "us-east-1", **KEYS}
    work = Path(tempfile.mkdtemp(prefix="kiln-sandboxed-s3-"))
    srv = unprivileged_server(kiln_binary, work, {}, storage=storage)
    try:
        assert 'isolation="sandbox"' in srv.log_path.read_text()
        w = srv.client()
        w.volumes.create(catalog_name="main", schema_name="default", name="sbx", volume_type=VolumeType.MANAGED)
        w.files.upload("/Volumes/main/default/sbx/in.txt", io.BytesIO(b"from the files api"))
        cid = w.clusters.create_and_wait(cluster_name=unique("sbx"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
        srv.track(cid)
        c = Ctx(w, cid)
        assert c.value("print(open('/Volumes/main/default/sbx/in.txt').read())").strip() == "from the files api"
        c.value("open('/dbfs/tmp/sbx.txt', 'w').write('from a sandbox'); print('ok')")
        code = "spark.range(3).write.format('delta').save('/Volumes/main/default/sbx/t'); print(spark.read.format('delta').load('/Volumes/main/default/sbx/t').count())"
        assert c.value(code).strip() == "3"
        assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}/dbfs/tmp/sbx.txt")["Body"].read() == b"from a sandbox"
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/dbfs/Volumes/main/default/sbx/t/_delta_log/")["KeyCount"] > 0
        w.clusters.permanent_delete(cid)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
