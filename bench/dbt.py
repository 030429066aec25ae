"""dbt on a Kiln SQL warehouse: prints measured figures (nothing is asserted).

  A project of one seed (R rows), a staging view, a table and an incremental merge model, on a
  2X-Small warehouse: wall time of `dbt seed`, `dbt run` (first, then again: the incremental path),
  `dbt test` and `dbt docs generate`, each as the dbt CLI reports and as a whole process.

Usage:  python bench/dbt.py [--rows 1000]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln),
        KILN_DBT_VENV (a venv with tests/clients/requirements-dbt.txt; scripts/test makes one)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench import Server, default_bin  # the shared helpers of bench/bench.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    args = ap.parse_args()
    venv = os.environ.get("KILN_DBT_VENV")
    if not venv:
        sys.exit("set KILN_DBT_VENV to a venv with tests/clients/requirements-dbt.txt installed")
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-dbt-"))
    work.chmod(0o711)
    srv = Server(default_bin(), work)
    srv.start()
    try:
        wid = srv.api("POST", "/api/2.0/sql/warehouses", json={
            "name": "bench-dbt", "cluster_size": "2X-Small", "auto_stop_mins": 0})["id"]
        while (w := srv.api("GET", f"/api/2.0/sql/warehouses/{wid}"))["state"] != "RUNNING":
            time.sleep(0.1)
        proj = work / "project"
        (proj / "models").mkdir(parents=True)
        (proj / "seeds").mkdir()
        (proj / "dbt_project.yml").write_text('name: shop\nversion: "1.0"\nprofile: kiln\n'
                                              'model-paths: ["models"]\nseed-paths: ["seeds"]\n')
        lines = ["id,customer,amount"] + [f"{i},c{i % 50},{i % 97}.5" for i in range(1, args.rows + 1)]
        (proj / "seeds" / "raw_orders.csv").write_text("\n".join(lines) + "\n")
        (proj / "models" / "stg_orders.sql").write_text(
            "{{ config(materialized='view') }}\nselect id, customer, amount from {{ ref('raw_orders') }}\n")
        (proj / "models" / "customers.sql").write_text(
            "{{ config(materialized='table') }}\n"
            "select customer, sum(amount) as total, count(*) as orders from {{ ref('stg_orders') }} group by customer\n")
        (proj / "models" / "order_facts.sql").write_text(
            "{{ config(materialized='incremental', unique_key='id', incremental_strategy='merge') }}\n"
            "select id, customer, amount from {{ ref('stg_orders') }}\n"
            "{% if is_incremental() %} where id >= (select coalesce(max(id), 0) from {{ this }}) {% endif %}\n")
        (proj / "models" / "schema.yml").write_text(textwrap.dedent("""
            version: 2
            models:
              - name: customers
                columns:
                  - name: customer
                    tests: [unique, not_null]
        """))
        profiles = work / "profiles"
        profiles.mkdir()
        p = w["odbc_params"]
        (profiles / "profiles.yml").write_text(textwrap.dedent(f"""
            kiln:
              target: dev
              outputs:
                dev:
                  type: databricks
                  catalog: main
                  schema: bench_dbt
                  host: 127.0.0.1
                  http_path: {p["path"]}
                  token: {srv.token}
                  threads: 4
                  connection_parameters: {{_port: {p["port"]}, _tls_no_verify: true, enable_telemetry: false}}
        """))
        env = dict(os.environ, DBT_PROFILES_DIR=str(profiles), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
        print(f"dbt on a 2X-Small warehouse, a {args.rows}-row seed, 3 models, 2 tests")
        for cmd in (["seed"], ["run"], ["run"], ["test"], ["docs", "generate"]):
            t = time.perf_counter()
            r = subprocess.run([f"{venv}/bin/dbt", *cmd], cwd=proj, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
            inner = next((line.split("in ")[-1].split(" (")[0] for line in r.stdout.splitlines()
                          if "Finished running" in line), "-")
            print(f"  dbt {' '.join(cmd):14} rc={r.returncode}  process {wall:5.2f} s   dbt's own: {inner}")
            if r.returncode != 0:
                print(r.stdout[-2000:])
                break
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
