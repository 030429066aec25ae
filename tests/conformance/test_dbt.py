"""A dbt project run with the real dbt CLI (dbt-databricks 1.10, its own venv: KILN_DBT_VENV) against a
Kiln SQL warehouse, only the profile's host, http_path and token (and the port) changed: seeds, a
staging view, a table, an incremental merge model, schema tests, `dbt docs generate`, and a second
run after the seed data changed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from kiln_helpers import unique

WAIT = timedelta(minutes=5)


@pytest.fixture(scope="module")
def project(kiln_factory, tmp_path_factory):
    venv = os.environ.get("KILN_DBT_VENV")
    assert venv, "KILN_DBT_VENV must name the venv scripts/test makes from tests/clients/requirements-dbt.txt"
    server = kiln_factory()
    w = server.client()
    wh = w.warehouses.create_and_wait(name=unique("dbt"), cluster_size="2X-Small", auto_stop_mins=0, timeout=WAIT)
    schema = unique("dbt").replace("-", "_")
    proj = tmp_path_factory.mktemp("dbt-project")
    (proj / "models").mkdir()
    (proj / "seeds").mkdir()
    (proj / "dbt_project.yml").write_text(textwrap.dedent("""
        name: shop
        version: "1.0"
        profile: kiln
        model-paths: ["models"]
        seed-paths: ["seeds"]
    """))
    (proj / "seeds" / "raw_orders.csv").write_text("id,customer,amount\n1,ann,10.5\n2,bob,20\n3,ann,5\n")
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
            description: "One row per customer"
            config:
              persist_docs: {relation: true, columns: true}
            columns:
              - name: customer
                description: "Who ordered"
                tests: [unique, not_null]
          - name: order_facts
            columns:
              - name: id
                tests: [unique, not_null]
    """))
    profiles = tmp_path_factory.mktemp("dbt-profiles")
    (profiles / "profiles.yml").write_text(textwrap.dedent(f"""
        kiln:
          target: dev
          outputs:
            dev:
              type: databricks
              catalog: main
              schema: {schema}
              host: 127.0.0.1
              http_path: {wh.odbc_params.path}
              token: {server.token}
              threads: 2
              connection_parameters:
                _port: {wh.odbc_params.port}
                _tls_no_verify: true
                enable_telemetry: false
    """))
    env = dict(os.environ, DBT_PROFILES_DIR=str(profiles), DBT_SEND_ANONYMOUS_USAGE_STATS="false",
               DO_NOT_TRACK="1")

    def dbt(*args):
        r = subprocess.run([f"{venv}/bin/dbt", *args], cwd=proj, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"dbt {' '.join(args)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
        return r.stdout

    return {"w": w, "server": server, "warehouse": wh.id, "schema": schema, "dbt": dbt, "dir": proj}


def rows(p, sql):
    r = p["w"].statement_execution.execute_statement(statement=sql, warehouse_id=p["warehouse"], wait_timeout="30s")
    assert r.status.state.value == "SUCCEEDED", r.status
    return r.result.data_array or []


def test_a_dbt_project_runs_tests_documents_and_runs_again(project):
    p, dbt, s = project, project["dbt"], project["schema"]
    assert "All checks passed" in dbt("debug")
    dbt("seed")
    out = dbt("run")
    assert "PASS=3" in out, out
    assert rows(p, f"SELECT customer, total, orders FROM main.{s}.customers ORDER BY customer") == \
        [["ann", "15.5", "2"], ["bob", "20.0", "1"]]
    tables = {t.name: t.table_type.value for t in p["w"].tables.list(catalog_name="main", schema_name=s)}
    assert tables == {"raw_orders": "MANAGED", "stg_orders": "VIEW", "customers": "MANAGED", "order_facts": "MANAGED"}
    assert "PASS=4" in dbt("test")
    # persist_docs: the model's and its column's descriptions are in Unity Catalog
    got = p["w"].tables.get(f"main.{s}.customers")
    assert got.comment == "One row per customer"
    assert {c.name: c.comment for c in got.columns}["customer"] == "Who ordered"
    dbt("docs", "generate")
    catalog = json.loads((p["dir"] / "target" / "catalog.json").read_text())
    nodes = {k.split(".")[-1]: v for k, v in catalog["nodes"].items()}
    assert set(nodes["customers"]["columns"]) == {"customer", "total", "orders"}
    # the seed changes: bob's order grows, a new order arrives; the incremental model merges only new ids
    (p["dir"] / "seeds" / "raw_orders.csv").write_text("id,customer,amount\n1,ann,10.5\n2,bob,25\n3,ann,5\n4,cy,7\n")
    dbt("seed")
    assert "PASS=3" in dbt("run")
    assert rows(p, f"SELECT customer, total FROM main.{s}.customers ORDER BY customer") == \
        [["ann", "15.5"], ["bob", "25.0"], ["cy", "7.0"]]
    assert rows(p, f"SELECT id, amount FROM main.{s}.order_facts ORDER BY id") == \
        [["1", "10.5"], ["2", "20.0"], ["3", "5.0"], ["4", "7.0"]]
    assert "PASS=4" in dbt("test")


def put_file(w, path: str, data: bytes):
    from databricks.sdk.service.workspace import ImportFormat
    w.workspace.import_(path=path, format=ImportFormat.AUTO, content=base64.b64encode(data).decode(), overwrite=True)


def test_a_dbt_task_runs_the_workspace_project_on_a_warehouse_and_on_its_cluster(project):
    """A job's dbt_task: the project from the workspace, dbt-databricks from the task's environment,
    Kiln's generated profile for the warehouse; then the same project with its own Databricks-style
    profile (DBT_HOST, DBT_ACCESS_TOKEN, DBT_ORG_ID, DBT_CLUSTER_ID, and Kiln's DBT_PORT) on the task's
    cluster; run-now's dbt_commands; a failing command fails the task with dbt's message."""
    from databricks.sdk.service import jobs

    p, w = project, project["w"]
    schema = unique("dbttask").replace("-", "_")
    home = f"/Users/{w.current_user.me().user_name}/{unique('dbt')}"
    for path in sorted(p["dir"].rglob("*")):
        rel = path.relative_to(p["dir"]).as_posix()
        if path.is_dir() or rel.split("/")[0] in ("target", "logs", "dbt_packages"):
            continue
        w.workspace.mkdirs(f"{home}/{path.parent.relative_to(p['dir']).as_posix()}".rstrip("/."))
        put_file(w, f"{home}/{rel}", path.read_bytes())
    put_file(w, f"{home}/seeds/raw_orders.csv", b"id,customer,amount\n1,ann,10.5\n2,bob,20\n3,ann,5\n")
    w.workspace.mkdirs(f"{home}/profiles")
    put_file(w, f"{home}/profiles/profiles.yml", textwrap.dedent(f"""
        kiln:
          target: databricks_cluster
          outputs:
            databricks_cluster:
              type: databricks
              catalog: main
              schema: {schema}
              threads: 2
              token: "{{{{ env_var('DBT_ACCESS_TOKEN') }}}}"
              host: "{{{{ env_var('DBT_HOST') }}}}"
              http_path: "sql/protocolv1/o/{{{{ env_var('DBT_ORG_ID') }}}}/{{{{ env_var('DBT_CLUSTER_ID') }}}}"
              connection_parameters:
                _port: "{{{{ env_var('DBT_PORT') }}}}"
                enable_telemetry: false
    """).encode())
    environments = [{"environment_key": "dbt", "spec": {"client": "2", "dependencies": ["dbt-databricks==1.10.19"]}}]
    on_warehouse = {"task_key": "on_warehouse", "environment_key": "dbt", "dbt_task": {
        "project_directory": f"/Workspace{home}", "warehouse_id": p["warehouse"], "catalog": "main",
        "schema": schema, "commands": ["dbt deps", "dbt seed", "dbt run", "dbt test"]}}
    on_cluster = {"task_key": "on_cluster", "environment_key": "dbt", "depends_on": [{"task_key": "on_warehouse"}],
                  "dbt_task": {"project_directory": home, "profiles_directory": "profiles",
                               "commands": ["dbt run --select customers"]}}
    server = p["server"]
    r = server.http().post(server.url("/api/2.2/jobs/create"), json={
        "name": "x", "environments": environments,
        "tasks": [{**on_warehouse, "dbt_task": {**on_warehouse["dbt_task"], "commands": ["ls -la"]}}]})
    assert r.status_code == 400 and "start with dbt" in r.json()["message"], r.text
    job_id = w.api_client.do("POST", "/api/2.2/jobs/create", body={
        "name": unique("dbt-task"), "environments": environments, "tasks": [on_warehouse, on_cluster]})["job_id"]
    run = w.jobs.run_now_and_wait(job_id=job_id, timeout=timedelta(minutes=10))
    outputs = {t.task_key: w.jobs.get_run_output(t.run_id) for t in run.tasks}
    assert run.state.result_state == jobs.RunResultState.SUCCESS, "\n".join(f"{k}: {o.error_trace}" for k, o in outputs.items())
    logs = outputs["on_warehouse"].logs
    assert "PASS=3" in logs and "PASS=4" in logs and "Completed successfully" in logs, logs
    assert server.token not in logs
    assert rows(p, f"SELECT customer, total, orders FROM main.{schema}.customers ORDER BY customer") == \
        [["ann", "15.5", "2"], ["bob", "20.0", "1"]]
    assert "PASS=1" in outputs["on_cluster"].logs, outputs["on_cluster"].logs
    # run-now's dbt_commands replace the task's; a failing command fails the task with dbt's message
    failed = w.jobs.run_now_and_wait(job_id=job_id, only=["on_warehouse"], dbt_commands=["dbt run-operation kiln_no_such_macro"],
                                     timeout=timedelta(minutes=10))
    assert failed.state.result_state == jobs.RunResultState.FAILED
    out = w.jobs.get_run_output(failed.tasks[0].run_id)
    assert "dbt command failed: dbt run-operation kiln_no_such_macro" in out.error, out.error
    assert "kiln_no_such_macro" in out.error_trace
