"""SQL warehouses: prints measured figures (nothing is asserted).

  statements  Statement Execution API: SELECT 1 on a RUNNING warehouse, N times after a warm-up:
              p50/p99 latency in ms of the whole POST (wait_timeout 10s, INLINE JSON_ARRAY)
  protocol    databricks-sql-connector (Thrift over HTTPS): SELECT 1 round trips (execute +
              fetch) p50/p99, and fetching R rows (two BIGINT columns) with fetchall_arrow():
              rows per second, next to the floor: the same query's toArrow() straight on the
              warehouse's engine (Spark Connect to its port)

Usage:  python bench/sql.py [--calls 200] [--rows 10000000]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench import Server, default_bin  # the shared helpers of bench/bench.py


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def warehouse(srv):
    wid = srv.api("POST", "/api/2.0/sql/warehouses", json={
        "name": "bench", "cluster_size": "2X-Small", "auto_stop_mins": 0})["id"]
    deadline = time.monotonic() + 600
    while (w := srv.api("GET", f"/api/2.0/sql/warehouses/{wid}"))["state"] != "RUNNING":
        if time.monotonic() > deadline:
            raise RuntimeError("the warehouse did not start")
        time.sleep(0.1)
    return w


def statements(srv, wid, calls):
    body = {"statement": "SELECT 1", "warehouse_id": wid, "wait_timeout": "10s"}
    for _ in range(10):
        srv.api("POST", "/api/2.0/sql/statements", json=body)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        r = srv.api("POST", "/api/2.0/sql/statements", json=body)
        times.append((time.perf_counter() - t) * 1000)
        assert r["status"]["state"] == "SUCCEEDED", r["status"]
    print(f"statements: {calls} x SELECT 1 (Statement Execution API, INLINE): "
          f"p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms")


def protocol(srv, w, calls, rows):
    from databricks import sql

    warnings.filterwarnings("ignore")
    port = w["odbc_params"]["port"]
    conn = sql.connect(server_hostname="127.0.0.1", _port=port, http_path=w["odbc_params"]["path"],
                       access_token=srv.token, _tls_no_verify=True, enable_telemetry=False)
    cur = conn.cursor()
    for _ in range(10):
        cur.execute("SELECT 1")
        cur.fetchall()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        cur.execute("SELECT 1")
        cur.fetchall()
        times.append((time.perf_counter() - t) * 1000)
    print(f"protocol: {calls} x SELECT 1 (databricks-sql-connector, execute + fetch): "
          f"p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms")
    query = f"SELECT id, id * 2 AS twice FROM range({rows})"
    t = time.perf_counter()
    cur.execute(query)
    table = cur.fetchall_arrow()
    connector_s = time.perf_counter() - t
    assert table.num_rows == rows
    conn.close()
    engine = next(c for c in srv.api("GET", "/api/2.1/clusters/list")["clusters"]
                  if (c.get("custom_tags") or {}).get("SqlEndpointId") == w["id"])
    url = srv.api("GET", "/api/2.1/clusters/get", params={"cluster_id": engine["cluster_id"]})["default_tags"]["KilnSparkConnectUrl"]
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(url).create()
    spark.sql("SELECT 1").toArrow()
    t = time.perf_counter()
    floor = spark.sql(query).toArrow()
    floor_s = time.perf_counter() - t
    spark.stop()
    assert floor.num_rows == rows
    print(f"protocol: {rows:,} rows: connector fetchall_arrow {rows / connector_s / 1e6:.2f} M rows/s "
          f"({connector_s:.2f} s); engine toArrow {rows / floor_s / 1e6:.2f} M rows/s ({floor_s:.2f} s): "
          f"{floor_s / connector_s * 100:.0f} % of the floor")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rows", type=int, default=10_000_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-sql-"))
    work.chmod(0o711)
    srv = Server(default_bin(), work)
    srv.start()
    try:
        w = warehouse(srv)
        statements(srv, w["id"], args.calls)
        protocol(srv, w, args.calls, args.rows)
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
