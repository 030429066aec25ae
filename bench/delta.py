"""OPTIMIZE and VACUUM of a table written as many small appends: prints measured figures
(nothing is asserted).

  appends     N appends of 10 rows each through Spark Connect (the gateway): per append, ms
  optimize    files before/after (DESCRIBE DETAIL), the OPTIMIZE's wall time, and a full scan
              (count + sum) before and after: median of 5, and the speed-up
  vacuum      VACUUM RETAIN 0 HOURS DRY RUN (files found, time) and the real run (time, files left
              under the table's directory)

Usage:  python bench/delta.py [--appends 200]   (each append reads the whole log: 1,000 take an hour)
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests, pyspark-client (tests/conformance/requirements.txt).
"""

from __future__ import annotations

import argparse
import glob
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import Server, default_bin, wait_state  # the shared helpers of bench/bench.py


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return (time.perf_counter() - start) * 1000, value


def median_ms(fn, runs=5):
    fn()  # warm
    return statistics.median(timed(fn)[0] for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appends", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-delta-"))
    work.chmod(0o711)
    srv = Server(default_bin(), work)
    srv.start()
    try:
        node = srv.api("GET", "/api/2.1/clusters/list-node-types")["node_types"][0]["node_type_id"]
        cid = srv.api("POST", "/api/2.1/clusters/create", json={
            "cluster_name": "bench-delta", "spark_version": "16.4.x-scala2.12", "node_type_id": node,
            "num_workers": 0, "autotermination_minutes": 0})["cluster_id"]  # fmt: skip
        srv.cluster_ids.add(cid)
        wait_state(srv, cid, "RUNNING", 0.2, timeout=600)
        from pyspark.sql import SparkSession

        url = f"sc://127.0.0.1:{srv.port}/;x-databricks-cluster-id={cid};authorization=Bearer {srv.token}"
        spark = SparkSession.builder.remote(url).getOrCreate()
        t = "main.default.bench_small_files"
        spark.range(0).write.saveAsTable(t)
        per_append = []
        for i in range(args.appends):
            ms, _ = timed(lambda: spark.range(i * 10, i * 10 + 10).write.mode("append").saveAsTable(t))
            per_append.append(ms)
            if (i + 1) % 100 == 0:
                print(f"  appends {i - 98:>5}-{i + 1:<5} median {statistics.median(per_append[-100:]):.1f} ms", flush=True)
        print(f"appends            {args.appends} x 10 rows: median {statistics.median(per_append):.1f} ms, "
              f"max {max(per_append):.1f} ms", flush=True)  # fmt: skip
        detail = lambda: spark.sql(f"DESCRIBE DETAIL {t}").first()  # noqa: E731
        before = detail()
        scan = lambda: spark.sql(f"SELECT count(*), sum(id) FROM {t}").collect()  # noqa: E731
        rows_before = scan()
        scan_before = median_ms(scan)
        optimize_ms, result = timed(lambda: spark.sql(f"OPTIMIZE {t}").first())
        after = detail()
        assert scan() == rows_before, "OPTIMIZE changed the rows"
        scan_after = median_ms(scan)
        print(f"optimize           files {before.numFiles} -> {after.numFiles} "
              f"({result.metrics.numFilesRemoved} removed, {result.metrics.numFilesAdded} added), "
              f"bytes {before.sizeInBytes} -> {after.sizeInBytes}, took {optimize_ms:.0f} ms")  # fmt: skip
        print(f"full scan          before {scan_before:.1f} ms, after {scan_after:.1f} ms "
              f"(speed-up x{scan_before / scan_after:.1f}, median of 5)")  # fmt: skip
        root = after.location[len("file://"):]
        on_disk = lambda: len(glob.glob(root + "/*.parquet"))  # noqa: E731
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        files_before = on_disk()
        dry_ms, dry = timed(lambda: spark.sql(f"VACUUM {t} RETAIN 0 HOURS DRY RUN").collect())
        real_ms, _ = timed(lambda: spark.sql(f"VACUUM {t} RETAIN 0 HOURS").collect())
        print(f"vacuum             dry run: {len(dry)} files found in {dry_ms:.0f} ms; "
              f"run: {real_ms:.0f} ms, data files on disk {files_before} -> {on_disk()}")  # fmt: skip
        assert scan() == rows_before, "VACUUM changed the rows"
        spark.stop()
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
