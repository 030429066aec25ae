"""Pipeline benchmarks: prints measured figures (nothing is asserted).

  engine start      a development pipeline's first update: WAITING_FOR_RESOURCES -> INITIALIZING
  full update       3 datasets (CSV files -> streaming table; clean streaming table with
                    expectations; aggregate materialized view) over N rows, engine already up
  incremental       one small new file, then an update
  unchanged         an update with no new input (materialized view NO_OP)
  floor             the same three steps run by hand as Python commands in a context on the
                    pipeline's own engine (read CSV -> Delta; filter + quality counts -> Delta;
                    aggregate -> Delta)

Update times are the server's: from the update's CREATED event to its COMPLETED event.

Usage:  python bench/pipelines.py [--rows 1000000] [--runs 3]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests (tests/conformance/requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import base64
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench import Server, default_bin  # the shared helpers of bench/bench.py

PIPELINE_SQL = """
CREATE OR REFRESH STREAMING TABLE raw
AS SELECT * FROM STREAM read_files('/bench/in', format => 'csv', header => true, inferSchema => true);

CREATE OR REFRESH STREAMING TABLE clean (
  CONSTRAINT positive EXPECT (amount > 0) ON VIOLATION DROP ROW,
  CONSTRAINT has_key EXPECT (k IS NOT NULL)
) AS SELECT id, k, amount FROM STREAM(LIVE.raw);

CREATE OR REFRESH MATERIALIZED VIEW agg
AS SELECT k, count(*) AS n, sum(amount) AS total FROM LIVE.clean GROUP BY k;
"""

FLOOR = [
    "spark.read.option('header', True).option('inferSchema', True).csv('dbfs:/bench/in')"
    ".write.mode('append').saveAsTable('main.bench_floor.raw')",
    "df = spark.table('main.bench_floor.raw').selectExpr('id', 'k', 'amount', 'amount > 0 AS p', 'k IS NOT NULL AS h')\n"
    "df.selectExpr('count(*)', 'sum(CASE WHEN p THEN 0 ELSE 1 END)', 'sum(CASE WHEN h THEN 0 ELSE 1 END)').collect()\n"
    "df.where('p').select('id', 'k', 'amount').write.mode('append').saveAsTable('main.bench_floor.clean')",
    "spark.sql('INSERT OVERWRITE TABLE main.bench_floor.agg SELECT k, count(*) AS n, sum(amount) AS total "
    "FROM main.bench_floor.clean GROUP BY k')",
]


def write_csv(path: Path, start: int, rows: int) -> None:
    rnd = random.Random(start)
    with open(path, "w") as f:
        f.write("id,k,amount\n")
        for i in range(start, start + rows):
            k = "" if i % 97 == 0 else f"k{i % 1000}"
            f.write(f"{i},{k},{rnd.uniform(-10, 1000):.2f}\n")


VERBOSE = False


def ts(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def run_update(srv: Server, pid: str, body: dict | None = None) -> dict:
    """Starts an update, waits for it, returns server-side phase times (s)."""
    uid = srv.api("POST", f"/api/2.0/pipelines/{pid}/updates", json=body or {})["update_id"]
    deadline = time.monotonic() + 900
    while True:
        state = srv.api("GET", f"/api/2.0/pipelines/{pid}/updates/{uid}")["update"]["state"]
        if state in ("COMPLETED", "FAILED", "CANCELED"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"update {uid} stuck in {state}")
        time.sleep(0.01)
    if state != "COMPLETED":
        raise RuntimeError(f"update {uid} ended {state}")
    events = srv.api("GET", f"/api/2.0/pipelines/{pid}/events",
                     params={"max_results": 100})["events"]
    mine = [e for e in events if e["origin"].get("update_id") == uid]
    at = {e["details"]["update_progress"]["state"]: ts(e) for e in mine if e["event_type"] == "update_progress"}
    order = sorted(at.items(), key=lambda kv: kv[1])
    phases = " ".join(f"{a}->{b}:{(tb - ta) * 1000:.0f}" for (a, ta), (b, tb) in zip(order, order[1:]))
    if VERBOSE:
        print(f"  phases (ms): {phases}")
    return {"total": at["COMPLETED"] - at["CREATED"],
            "engine": at["INITIALIZING"] - at["WAITING_FOR_RESOURCES"],
            "running": at["COMPLETED"] - at["RUNNING"]}


def command(srv: Server, cid: str, ctx: str, code: str) -> float:
    t0 = time.perf_counter()
    cmd = srv.api("POST", "/api/1.2/commands/execute",
                  json={"clusterId": cid, "contextId": ctx, "language": "python", "command": code})["id"]
    while True:
        body = srv.api("GET", "/api/1.2/commands/status", params={"clusterId": cid, "contextId": ctx, "commandId": cmd})
        if body["status"] in ("Finished", "Error", "Cancelled"):
            break
        time.sleep(0.005)
    if body["status"] != "Finished" or body["results"].get("resultType") == "error":
        raise RuntimeError(f"floor command failed: {body['results']}")
    return time.perf_counter() - t0


def floor(srv: Server, cid: str) -> float:
    ctx = srv.api("POST", "/api/1.2/contexts/create", json={"clusterId": cid, "language": "python"})["id"]
    while srv.api("GET", "/api/1.2/contexts/status", params={"clusterId": cid, "contextId": ctx})["status"] != "Running":
        time.sleep(0.01)
    command(srv, cid, ctx, "spark.sql('CREATE SCHEMA IF NOT EXISTS main.bench_floor')\n"
            "for t in ('raw', 'clean', 'agg'): spark.sql(f'DROP TABLE IF EXISTS main.bench_floor.{t}')\n"
            "spark.sql('CREATE TABLE main.bench_floor.agg (k STRING, n BIGINT, total DOUBLE) USING delta')")
    total = sum(command(srv, cid, ctx, code) for code in FLOOR)
    srv.api("POST", "/api/1.2/contexts/destroy", json={"clusterId": cid, "contextId": ctx})
    return total


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f}, n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--verbose", action="store_true", help="print each update's phase times")
    ap.add_argument("--json", help="also write the figures to this file (bench/floors.py reads it)")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    binary = default_bin()
    workdir = Path(tempfile.mkdtemp(prefix="kiln-bench-dlt-"))
    workdir.chmod(0o711)  # reachable by the unprivileged users user code runs as (when root)
    srv = Server(binary, workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        srv.start()
        inbox = srv.data_dir / "dbfs" / "bench" / "in"
        inbox.mkdir(parents=True)
        per = args.rows // args.files
        for i in range(args.files):
            write_csv(inbox / f"part-{i:03}.csv", i * per, per)
        nb = base64.b64encode(PIPELINE_SQL.encode()).decode()
        srv.api("POST", "/api/2.0/workspace/mkdirs", json={"path": "/Shared/bench"})
        srv.api("POST", "/api/2.0/workspace/import",
                json={"path": "/Shared/bench/dlt", "format": "SOURCE", "language": "SQL", "content": nb})
        pid = srv.api("POST", "/api/2.0/pipelines", json={
            "name": "bench", "target": "bench", "development": True,
            "libraries": [{"notebook": {"path": "/Shared/bench/dlt"}}]})["pipeline_id"]
        first = run_update(srv, pid)
        cid = srv.api("GET", f"/api/2.0/pipelines/{pid}")["cluster_id"]
        srv.cluster_ids.add(cid)
        print(f"binary: {binary}")
        print(f"engine start (first update, WAITING_FOR_RESOURCES -> INITIALIZING): {first['engine'] * 1000:.0f} ms")
        print(f"first update ({args.rows:,} rows, engine start included): {first['total'] * 1000:.0f} ms")
        full, incremental, unchanged, floors = [], [], [], []
        for run in range(args.runs):
            full.append(run_update(srv, pid, {"full_refresh": True})["total"])
            write_csv(inbox / f"extra-{run:03}.csv", args.rows + run * 100, 100)
            incremental.append(run_update(srv, pid)["total"])
            unchanged.append(run_update(srv, pid)["total"])
            floors.append(floor(srv, cid))
        print(f"full refresh update (engine up):           {fmt(full)}   target <= 3000 ms")
        print(f"incremental update (one 100-row file):     {fmt(incremental)}   target <= 1000 ms")
        print(f"update with unchanged input:               {fmt(unchanged)}   target <= 300 ms")
        print(f"floor: the same 3 steps as context commands: {fmt(floors)}")
        if args.json:
            Path(args.json).write_text(json.dumps({"full_s": full, "incremental_s": incremental,
                                                   "unchanged_s": unchanged, "floor_s": floors}))  # fmt: skip
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
