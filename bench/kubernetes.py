"""Clusters across hosts, measured on one machine (issue 26): prints figures, asserts nothing.

  group-by    a 20 M-row group-by (2 M keys, 16 partitions) through Spark Connect: on one local
              engine (`kiln-local`, no workers) vs a cluster of 2 worker pods of the Kubernetes
              double (each in its own network and mount namespace); interleaved rounds, medians.
              Shuffle volume: bytes the pods sent and received on their veths during one query.
  delta       Delta write (5 M rows) and a full read (every column) on local disk vs on S3 (moto on the
              bridge), from a local engine: seconds and MB/s of the table's files.

Usage:  python bench/kubernetes.py [--rounds 3]      (root: network namespaces)
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests, pyspark-client, moto[server], boto3 (tests/conformance/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import Server, default_bin, free_port, wait_state

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "conformance"))
from test_kubernetes_clusters import NAMESPACE, Double, sail_binary  # noqa: E402

# 2 M groups: the partial aggregates the workers exchange are a real shuffle.
GROUP_BY = ("SELECT count(*), sum(s) FROM (SELECT k, sum(v) AS s FROM "
            "(SELECT id % 2000000 AS k, id AS v FROM range(0, 20000000, 1, 16)) GROUP BY k)")


def veth_bytes(tag: str) -> tuple[int, int]:
    """(bytes the pods sent, bytes they received): the host ends of the double's veths."""
    links = json.loads(subprocess.run(["ip", "-s", "-j", "link", "show"], capture_output=True, text=True).stdout)
    sent = received = 0
    for link in links:
        if link["ifname"].startswith(f"{tag}h"):
            sent += link["stats64"]["rx"]["bytes"]
            received += link["stats64"]["tx"]["bytes"]
    return sent, received


def create(srv: Server, name: str, **spec) -> str:
    cid = srv.api("POST", "/api/2.1/clusters/create", json={
        "cluster_name": name, "spark_version": "15.4.x-scala2.12", "autotermination_minutes": 0, **spec})["cluster_id"]  # fmt: skip
    srv.cluster_ids.add(cid)
    wait_state(srv, cid, "RUNNING", 0.2, timeout=600)
    return cid


def session(srv: Server, cid: str):
    from pyspark.sql import SparkSession

    url = f"sc://127.0.0.1:{srv.port}/;x-databricks-cluster-id={cid};authorization=Bearer {srv.token}"
    return SparkSession.builder.remote(url).create()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/kubernetes.py needs root (network namespaces)")
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-k8s-"))
    work.chmod(0o711)
    shared = work / "shared"
    double = Double(work, {"kiln-shared": str(shared)})
    moto_port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "10.77.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    s3 = {"AWS_ENDPOINT": f"http://10.77.0.1:{moto_port}", "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "bench",
          "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}  # fmt: skip
    env_toml = ", ".join(f'{k} = "{v}"' for k, v in s3.items())
    config = (
        f"shared_dir = \"{shared}\"\n\n"
        f"[clusters]\nwarm_engines = 0\n\n[kubernetes]\nkubeconfig = \"{double.kubeconfig}\"\nimage = \"kiln-engine:bench\"\n"
        "shared_volume_claim = \"kiln-shared\"\n"
        f"driver_host = \"10.77.0.1\"\nworker_env = {{{env_toml}}}\n"
        "node_types = [{node_type_id = \"k8s-2c\", num_cores = 2, memory_mb = 4096}]\n"
    )
    srv = Server(default_bin(), work, config)
    try:
        srv.start()
        for _ in range(100):
            try:
                if requests.put(f"{s3['AWS_ENDPOINT']}/bench", timeout=5).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        local = create(srv, "bench-local", node_type_id="kiln-local", num_workers=0, spark_env_vars=s3)
        pods = create(srv, "bench-pods", node_type_id="k8s-2c", num_workers=2)
        spark_local, spark_pods = session(srv, local), session(srv, pods)
        expected = spark_local.sql(GROUP_BY).collect()
        assert spark_pods.sql(GROUP_BY).collect() == expected, "the clusters disagree"
        workers = len(double.running(pods))
        times = {"local": [], "pods": []}
        shuffle = None
        for _ in range(args.rounds):
            times["local"].append(timed(lambda: spark_local.sql(GROUP_BY).collect()))
            before = veth_bytes(f"kd{double.port % 10000}")
            times["pods"].append(timed(lambda: spark_pods.sql(GROUP_BY).collect()))
            after = veth_bytes(f"kd{double.port % 10000}")
            shuffle = (after[0] - before[0], after[1] - before[1])
        print(f"group-by 20 M rows, 16 partitions ({args.rounds} rounds, medians)")
        print(f"  one local engine          {statistics.median(times['local']):6.2f} s")
        print(f"  2 worker pods             {statistics.median(times['pods']):6.2f} s  ({workers} pods running, of all sessions)")
        print(f"  bytes pods sent / received in one query: {shuffle[0] / 1e6:.1f} MB / {shuffle[1] / 1e6:.1f} MB")

        rows = 5_000_000
        df = spark_local.range(0, rows, 1, 8).selectExpr("id", "id % 97 AS k", "uuid() AS s")
        for where, path in (("local disk", None), ("S3 (moto)", "s3://bench/t")):
            target = path
            if path is None:  # a directory the cluster's OS user may write
                target = f"/tmp/kiln-bench-delta-{os.urandom(4).hex()}"
                os.makedirs(target)
                os.chmod(target, 0o777)
            write = timed(lambda: df.write.format("delta").mode("overwrite").save(target))
            read = statistics.median(
                timed(lambda: spark_local.read.format("delta").load(target)
                      .selectExpr("count(*)", "sum(id)", "sum(k)", "max(s)").collect())
                for _ in range(args.rounds)
            )
            if path is None:
                size = sum(f.stat().st_size for f in Path(target).rglob("*.parquet"))
            else:
                import boto3

                client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT"], aws_access_key_id="bench",
                                      aws_secret_access_key="bench-secret", region_name="us-east-1")  # fmt: skip
                size = sum(o["Size"] for o in client.list_objects_v2(Bucket="bench", Prefix="t/").get("Contents", [])
                           if o["Key"].endswith(".parquet"))  # fmt: skip
            mb = size / 1e6
            print(f"delta {rows // 1_000_000} M rows on {where:<11} write {write:5.2f} s ({mb / write:6.1f} MB/s), "
                  f"read {read:5.2f} s ({mb / read:6.1f} MB/s), {mb:.0f} MB of Parquet")  # fmt: skip
        print("files API 1 GiB to S3: not built (volumes and DBFS on object storage are issue 26 part 1)")
    finally:
        srv.stop()
        moto.terminate()
        double.stop()


if __name__ == "__main__":
    main()
