"""Managed tables on local disk vs on the object-store root: prints measured figures (nothing is asserted).

  write     `saveAsTable` of a new managed table (5 M rows: a long, a short string, a double), timed
            inside the command (the engine's write, Kiln's CREATE and commit): s and MB/s of Delta files
  read      a full scan of every column (`count`, `sum`, `max(length)`): s and MB/s
  utility   DESCRIBE HISTORY and OPTIMIZE of the table (Kiln reads and commits its Delta log itself)

Each in a Kiln of its own: the warehouse on local disk, then on `[storage] root = "s3://…"` (moto on
loopback). moto is a Python server, so the S3 figures are moto's more than S3's.

Usage:  python bench/tables.py [--rows 5000000] [--only local|s3]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  databricks-sdk, requests, moto[server] (tests/conformance/requirements.txt); s3fs for S3.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys

from bench import default_bin  # the shared helpers of bench/bench.py
from volumes import start_kiln, start_moto


def measure(rows: int, label: str, storage: str) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config
    from databricks.sdk.service.compute import Language

    work, proc, base, token = start_kiln("kiln-bench-tables-", storage)
    try:
        w = WorkspaceClient(config=Config(host=base, token=token))
        wait = datetime.timedelta(seconds=600)
        cid = w.clusters.create_and_wait(cluster_name="bench", spark_version="15.4.x-scala2.12", num_workers=0,
                                         autotermination_minutes=0, timeout=wait).cluster_id  # fmt: skip
        ctx = w.command_execution.create_and_wait(cluster_id=cid, language=Language.PYTHON, timeout=wait).id

        def run(code: str) -> dict:
            res = w.command_execution.execute_and_wait(cluster_id=cid, context_id=ctx, language=Language.PYTHON,
                                                       command=code, timeout=wait)  # fmt: skip
            if res.results.result_type.value != "text":
                sys.exit(f"the command failed: {res.results.cause}")
            return json.loads(res.results.data.strip().splitlines()[-1])

        figures = run(
            "import json, time\n"
            f"df = spark.range(0, {rows}, 1, 8).selectExpr('id', \"concat('name-', id % 1000) AS s\", 'id * 0.5 AS d')\n"
            "t = time.perf_counter(); df.write.saveAsTable('main.default.bench'); write = time.perf_counter() - t\n"
            "t = time.perf_counter()\n"
            "r = spark.sql('SELECT count(*), sum(id), sum(d), max(length(s)) FROM main.default.bench').collect()[0]\n"
            "read = time.perf_counter() - t\n"
            "t = time.perf_counter(); spark.sql('DESCRIBE HISTORY main.default.bench').collect(); history = time.perf_counter() - t\n"
            "detail = spark.sql('DESCRIBE DETAIL main.default.bench').collect()[0]\n"
            "t = time.perf_counter(); spark.sql('OPTIMIZE main.default.bench').collect(); optimize = time.perf_counter() - t\n"
            "print(json.dumps({'write': write, 'read': read, 'history': history, 'optimize': optimize, 'rows': r[0],\n"
            "                  'location': detail['location'], 'files': detail['numFiles'], 'bytes': detail['sizeInBytes']}))"
        )
        mb = figures["bytes"] / 1e6
        where = figures["location"].split("/warehouse/")[0]
        print(f"Managed table on {label} ({where}/warehouse/…), {rows:,} rows (Kiln {default_bin().parent.name} build)")
        print(f"  saveAsTable (new table)      {figures['write']:6.2f} s  ({mb / figures['write']:6.1f} MB/s of Delta files)")
        print(f"  full scan, every column      {figures['read']:6.2f} s  ({mb / figures['read']:6.1f} MB/s)")
        print(f"  DESCRIBE HISTORY             {figures['history'] * 1000:6.1f} ms")
        print(f"  OPTIMIZE ({figures['files']} files into 1)   {figures['optimize']:6.2f} s")
        print(f"  Delta files                  {mb:6.1f} MB in {figures['files']} files")
        assert figures["rows"] == rows
        w.clusters.permanent_delete(cid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--only", choices=["local", "s3"])
    args = ap.parse_args()
    if args.only != "s3":
        measure(args.rows, "local disk", "")
    if args.only != "local":
        moto, endpoint = start_moto()
        try:
            storage = (f'[storage]\nroot = "s3://kiln-bench/root"\nendpoint = "{endpoint}"\nallow_http = true\n'
                       'region = "us-east-1"\naccess_key_id = "bench"\nsecret_access_key = "bench-secret"\n')  # fmt: skip
            measure(args.rows, "S3 (moto)", storage)
        finally:
            moto.terminate()
            moto.wait(timeout=30)


if __name__ == "__main__":
    main()
