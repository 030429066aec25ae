"""Spark Connect through Kiln's gateway vs directly to the engine: prints measured figures
(nothing is asserted).

  round trip   `spark.sql("SELECT 1").collect()` latency (p50, p95) on one session:
               directly on the engine's loopback port, through the gateway on the HTTP port (h2c),
               and through the gateway on the HTTPS port (TLS)
  transfer     `spark.range(N).toArrow()` of 2 M rows (16 MB of Arrow) each way: wall time
  upload       `createDataFrame` of 400,000 local rows (about 10 MB in the request) then `count()`:
               the request Kiln reads whole (it may be a table write it carries out) on its way
  routes       also the loopback front kernels and pipeline workers use (its URL read from a context)

Usage:  python bench/gateway.py [--calls 300]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests, pyspark-client (tests/conformance/requirements.txt).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import default_bin, free_port, wait_healthy  # the shared helpers of bench/bench.py

CLIENT = r"""
import json, sys, time
from pyspark.sql import SparkSession
url, calls = sys.argv[1], int(sys.argv[2])
spark = SparkSession.builder.remote(url).getOrCreate()
spark.sql("SELECT 1").collect()
lat = []
for _ in range(calls):
    t = time.perf_counter()
    spark.sql("SELECT 1").collect()
    lat.append(time.perf_counter() - t)
t = time.perf_counter()
rows = spark.range(2_000_000).toArrow().num_rows
transfer = time.perf_counter() - t
import pandas as pd
local = pd.DataFrame({"id": range(400_000), "k": ["key-%d" % (i % 97) for i in range(400_000)], "v": [i * 0.5 for i in range(400_000)]})
t = time.perf_counter()
counted = spark.createDataFrame(local).count()
upload = time.perf_counter() - t
print(json.dumps({"lat": lat, "transfer": transfer, "rows": rows, "upload": upload, "counted": counted}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-gw-"))
    work.chmod(0o711)
    port, https = free_port(), free_port()
    (work / "kiln.toml").write_text("[lakebase]\nproxy_port = 0\n")
    log = open(work / "kiln.log", "wb")
    proc = subprocess.Popen(
        [str(default_bin()), "serve", "--port", str(port), "--https-port", str(https),
         "--data-dir", str(work / "data"), "--config", str(work / "kiln.toml")],
        stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc, work / "kiln.log")
        token = (work / "data" / "admin.token").read_text().strip()
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        cid = s.post(base + "/api/2.1/clusters/create",
                     json={"cluster_name": "bench", "spark_version": "16.4.x-scala2.12", "num_workers": 0}).json()["cluster_id"]  # fmt: skip
        while (c := s.get(base + "/api/2.1/clusters/get", params={"cluster_id": cid}).json())["state"] != "RUNNING":
            time.sleep(0.5)
        ca = work / "data" / "tls" / "bundle.pem"
        # the front's URL, as a kernel sees it
        ctx = s.post(base + "/api/1.2/contexts/create", json={"clusterId": cid, "language": "python"}).json()["id"]
        cmd = s.post(base + "/api/1.2/commands/execute", json={
            "clusterId": cid, "contextId": ctx, "language": "python",
            "command": "import os; print(os.environ['KILN_SPARK_URL'])"}).json()["id"]
        while (r := s.get(base + "/api/1.2/commands/status",
                          params={"clusterId": cid, "contextId": ctx, "commandId": cmd}).json())["status"] not in ("Finished", "Error"):
            time.sleep(0.2)
        front = r["results"]["data"].strip()
        routes = {
            "direct (engine port)": (c["default_tags"]["KilnSparkConnectUrl"], {}),
            "gateway h2c (HTTP port)": (
                f"sc://127.0.0.1:{port}/;x-databricks-cluster-id={cid};authorization=Bearer {token}", {}),
            "front (kernels, workers)": (front, {}),
            "gateway TLS (HTTPS port)": (
                f"sc://localhost:{https}/;use_ssl=true;token={token};x-databricks-cluster-id={cid}",
                {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca)}),
        }  # fmt: skip
        script = work / "client.py"
        script.write_text(CLIENT)
        print(f"Spark Connect round trips ({args.calls} x SELECT 1 on one session) and a 2 M-row toArrow()")
        print(f"{'route':28} {'p50 ms':>8} {'p95 ms':>8} {'2M rows s':>10} {'upload s':>9}")
        for name, (url, env) in routes.items():
            out = subprocess.run([sys.executable, str(script), url, str(args.calls)], capture_output=True,
                                 text=True, env={**os.environ, **env}, cwd=work, timeout=900)  # fmt: skip
            if out.returncode != 0:
                print(f"{name:28} failed: {out.stderr[-500:]}")
                continue
            import json

            r = json.loads(out.stdout.strip().splitlines()[-1])
            lat = sorted(r["lat"])
            p50 = statistics.median(lat) * 1000
            p95 = lat[int(len(lat) * 0.95) - 1] * 1000
            print(f"{name:28} {p50:8.2f} {p95:8.2f} {r['transfer']:10.2f} {r['upload']:9.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
