"""Clusters on Kubernetes with Kiln's data on object storage (issue 26): `[storage] root` on moto and
`[kubernetes]` without a shared volume claim. Worker pods mount nothing of Kiln's disk (the double runs
each in its own mount and network namespace) and reach DBFS, volumes and managed tables by URL with the
store's settings, which Kiln adds to every pod's environment. A managed table written by pods is in the
bucket and read by a local cluster; a file uploaded through the Files API to a volume is read by the
pods (Spark) and by `open()` in a command on the same cluster."""

from __future__ import annotations

import io
import json

import pytest
from databricks.sdk.service.compute import State

from conftest import base_config, reachable_dir
from kiln_helpers import SPARK_VERSION, KilnServer, unique, wait_cluster_state
from test_kubernetes_clusters import (  # noqa: F401  (fixtures and helpers)
    BUCKET,
    HEARTBEAT_TIMEOUT,
    IMAGE,
    NODE_TYPE,
    Double,
    context,
    pytestmark,
    run,
)
from kiln_helpers import start_moto
from test_object_storage_credentials import ROLE, enforce_iam

PREFIX = "k8s-root"


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    d = Double(tmp_path_factory.mktemp("k8s-double-s3"), {})  # no claims: pods get no disk of Kiln's
    yield d
    d.stop()


@pytest.fixture(scope="module")
def s3(double, tmp_path_factory):
    """moto with IAM enforced on the bridge address, which the driver and the worker pods both reach;
    Kiln's key is an IAM user's, and engines get sessions of the engines' role."""
    proc, endpoint = start_moto("10.77.0.1", tmp_path_factory.mktemp("moto"), iam_sessions=True)
    key, secret = enforce_iam(endpoint, BUCKET)
    yield {"AWS_ENDPOINT": endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def srv(kiln_binary, tmp_path_factory, double, s3):
    storage = {"root": f"s3://{BUCKET}/{PREFIX}", "endpoint": s3["AWS_ENDPOINT"], "allow_http": True,
               "region": "us-east-1", "access_key_id": s3["AWS_ACCESS_KEY_ID"],
               "secret_access_key": s3["AWS_SECRET_ACCESS_KEY"], "engine_role_arn": ROLE}  # fmt: skip
    config = base_config(
        shared_dir=reachable_dir() + "/shared-s3",
        clusters={"warm_engines": 0},
        storage=storage,
        kubernetes={
            "kubeconfig": str(double.kubeconfig),
            "image": IMAGE,
            "driver_host": "10.77.0.1",
            "worker_heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT,
            "pod_poll_ms": 300,
            "node_types": [{"node_type_id": NODE_TYPE, "num_cores": 2, "memory_mb": 2048}],
        },
    )
    server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-k8s-s3"), config)
    server.extra_env = {"KILN_ENGINE_LOG": "info"}
    server.start()
    yield server
    server.stop()


def test_pods_write_managed_tables_and_read_volumes_in_the_bucket(srv, double, s3):
    import boto3

    w = srv.client()
    cid = w.clusters.create(cluster_name=unique("k8s-s3"), spark_version=SPARK_VERSION, node_type_id=NODE_TYPE,
                            num_workers=2, autotermination_minutes=0).cluster_id  # fmt: skip
    srv.cluster_ids.add(cid)
    wait_cluster_state(w, cid, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    ctx = context(w, cid)
    name = "main.default.from_pods"
    res = run(w, cid, ctx, f"spark.range(0, 200_000, 1, 16).selectExpr('id', 'id % 7 AS k').write.saveAsTable('{name}')\n"
                           "print('written')")  # fmt: skip
    assert res.results.result_type.value == "text", res.results
    pods = double.running(cid)
    assert len(pods) >= 2, pods
    for p in pods:
        assert not p["spec"].get("volumes"), p["spec"].get("volumes")
        env = {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}
        assert env.get("AWS_ENDPOINT") == s3["AWS_ENDPOINT"], sorted(env)
        # a session of the engines' role, scoped to the root, never Kiln's key
        assert env.get("AWS_SESSION_TOKEN") and env.get("AWS_ACCESS_KEY_ID") != s3["AWS_ACCESS_KEY_ID"], sorted(env)
        assert s3["AWS_SECRET_ACCESS_KEY"] not in json.dumps(p)
    location = w.tables.get(name).storage_location
    assert location.startswith(f"s3://{BUCKET}/{PREFIX}/warehouse/main/default/"), location
    bucket = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT"], aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")  # fmt: skip
    listed = bucket.list_objects_v2(Bucket=BUCKET, Prefix=location.removeprefix(f"s3://{BUCKET}/") + "/")
    assert sum(o["Key"].endswith(".parquet") for o in listed.get("Contents", [])) >= 2, listed
    # a cluster on this host reads what the pods wrote
    other = w.clusters.create(cluster_name=unique("reader"), spark_version=SPARK_VERSION, node_type_id="kiln-local",
                              num_workers=0, autotermination_minutes=0).cluster_id  # fmt: skip
    srv.cluster_ids.add(other)
    wait_cluster_state(w, other, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    res = run(w, other, context(w, other), f"print(spark.sql('SELECT count(*), sum(k) FROM {name}').collect()[0][:])")
    assert res.results.data.strip() == f"({200_000}, {sum(i % 7 for i in range(200_000))})", res.results
    # a volume file uploaded through the Files API: read by the pods (Spark) and by open() on the driver
    volume = w.volumes.create(catalog_name="main", schema_name="default", name=unique("v").replace("-", "_"),
                              volume_type=__import__("databricks.sdk.service.catalog", fromlist=["VolumeType"]).VolumeType.MANAGED)  # fmt: skip
    path = f"/Volumes/main/default/{volume.name}/in/lines.txt"
    w.files.upload(path, io.BytesIO("\n".join(str(i) for i in range(1000)).encode()), overwrite=True)
    res = run(w, cid, ctx, f"df = spark.read.text('{path}').repartition(4)\n"
                           f"print(df.count(), sum(int(r[0]) for r in df.collect()), len(open('{path}').read().splitlines()))")  # fmt: skip
    assert res.results.data.strip() == f"1000 {sum(range(1000))} 1000", res.results
    # the rest of the bucket is out of reach of the pods' sessions
    res = run(w, cid, ctx, f"spark.read.text('s3://{BUCKET}/outside/secret.txt').repartition(4).count()")
    assert res.results.result_type.value == "error", res.results
    assert "not for engines" not in (res.results.cause or "")
    w.clusters.delete(cid)
    w.clusters.delete(other)
