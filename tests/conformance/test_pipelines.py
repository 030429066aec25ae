"""Delta Live Tables pipelines: the seed's curl calls and the SDK, against real
updates that write Delta tables on a Sail engine."""

from __future__ import annotations

import base64
import json
import pytest
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service.compute import Language
from databricks.sdk.service.pipelines import PipelineAccessControlRequest as Acl
from databricks.sdk.service.pipelines import PipelinePermissionLevel as Level
from databricks.sdk.service.workspace import ImportFormat
from databricks.sdk.service.workspace import Language as NbLanguage

from kiln_helpers import assert_error, non_admin, unique, wait_for

SQL_NOTEBOOK = """-- Databricks notebook source
CREATE OR REFRESH STREAMING TABLE raw_orders (
  CONSTRAINT has_id EXPECT (id IS NOT NULL) ON VIOLATION DROP ROW
) AS SELECT * FROM STREAM read_files('${source}', format => 'json')

-- COMMAND ----------

CREATE OR REFRESH MATERIALIZED VIEW totals (CONSTRAINT positive EXPECT (amount > 0))
AS SELECT id, sum(amount) AS amount FROM LIVE.raw_orders GROUP BY id
"""


@pytest.fixture(scope="module")
def env(kiln_factory):
    server = kiln_factory()
    return {"server": server, "w": server.client()}


def notebook(w, path: str, text: str):
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=NbLanguage.SQL,
                        content=base64.b64encode(text.encode()).decode(), overwrite=True)


def put_file(server, path: str, text: str):
    local = server.shared_dir / "dbfs" / path.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text)


def wait_update(w, pipeline_id: str, update_id: str, timeout: float = 180):
    def done():
        u = w.pipelines.get_update(pipeline_id=pipeline_id, update_id=update_id).update
        return u if u.state.value in ("COMPLETED", "FAILED", "CANCELED") else None
    return wait_for(done, timeout, f"update {update_id}", interval=0.2)


def events(server, pipeline_id: str, **params):
    r = server.http().get(server.url(f"/api/2.0/pipelines/{pipeline_id}/events"), params=params)
    assert r.status_code == 200, r.text
    return r.json()


def sql(w, query: str):
    cluster = w.clusters.create_and_wait(cluster_name=unique("reader"), spark_version="16.4.x-scala2.12", num_workers=0)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster.cluster_id, language=Language.SQL)
    try:
        res = w.command_execution.execute_and_wait(cluster_id=cluster.cluster_id, context_id=ctx.id, language=Language.SQL, command=query)
        assert res.status.value == "Finished", res.results.as_dict()
        assert res.results.result_type.value == "table", res.results.as_dict()
        return res.results.data
    finally:
        w.clusters.permanent_delete(cluster.cluster_id)


def test_seed_create_start_complete_and_incremental(env):
    server, w = env["server"], env["w"]
    src = f"/data/{unique('orders')}"
    put_file(server, f"{src}/a.json", '{"id":1,"amount":10.0}\n{"id":2,"amount":-5.0}\n{"id":null,"amount":3.0}\n')
    path = f"/Users/admin/{unique('dlt')}/orders"
    notebook(w, path, SQL_NOTEBOOK)
    target = unique("sales").replace("-", "_")
    # The seed's pipeline-settings.json, sent as curl --data @file does.
    settings = {
        "name": unique("Wikipedia pipeline (SQL)"), "storage": "/Users/username/data",
        "clusters": [{"label": "default", "autoscale": {"min_workers": 1, "max_workers": 5}}],
        "libraries": [{"notebook": {"path": path}}], "target": target, "continuous": False,
        "configuration": {"source": src},
    }
    r = server.http().post(server.url("/api/2.0/pipelines"), data=json.dumps(settings))
    assert r.status_code == 200, r.text
    pid = r.json()["pipeline_id"]
    got = w.pipelines.get(pid)
    assert got.state.value == "IDLE" and got.spec.target == target and got.creator_user_name == "admin"
    r = server.http().post(server.url(f"/api/2.0/pipelines/{pid}/updates"), data='{ "full_refresh": "true" }')
    assert r.status_code == 200, r.text
    u = wait_update(w, pid, r.json()["update_id"])
    assert u.state.value == "COMPLETED", events(server, pid, max_results=100)
    rows = sql(w, f"SELECT id, amount FROM main.{target}.totals ORDER BY id")
    assert rows == [[1, 10.0], [2, -5.0]]
    flows = [e for e in events(server, pid, max_results=100, filter="level='INFO'")["events"]
             if e["event_type"] == "flow_progress" and e["details"]["flow_progress"]["status"] == "COMPLETED"]
    dq = {e["origin"]["flow_name"]: e["details"]["flow_progress"].get("data_quality") for e in flows}
    assert dq["raw_orders"]["dropped_records"] == 1
    assert dq["totals"]["expectations"][0] == {"name": "positive", "dataset": "totals", "passed_records": 1, "failed_records": 1}
    # A new file: only its rows are appended; then nothing new adds nothing.
    put_file(server, f"{src}/b.json", '{"id":3,"amount":7.0}\n')
    u2 = w.pipelines.start_update(pid).update_id
    assert wait_update(w, pid, u2).state.value == "COMPLETED"
    assert sql(w, f"SELECT count(*) FROM main.{target}.raw_orders") == [[3]]
    u3 = w.pipelines.start_update(pid).update_id
    assert wait_update(w, pid, u3).state.value == "COMPLETED"
    assert sql(w, f"SELECT count(*) FROM main.{target}.raw_orders") == [[3]]
    noop = [e for e in events(server, pid, max_results=100)["events"]
            if e["event_type"] == "planning_information" and e["origin"].get("update_id") == u3]
    assert noop and noop[0]["details"]["planning_information"]["technique_information"][0]["maintenance_type"] == "MAINTENANCE_TYPE_NO_OP"
    assert [x.update_id for x in w.pipelines.get(pid).latest_updates][:3] == [u3, u2, u.update_id]
    # The event log is also a Delta table under the pipeline's storage.
    rows = sql(w, "SELECT count(DISTINCT origin.update_id), count_if(event_type = 'flow_progress' AND level = 'INFO') > 0, "
                  "count_if(origin.update_id = '" + u3 + "' AND get_json_object(details, '$.update_progress.state') = 'COMPLETED') "
                  "FROM delta.`/Users/username/data/system/events`")
    assert rows == [[3, True, 1]], rows


def test_missing_dataset_and_fail_update_write_nothing(env):
    server, w = env["server"], env["w"]
    path = f"/Users/admin/{unique('dlt')}/bad"
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW t AS SELECT * FROM LIVE.nowhere")
    r = server.http().post(server.url("/api/2.0/pipelines"), json={"name": unique("bad"), "target": unique("bad").replace("-", "_"), "libraries": [{"notebook": {"path": path}}]})
    pid = r.json()["pipeline_id"]
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "FAILED"
    errors = events(server, pid, filter="level='ERROR'", max_results=50)["events"]
    assert any("nowhere" in e["message"] and path in e["message"] for e in errors), errors
    # FAIL UPDATE: the flow fails before anything is committed.
    target = unique("fail").replace("-", "_")
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW t (CONSTRAINT pos EXPECT (x > 0) ON VIOLATION FAIL UPDATE) AS SELECT explode(array(1, -1)) AS x")
    w.api_client.do("PUT", f"/api/2.0/pipelines/{pid}", body={"name": unique("bad"), "target": target, "libraries": [{"notebook": {"path": path}}]})
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "FAILED"
    errors = events(server, pid, filter="level='ERROR'", max_results=50)["events"]
    assert any("pos" in e["message"] and "nothing was written" in e["message"] for e in errors)
    assert not w.tables.exists(f"main.{target}.t").table_exists


def test_bad_input_and_events_paging(env):
    server, w = env["server"], env["w"]
    h = server.http()
    assert_error(h.post(server.url("/api/2.0/pipelines"), json={"name": unique("x"), "libraries": []}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(h.post(server.url("/api/2.0/pipelines"), json={"name": unique("x"), "libraries": [{"notebook": {"path": "/nope"}}]}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(h.get(server.url("/api/2.0/pipelines"), params={"max_results": 101}), 400, "INVALID_PARAMETER_VALUE")
    path = f"/Users/admin/{unique('dlt')}/n"
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW m AS SELECT 1 AS x")
    name = unique("paging")
    pid = h.post(server.url("/api/2.0/pipelines"), json={"name": name, "libraries": [{"notebook": {"path": path}}]}).json()["pipeline_id"]
    assert_error(h.post(server.url("/api/2.0/pipelines"), json={"name": name, "libraries": [{"notebook": {"path": path}}]}), 409)
    assert [s.pipeline_id for s in w.pipelines.list_pipelines(filter=f"name LIKE '%{name[-8:]}%'")] == [pid]
    assert [s.pipeline_id for s in w.pipelines.list_pipelines(filter=f"notebook='{path}'")] == [pid]
    u = w.pipelines.start_update(pid, validate_only=True).update_id
    assert wait_update(w, pid, u).state.value == "COMPLETED"
    first = events(server, pid, max_results=3)
    assert len(first["events"]) == 3 and "next_page_token" in first
    ts = [e["timestamp"] for e in first["events"]]
    assert ts == sorted(ts, reverse=True)
    second = events(server, pid, page_token=first["next_page_token"], max_results=3)
    assert {e["id"] for e in second["events"]}.isdisjoint({e["id"] for e in first["events"]})
    # pages after the first have prev_page_token, which leads back to the page before
    assert "prev_page_token" not in first and "prev_page_token" in second
    back = events(server, pid, page_token=second["prev_page_token"], max_results=3)
    assert [e["id"] for e in back["events"]] == [e["id"] for e in first["events"]]
    assert_error(h.get(server.url(f"/api/2.0/pipelines/{pid}/events"), params={"page_token": first["next_page_token"], "filter": "level='INFO'"}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(h.get(server.url(f"/api/2.0/pipelines/{pid}/events"), params={"filter": "name='x'"}), 400, "INVALID_PARAMETER_VALUE")
    asc = events(server, pid, order_by="timestamp asc", max_results=100)["events"]
    assert asc[0]["event_type"] == "user_action" and asc[0]["details"]["user_action"]["action"] == "CREATE"
    all_sdk = list(w.pipelines.list_pipeline_events(pid, max_results=2))
    assert len(all_sdk) == len(asc)


def test_permissions_level_by_level(env, kiln_factory):
    server, w = env["server"], env["w"]
    path = f"/Users/admin/{unique('dlt')}/p"
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW m AS SELECT 1 AS x")
    pid = server.http().post(server.url("/api/2.0/pipelines"), json={"name": unique("perm"), "libraries": [{"notebook": {"path": path}}]}).json()["pipeline_id"]
    other = non_admin(server, w, "dltuser")
    ow = other["w"]
    with pytest.raises(PermissionDenied):
        ow.pipelines.get(pid)
    assert pid not in [s.pipeline_id for s in ow.pipelines.list_pipelines()]
    w.pipelines.set_permissions(pid, access_control_list=[Acl(user_name=other["name"], permission_level=Level.CAN_VIEW)])
    assert ow.pipelines.get(pid).pipeline_id == pid
    with pytest.raises(PermissionDenied):
        ow.pipelines.start_update(pid)
    w.pipelines.update_permissions(pid, access_control_list=[Acl(user_name=other["name"], permission_level=Level.CAN_RUN)])
    ow.pipelines.stop(pid)
    with pytest.raises(PermissionDenied):
        ow.pipelines.delete(pid)
    levels = [l.permission_level.value for l in w.pipelines.get_permission_levels(pid).permission_levels]
    assert levels == ["CAN_VIEW", "CAN_RUN", "CAN_MANAGE", "IS_OWNER"]
    w.pipelines.delete(pid)
    with pytest.raises(NotFound):
        w.pipelines.get(pid)


PY_NOTEBOOK = """# Databricks notebook source
import dlt
from pyspark.sql.functions import *

SRC = spark.conf.get("source")

# COMMAND ----------

@dlt.table(comment="raw events", table_properties={"quality": "bronze"})
@dlt.expect_or_drop("has_id", "id IS NOT NULL")
def raw():
    return spark.readStream.format("cloudFiles").option("cloudFiles.format", "json").load(SRC)

# COMMAND ----------

@dlt.expect("small", "total < 100")
@dlt.table
def totals():
    # `sum` is pyspark's here: Kiln's own code must not care.
    return dlt.read("raw").groupBy("k").agg(sum("v").alias("total"))

@dlt.view
def big():
    return dlt.read("totals").where(col("total") > 5)

@dlt.table(name="big_copy")
def big_copy():
    return spark.read.table("LIVE.big")
"""

DP_NOTEBOOK = """from pyspark import pipelines as dp

@dp.materialized_view(name="doubled")
def doubled():
    return spark.read.table("raw").selectExpr("id", "v * 2 AS v2")
"""


def pipeline(server, w, name, paths, configuration=None, target=None):
    body = {"name": unique(name), "libraries": [{"notebook": {"path": p}} for p in paths],
            "target": target or unique(name).replace("-", "_"), "configuration": configuration or {}}
    r = server.http().post(server.url("/api/2.0/pipelines"), json=body)
    assert r.status_code == 200, r.text
    return r.json()["pipeline_id"], body["target"]


def python_notebook(w, path, text):
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=NbLanguage.PYTHON,
                        content=base64.b64encode(text.encode()).decode(), overwrite=True)


def test_python_and_pyspark_pipelines_notebooks(env):
    server, w = env["server"], env["w"]
    src = f"/data/{unique('py')}"
    put_file(server, f"{src}/a.json", '{"id":1,"k":"a","v":4}\n{"id":2,"k":"a","v":3}\n{"id":null,"k":"b","v":1}\n{"id":3,"k":"b","v":200}\n')
    base = f"/Users/admin/{unique('pydlt')}"
    python_notebook(w, f"{base}/dlt_nb", PY_NOTEBOOK)
    python_notebook(w, f"{base}/dp_nb", DP_NOTEBOOK)
    pid, target = pipeline(server, w, "py", [f"{base}/dlt_nb", f"{base}/dp_nb"], {"source": src})
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "COMPLETED", [e["message"] for e in events(server, pid, max_results=100)["events"]]
    assert sql(w, f"SELECT k, total FROM main.{target}.totals ORDER BY k") == [["a", 7], ["b", 200]]
    assert sql(w, f"SELECT k FROM main.{target}.big_copy ORDER BY k") == [["a"], ["b"]]
    assert sql(w, f"SELECT sum(v2) FROM main.{target}.doubled") == [[414]]
    evs = events(server, pid, max_results=100)["events"]
    defs = {e["details"]["flow_definition"]["output_dataset"]: e["details"]["flow_definition"] for e in evs if e["event_type"] == "flow_definition"}
    assert defs["raw"]["flow_type"] == "APPEND" and defs["totals"]["flow_type"] == "COMPLETE"
    assert defs["totals"]["input_datasets"] == ["raw"] and defs["totals"]["language"] == "PYTHON"
    done = {e["origin"]["flow_name"]: e["details"]["flow_progress"] for e in evs
            if e["event_type"] == "flow_progress" and e["details"]["flow_progress"]["status"] == "COMPLETED"}
    assert done["raw"]["data_quality"]["dropped_records"] == 1
    assert done["totals"]["data_quality"]["expectations"][0]["failed_records"] == 1
    # Streaming: a new file appends only its rows.
    put_file(server, f"{src}/b.json", '{"id":4,"k":"a","v":1}\n')
    assert wait_update(w, pid, w.pipelines.start_update(pid).update_id).state.value == "COMPLETED"
    assert sql(w, f"SELECT count(*) FROM main.{target}.raw") == [[4]]


FLOWS_SQL = """
CREATE OR REFRESH STREAMING TABLE all_events PARTITIONED BY (k) TBLPROPERTIES ('quality' = 'silver');

CREATE FLOW web AS INSERT INTO all_events BY NAME SELECT * FROM STREAM read_files('${src}/web', format => 'json');

CREATE FLOW app AS INSERT INTO all_events BY NAME SELECT * FROM STREAM read_files('${src}/app', format => 'json');

CREATE OR REFRESH MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM LIVE.all_events GROUP BY k;
"""


def sql_all(w, queries: list[str]) -> list:
    """Each query's rows, run in one context of one new cluster."""
    cluster = w.clusters.create_and_wait(cluster_name=unique("reader"), spark_version="16.4.x-scala2.12", num_workers=0)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster.cluster_id, language=Language.SQL)
    try:
        out = []
        for query in queries:
            res = w.command_execution.execute_and_wait(cluster_id=cluster.cluster_id, context_id=ctx.id,
                                                       language=Language.SQL, command=query)
            assert res.status.value == "Finished" and res.results.result_type.value == "table", res.results.as_dict()
            out.append(res.results.data)
        return out
    finally:
        w.clusters.permanent_delete(cluster.cluster_id)


def test_two_flows_create_one_partitioned_table_and_a_view_keeps_its_history(env):
    """Two flows into one new table (run concurrently, each may be the one that
    creates it) keep the table's partitioning and properties; a materialized
    view recomputed with the same schema is overwritten, never dropped."""
    server, w = env["server"], env["w"]
    src = f"/data/{unique('flows')}"
    put_file(server, f"{src}/web/a.json", '{"id":1,"k":"a"}\n{"id":2,"k":"b"}\n')
    put_file(server, f"{src}/app/a.json", '{"id":3,"k":"a"}\n')
    path = f"/Users/admin/{unique('flows')}/nb"
    notebook(w, path, FLOWS_SQL.replace("${src}", src))
    pid, target = pipeline(server, w, "flows", [path])
    for _ in range(2):
        u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
        assert u.state.value == "COMPLETED", [e["message"] for e in events(server, pid, max_results=100)["events"]]
        put_file(server, f"{src}/app/{unique('more')}.json", '{"id":9,"k":"c"}\n')
    rows, props, detail, history = sql_all(w, [
        f"SELECT k, n FROM main.{target}.per_k ORDER BY k",
        f"SHOW TBLPROPERTIES main.{target}.all_events",
        f"DESCRIBE DETAIL main.{target}.all_events",
        f"DESCRIBE HISTORY main.{target}.per_k",
    ])
    assert rows == [["a", 2], ["b", 1], ["c", 1]], rows
    assert ["quality", "silver"] in props, props
    assert ["k"] in detail[0], detail
    assert len(history) >= 3 and sum(1 for h in history if "CREATE TABLE" in h) == 1, history


CDC_SQL = """
CREATE OR REFRESH STREAMING TABLE customers;

APPLY CHANGES INTO LIVE.customers FROM STREAM(LIVE.cdc_raw)
  KEYS (id) APPLY AS DELETE WHEN op = 'D' SEQUENCE BY seq
  COLUMNS * EXCEPT (op, seq) STORED AS SCD TYPE 1;

CREATE OR REFRESH STREAMING TABLE cdc_raw AS SELECT * FROM STREAM read_files('${src}', format => 'json');
"""


def test_apply_changes_out_of_order_and_deletes(env):
    server, w = env["server"], env["w"]
    src = f"/data/{unique('cdc')}"
    put_file(server, f"{src}/1.json", "\n".join(json.dumps(r) for r in [
        {"id": 1, "seq": 1, "op": "U", "name": "a"}, {"id": 1, "seq": 3, "op": "U", "name": "c"},
        {"id": 1, "seq": 2, "op": "U", "name": "b"}, {"id": 2, "seq": 1, "op": "U", "name": "x"},
        {"id": 3, "seq": 1, "op": "U", "name": "y"}, {"id": 3, "seq": 2, "op": "D", "name": None},
    ]) + "\n")
    path = f"/Users/admin/{unique('cdc')}/nb"
    notebook(w, path, CDC_SQL)
    pid, target = pipeline(server, w, "cdc", [path], {"src": src})
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "COMPLETED", [e["message"] for e in events(server, pid, max_results=100)["events"]]
    assert sql(w, f"SELECT * FROM main.{target}.customers ORDER BY id") == [[1, "c"], [2, "x"]]
    put_file(server, f"{src}/2.json", "\n".join(json.dumps(r) for r in [
        {"id": 1, "seq": 2, "op": "U", "name": "late"}, {"id": 2, "seq": 5, "op": "D", "name": None},
        {"id": 3, "seq": 1, "op": "U", "name": "zombie"}, {"id": 4, "seq": 1, "op": "U", "name": "new"},
    ]) + "\n")
    assert wait_update(w, pid, w.pipelines.start_update(pid).update_id).state.value == "COMPLETED"
    assert sql(w, f"SELECT * FROM main.{target}.customers ORDER BY id") == [[1, "c"], [4, "new"]]
    cdc = [e["details"]["flow_progress"]["metrics"] for e in events(server, pid, max_results=100)["events"]
           if e["event_type"] == "flow_progress" and e["origin"].get("flow_name") == "customers"
           and e["details"]["flow_progress"]["status"] == "COMPLETED"]
    assert cdc[0]["num_upserted_rows"] == 3 and cdc[0]["num_deleted_rows"] == 1
    # Full refresh rebuilds from all files with the same result.
    u = wait_update(w, pid, w.pipelines.start_update(pid, full_refresh=True).update_id)
    assert u.state.value == "COMPLETED"
    assert sql(w, f"SELECT * FROM main.{target}.customers ORDER BY id") == [[1, "c"], [4, "new"]]


LONG_SQL = "CREATE OR REFRESH MATERIALIZED VIEW slow AS SELECT sum(a.id * b.id) AS s FROM range(200000) a CROSS JOIN range(200000) b"


def flow_running(server, pid, flow):
    evs = events(server, pid, max_results=100)["events"]
    return any(e["event_type"] == "flow_progress" and e["origin"].get("flow_name") == flow
               and e["details"]["flow_progress"]["status"] == "RUNNING" for e in evs)


def worker_procs():
    from kiln_helpers import all_procs
    return [p for p in all_procs() if "kiln_pipelines.worker" in p.cmdline]


def test_stop_cancels_a_long_query(env):
    server, w = env["server"], env["w"]
    path = f"/Users/admin/{unique('slow')}/nb"
    notebook(w, path, LONG_SQL)
    pid, target = pipeline(server, w, "slow", [path])
    update = w.pipelines.start_update(pid).update_id
    wait_for(lambda: flow_running(server, pid, "slow"), 120, "the slow flow to run", 0.2)
    # One active update at a time.
    assert_error(server.http().post(server.url(f"/api/2.0/pipelines/{pid}/updates"), json={}), 409, "RESOURCE_CONFLICT")
    # stop interrupts the running query (tagged) rather than waiting for it: the
    # update ends CANCELED and the flow STOPPED, with no rows written
    w.pipelines.stop_and_wait(pid)
    u = w.pipelines.get_update(pipeline_id=pid, update_id=update).update
    assert u.state.value == "CANCELED"
    statuses = [e["details"]["flow_progress"]["status"] for e in events(server, pid, max_results=100)["events"]
                if e["event_type"] == "flow_progress" and e["origin"].get("flow_name") == "slow"]
    assert statuses[0] == "STOPPED", statuses
    # The table may exist (tables are set up before flows run) but holds nothing.
    if w.tables.exists(f"main.{target}.slow").table_exists:
        assert sql(w, f"SELECT count(*) FROM main.{target}.slow") == [[0]]
    # A stop with nothing running is a no-op.
    w.pipelines.stop_and_wait(pid)


def test_kill_9_during_an_update_then_restart(kiln_factory):
    server = kiln_factory()
    w = server.client()
    path = f"/Users/admin/{unique('crash')}/nb"
    notebook(w, path, LONG_SQL)
    pid, target = pipeline(server, w, "crash", [path])
    update = w.pipelines.start_update(pid).update_id
    wait_for(lambda: flow_running(server, pid, "slow"), 120, "the slow flow to run", 0.2)
    workers = worker_procs()
    assert workers
    server.restart()
    w = server.client()
    from kiln_helpers import is_alive
    wait_for(lambda: not [p for p in workers if is_alive(p)], 30, "the old worker to be gone", 0.1)
    u = w.pipelines.get_update(pipeline_id=pid, update_id=update).update
    assert u.state.value == "FAILED"
    assert w.pipelines.get(pid).state.value == "IDLE"
    cluster = w.pipelines.get(pid).cluster_id
    wait_for(lambda: w.clusters.get(cluster).state.value == "TERMINATED", 60, "the pipeline cluster to stop", 0.2)
    # The next update runs to completion.
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW slow AS SELECT 42 AS s")
    assert wait_update(w, pid, w.pipelines.start_update(pid).update_id).state.value == "COMPLETED"
    assert sql(w, f"SELECT s FROM main.{target}.slow") == [[42]]
    server.stop()


def test_continuous_pipeline_picks_up_new_files_until_stopped(env):
    server, w = env["server"], env["w"]
    src = f"/data/{unique('cont')}"
    put_file(server, f"{src}/1.json", '{"id":1}\n')
    path = f"/Users/admin/{unique('cont')}/nb"
    notebook(w, path, "CREATE OR REFRESH STREAMING TABLE ids AS SELECT * FROM STREAM read_files('${src}', format => 'json')")
    body = {"name": unique("cont"), "target": unique("cont").replace("-", "_"), "continuous": True,
            "configuration": {"src": src, "pipelines.trigger.interval": "1 second"},
            "libraries": [{"notebook": {"path": path}}]}
    pid = server.http().post(server.url("/api/2.0/pipelines"), json=body).json()["pipeline_id"]
    update = w.pipelines.start_update(pid).update_id

    def rows_written():
        return sum(e["details"]["flow_progress"]["metrics"]["num_output_rows"]
                   for e in events(server, pid, max_results=100)["events"]
                   if e["event_type"] == "flow_progress" and e["details"]["flow_progress"]["status"] == "COMPLETED")

    wait_for(lambda: rows_written() == 1, 120, "the first file", 0.2)
    assert w.pipelines.get_update(pipeline_id=pid, update_id=update).update.state.value == "RUNNING"
    put_file(server, f"{src}/2.json", '{"id":2}\n{"id":3}\n')
    wait_for(lambda: rows_written() == 3, 60, "the new file", 0.2)
    w.pipelines.stop_and_wait(pid)
    assert w.pipelines.get_update(pipeline_id=pid, update_id=update).update.state.value == "CANCELED"
    assert w.pipelines.get_update(pipeline_id=pid, update_id=update).update.mode.value == "CONTINUOUS"
    # the table's history shows each batch's userMetadata (pipeline, flow, batch), as DLT's does
    history = sql(w, f"DESCRIBE HISTORY main.{body['target']}.ids")
    tagged = [row[13] for row in history if row[13]]
    assert len(tagged) == 2 and all(m.startswith(f"kiln:{pid}:") for m in tagged), history


def test_development_mode_reuses_the_engine_and_selections(env):
    server, w = env["server"], env["w"]
    src = f"/data/{unique('sel')}"
    put_file(server, f"{src}/1.json", '{"id":1}\n')
    path = f"/Users/admin/{unique('sel')}/nb"
    notebook(w, path, """
CREATE OR REFRESH STREAMING TABLE a AS SELECT * FROM STREAM read_files('${src}', format => 'json');
CREATE OR REFRESH STREAMING TABLE keep TBLPROPERTIES ('pipelines.reset.allowed' = 'false')
  AS SELECT * FROM STREAM read_files('${src}', format => 'json');
CREATE OR REFRESH MATERIALIZED VIEW b AS SELECT count(*) AS n FROM a;
""")
    target = unique("sel").replace("-", "_")
    body = {"name": unique("sel"), "target": target, "development": True, "configuration": {"src": src},
            "libraries": [{"notebook": {"path": path}}]}
    pid = server.http().post(server.url("/api/2.0/pipelines"), json=body).json()["pipeline_id"]
    assert wait_update(w, pid, w.pipelines.start_update(pid).update_id).state.value == "COMPLETED"
    cluster = w.pipelines.get(pid).cluster_id
    assert w.clusters.get(cluster).state.value == "RUNNING"
    # Started as soon as the last one ended: no conflict, same engine.
    second = w.pipelines.start_update(pid, refresh_selection=["a"]).update_id
    assert wait_update(w, pid, second).state.value == "COMPLETED"
    assert w.pipelines.get(pid).cluster_id == cluster
    statuses = {e["origin"]["flow_name"]: e["details"]["flow_progress"]["status"]
                for e in events(server, pid, max_results=100)["events"]
                if e["event_type"] == "flow_progress" and e["origin"].get("update_id") == second
                and e["details"]["flow_progress"]["status"] in ("EXCLUDED", "COMPLETED")}
    assert statuses == {"a": "COMPLETED", "keep": "EXCLUDED", "b": "EXCLUDED"}
    # A table with pipelines.reset.allowed = false cannot be fully refreshed by name...
    u = wait_update(w, pid, w.pipelines.start_update(pid, full_refresh_selection=["keep"]).update_id)
    assert u.state.value == "FAILED"
    assert any("reset.allowed" in e["message"] for e in events(server, pid, filter="level='ERROR'", max_results=20)["events"])
    # ...and a full refresh of everything keeps it: with the first file gone, the reset
    # tables hold only the new file, while `keep` keeps its row and adds the new one.
    (server.shared_dir / "dbfs" / src.lstrip("/") / "1.json").unlink()
    put_file(server, f"{src}/2.json", '{"id":2}\n')
    assert wait_update(w, pid, w.pipelines.start_update(pid, full_refresh=True).update_id).state.value == "COMPLETED"
    assert sql(w, f"SELECT 'a' AS t, count(*) AS n FROM main.{target}.a UNION ALL SELECT 'keep', count(*) FROM main.{target}.keep "
                  f"UNION ALL SELECT 'b', n FROM main.{target}.b ORDER BY t") == [["a", 1], ["b", 1], ["keep", 2]]
    w.pipelines.delete(pid)
    wait_for(lambda: w.clusters.get(cluster).state.value == "TERMINATED", 60, "the cluster to stop", 0.2)


@pytest.mark.parametrize("failpoint", ["pipeline-before-write", "pipeline-after-write"])
def test_a_crash_around_a_batch_never_loses_or_doubles_it(kiln_factory, failpoint):
    server = kiln_factory()
    w = server.client()
    src = f"/data/{unique('once')}"
    put_file(server, f"{src}/1.json", '{"id":1}\n{"id":2}\n')
    path = f"/Users/admin/{unique('once')}/nb"
    notebook(w, path, "CREATE OR REFRESH STREAMING TABLE ids AS SELECT * FROM STREAM read_files('${src}', format => 'json')")
    pid, target = pipeline(server, w, "once", [path], {"src": src})
    # Kiln dies (abort, as kill -9) between planning the batch and recording it as committed.
    server.proc.kill()
    server.proc.wait()
    server.extra_env = {"KILN_FAILPOINT": failpoint}
    server.start()
    w = server.client()
    w.pipelines.start_update(pid)
    wait_for(lambda: server.proc.poll() is not None, 120, "Kiln to abort at the failpoint", 0.2)
    server.extra_env = {}
    server.start()
    w = server.client()
    assert w.pipelines.get(pid).latest_updates[0].state.value == "FAILED"
    assert wait_update(w, pid, w.pipelines.start_update(pid).update_id).state.value == "COMPLETED"
    assert sql(w, f"SELECT count(*), count(DISTINCT id) FROM main.{target}.ids") == [[2, 2]]
    assert wait_update(w, pid, w.pipelines.start_update(pid).update_id).state.value == "COMPLETED"
    assert sql(w, f"SELECT count(*) FROM main.{target}.ids") == [[2]]
    server.stop()


def test_a_pipeline_cannot_run_a_notebook_its_creator_cannot_read(env):
    server, w = env["server"], env["w"]
    path = f"/Users/admin/{unique('private')}/nb"
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW m AS SELECT 1 AS x")
    other = non_admin(server, w, "dltthief")
    r = http_as(server, other["w"]).post(server.url("/api/2.0/pipelines"), json={
        "name": unique("thief"), "libraries": [{"notebook": {"path": path}}]})
    assert_error(r, 403, "PERMISSION_DENIED")
    assert not [s for s in w.pipelines.list_pipelines() if s.name and s.name.startswith("thief")]


def http_as(server, client):
    return server.http(client.config.token)


CDC_PY = """# Databricks notebook source
import dlt
from pyspark.sql.functions import col

@dlt.view
def changes():
    return spark.readStream.format("cloudFiles").option("cloudFiles.format", "json").load(spark.conf.get("src"))

dlt.create_streaming_table("people")
dlt.apply_changes(target="people", source="changes", keys=["id"], sequence_by=col("seq"),
                  apply_as_deletes="op = 'D'", except_column_list=["op", "seq"], ignore_null_updates=True)
"""


def test_python_apply_changes_with_ignore_null_updates(env):
    server, w = env["server"], env["w"]
    src = f"/data/{unique('pycdc')}"
    put_file(server, f"{src}/1.json", "\n".join(json.dumps(r) for r in [
        {"id": 1, "seq": 1, "op": "U", "name": "a", "city": "x"},
        {"id": 1, "seq": 2, "op": "U", "name": None, "city": "y"},
        {"id": 2, "seq": 1, "op": "U", "name": "b", "city": "z"},
        {"id": 2, "seq": 2, "op": "D", "name": None, "city": None},
        {"id": 2, "seq": 3, "op": "U", "name": "c", "city": None},
    ]) + "\n")
    path = f"/Users/admin/{unique('pycdc')}/nb"
    python_notebook(w, path, CDC_PY)
    pid, target = pipeline(server, w, "pycdc", [path], {"src": src})
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "COMPLETED", [e["message"] for e in events(server, pid, max_results=100)["events"]]
    assert sql(w, f"SELECT id, name, city FROM main.{target}.people ORDER BY id") == [[1, "a", "y"], [2, "c", None]]


def test_dry_run_optimistic_edits_and_update_paging(env):
    server, w = env["server"], env["w"]
    h = server.http()
    path = f"/Users/admin/{unique('misc')}/nb"
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW m AS SELECT 1 AS x")
    name = unique("misc")
    spec = {"name": name, "libraries": [{"notebook": {"path": path}}], "target": "misc"}
    dry = h.post(server.url("/api/2.0/pipelines"), json={**spec, "dry_run": True}).json()
    assert dry["effective_settings"]["name"] == name and "pipeline_id" not in dry
    assert not [s for s in w.pipelines.list_pipelines(filter=f"name LIKE '{name}'")]
    pid = h.post(server.url("/api/2.0/pipelines"), json=spec).json()["pipeline_id"]
    modified = w.pipelines.get(pid).last_modified
    # The legacy CLI's edit: the whole spec with its id.
    r = h.put(server.url(f"/api/2.0/pipelines/{pid}"), json={**spec, "id": pid, "development": True, "expected_last_modified": modified})
    assert r.status_code == 200 and r.json() == {}
    assert w.pipelines.get(pid).spec.development is True
    assert_error(h.put(server.url(f"/api/2.0/pipelines/{pid}"), json={**spec, "expected_last_modified": modified}), 409)
    assert_error(h.put(server.url(f"/api/2.0/pipelines/{pid}"), json={**spec, "storage": "/elsewhere"}), 400, "INVALID_PARAMETER_VALUE")
    ids = []
    for _ in range(3):
        ids.append(w.pipelines.start_update(pid, validate_only=True).update_id)
        wait_update(w, pid, ids[-1])
    first = w.pipelines.list_updates(pid, max_results=2)
    assert [u.update_id for u in first.updates] == ids[::-1][:2] and first.next_page_token
    second = w.pipelines.list_updates(pid, max_results=2, page_token=first.next_page_token)
    assert [u.update_id for u in second.updates] == [ids[0]] and not second.next_page_token
    assert_error(h.get(server.url(f"/api/2.0/pipelines/{pid}/updates/nope")), 404, "RESOURCE_DOES_NOT_EXIST")


def test_a_failed_flow_skips_its_downstream_only(env):
    server, w = env["server"], env["w"]
    path = f"/Users/admin/{unique('skip')}/nb"
    notebook(w, path, """
CREATE OR REFRESH MATERIALIZED VIEW bad (CONSTRAINT never EXPECT (x < 0) ON VIOLATION FAIL UPDATE) AS SELECT 1 AS x;
CREATE OR REFRESH MATERIALIZED VIEW after_bad AS SELECT x + 1 AS y FROM bad;
CREATE OR REFRESH MATERIALIZED VIEW independent AS SELECT 7 AS z;
""")
    pid, target = pipeline(server, w, "skip", [path])
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "FAILED"
    last = {}
    for e in events(server, pid, order_by="timestamp asc", max_results=100)["events"]:
        if e["event_type"] == "flow_progress":
            last[e["origin"]["flow_name"]] = e["details"]["flow_progress"]["status"]
    assert last == {"bad": "FAILED", "after_bad": "SKIPPED", "independent": "COMPLETED"}, last
    assert sql(w, f"SELECT z FROM main.{target}.independent") == [[7]]
    assert w.pipelines.get(pid).health.value == "UNHEALTHY"


LOCAL_ROWS_NOTEBOOK = """import dlt
from pyspark.sql import functions as F

@dlt.table(comment="raw events")
def events_raw():
    return spark.createDataFrame([(1, "a", 10), (2, "b", -5), (3, "a", 7), (4, "c", 1)], "id INT, k STRING, v INT")

@dlt.table
@dlt.expect_or_drop("non_negative", "v >= 0")
@dlt.expect("small", "v < 10")
def events_clean():
    return dlt.read("events_raw").where("id > 0")

@dlt.table
def totals():
    return dlt.read("events_clean").groupBy("k").agg(F.sum("v").alias("total"))
"""


def test_a_table_of_local_rows_on_a_fresh_kiln(kiln_factory):
    # The engine's own create-as-select of an in-memory relation commits a Delta table whose
    # metadata its writer then refuses ("already exists with different metadata"); Kiln
    # creates new tables from the analyzed schema, then inserts.
    server = kiln_factory()
    w = server.client()
    base = f"/Users/admin/{unique('local')}"
    python_notebook(w, f"{base}/nb", LOCAL_ROWS_NOTEBOOK)
    pid, target = pipeline(server, w, "local", [f"{base}/nb"])
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "COMPLETED", [e["message"] for e in events(server, pid, max_results=100)["events"]]
    assert sql(w, f"SELECT k, total FROM main.{target}.totals ORDER BY k") == [["a", 17], ["c", 1]]
    assert sql(w, f"SELECT count(*) FROM main.{target}.events_raw") == [[4]]


def test_seed_paths_and_pipeline_cluster_settings(env):
    server, w = env["server"], env["w"]
    h = server.http()
    # seed 001 lists pipelines with a trailing slash
    r = h.get(server.url("/api/2.0/pipelines/"))
    assert r.status_code == 200, r.text
    path = f"/Users/admin/{unique('clus')}/n"
    notebook(w, path, "CREATE OR REFRESH MATERIALIZED VIEW m AS SELECT 1 AS x")
    keys = [f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i:03d} k{i}" for i in range(11)]
    cluster = {"label": "default", "num_workers": 0, "spark_env_vars": {"PIPE_VAR": "seed"},
               "ssh_public_keys": keys[:2], "cluster_log_conf": {"dbfs": {"destination": "dbfs:/logs/p"}},
               "custom_tags": {"team": "data"}}
    body = {"name": unique("clus"), "libraries": [{"notebook": {"path": path}}], "clusters": [cluster]}
    for bad in ({"ssh_public_keys": keys}, {"custom_tags": {f"t{i}": "v" for i in range(46)}},
                {"spark_env_vars": {"PATH": "/tmp"}}, {"cluster_log_conf": "dbfs:/x"}):
        assert_error(h.post(server.url("/api/2.0/pipelines"), json={**body, "clusters": [{**cluster, **bad}]}), 400, "INVALID_PARAMETER_VALUE")
    r = h.post(server.url("/api/2.0/pipelines"), json=body)
    assert r.status_code == 200, r.text
    pid = r.json()["pipeline_id"]
    assert [s["pipeline_id"] for s in h.get(server.url("/api/2.0/pipelines/")).json()["statuses"] if s["pipeline_id"] == pid] == [pid]
    u = wait_update(w, pid, w.pipelines.start_update(pid).update_id)
    assert u.state.value == "COMPLETED", [e["message"] for e in events(server, pid, max_results=100)["events"]]
    c = h.get(server.url("/api/2.1/clusters/get"), params={"cluster_id": u.cluster_id}).json()
    assert c["spark_env_vars"] == {"PIPE_VAR": "seed"}, c
    assert c["ssh_public_keys"] == keys[:2] and c["cluster_log_conf"] == cluster["cluster_log_conf"], c
    assert c["custom_tags"]["team"] == "data", c
