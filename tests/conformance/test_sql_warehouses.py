"""SQL warehouses and the Statement Execution API through the SDK: warehouses as real engines
(create, start/stop, auto-stop, start on a statement, more engines under load, permissions), and
statements (inline, async, cancel, on_wait_timeout, parameters that stay data, chunks, external
Arrow/CSV links, errors, query history)."""

from __future__ import annotations

import io
import time
from datetime import timedelta

import pytest
import requests
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service import sql

from kiln_helpers import assert_error, non_admin, unique, wait_for

WAIT = timedelta(minutes=5)


@pytest.fixture(scope="module")
def env(kiln_factory):
    server = kiln_factory()
    w = server.client()
    wh = w.warehouses.create_and_wait(name=unique("wh"), cluster_size="2X-Small", auto_stop_mins=0,
                                      timeout=WAIT)
    return {"server": server, "w": w, "warehouse": wh.id}


def run(w, warehouse, statement, **kw):
    kw.setdefault("wait_timeout", "30s")
    return w.statement_execution.execute_statement(statement=statement, warehouse_id=warehouse, **kw)


def test_a_warehouse_is_a_running_engine_with_connection_details(env):
    w, server, wid = env["w"], env["server"], env["warehouse"]
    got = w.warehouses.get(wid)
    assert got.state == sql.State.RUNNING and got.num_clusters == 1 and got.health.status.value == "HEALTHY"
    assert got.cluster_size == "2X-Small" and got.min_num_clusters == 1 and got.max_num_clusters == 1
    assert got.odbc_params.path == f"/sql/1.0/warehouses/{wid}" and got.odbc_params.protocol == "https"
    assert got.odbc_params.port == server.config["server"]["https_port"]
    assert f"httpPath=/sql/1.0/warehouses/{wid}" in got.jdbc_url
    assert wid in [x.id for x in w.warehouses.list()]
    assert wid in [d.warehouse_id for d in w.data_sources.list()]
    r = run(w, wid, "SELECT 1 AS one, 'a' AS letter, CAST(NULL AS INT) AS nothing")
    assert r.status.state == sql.StatementState.SUCCEEDED, r.status
    assert r.result.data_array == [["1", "a", None]]
    cols = r.manifest.schema.columns
    assert [c.name for c in cols] == ["one", "letter", "nothing"]
    assert [c.type_name.value for c in cols] == ["INT", "STRING", "INT"]
    assert r.manifest.total_row_count == 1 and r.manifest.truncated is False

SLOW = "SELECT sum(a.id + b.id) FROM range(300000) a CROSS JOIN range(300000) b"


def test_statements_write_tables_bind_parameters_and_fail_as_databricks_does(env):
    w, wid = env["w"], env["warehouse"]
    schema = unique("stmts").replace("-", "_")
    assert run(w, wid, f"CREATE SCHEMA main.{schema}").status.state == sql.StatementState.SUCCEEDED
    r = run(w, wid, "CREATE TABLE orders (id INT, item STRING, price DOUBLE) USING delta", catalog="main", schema=schema)
    assert r.status.state == sql.StatementState.SUCCEEDED, r.status
    run(w, wid, "INSERT INTO orders VALUES (1, 'apple', 1.5), (2, 'pear', 2.25), (3, 'fig', NULL)",
        catalog="main", schema=schema)
    assert w.tables.get(f"main.{schema}.orders").table_type.value == "MANAGED"
    # named parameters are bound by the engine: an injection attempt stays data
    evil = "x' OR '1'='1"
    r = run(w, wid, f"SELECT count(*) AS n FROM main.{schema}.orders WHERE item = :item",
            parameters=[sql.StatementParameterListItem(name="item", value=evil)])
    assert r.result.data_array == [["0"]], r.status
    r = run(w, wid, f"SELECT item, price FROM main.{schema}.orders WHERE id >= :min AND price < :cap ORDER BY id",
            parameters=[sql.StatementParameterListItem(name="min", value="2", type="INT"),
                        sql.StatementParameterListItem(name="cap", value="5", type="DOUBLE")])
    assert r.result.data_array == [["pear", "2.25"]], r.status
    r = run(w, wid, "SELECT :d AS d", parameters=[sql.StatementParameterListItem(name="d", value="2024-02-29", type="DATE")])
    assert r.result.data_array == [["2024-02-29"]] and r.manifest.schema.columns[0].type_name.value == "DATE"
    # a failed statement is HTTP 200 with status.error, the engine's message in it
    r = run(w, wid, "SELECT * FROM main.nowhere.nothing")
    assert r.status.state == sql.StatementState.FAILED and "nothing" in r.status.error.message.lower(), r.status
    # bad requests change nothing and answer 400
    h = env["server"].http()
    url = env["server"].url("/api/2.0/sql/statements")
    assert_error(h.post(url, json={"statement": "SELECT 1", "warehouse_id": wid, "wait_timeout": "3s"}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(h.post(url, json={"statement": "SELECT 1", "warehouse_id": wid, "format": "CSV"}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(h.post(url, json={"statement": "SELECT 1", "warehouse_id": "nope"}), 404, "RESOURCE_DOES_NOT_EXIST")
    assert_error(h.post(url, json={"statement": "SELECT :n", "warehouse_id": wid,
                                   "parameters": [{"name": "n", "value": "x", "type": "INT"}]}), 400, "INVALID_PARAMETER_VALUE")
    # views, REPLACE and table utilities go through Kiln's rewrites as from any client
    run(w, wid, f"CREATE OR REPLACE VIEW main.{schema}.cheap AS SELECT * FROM main.{schema}.orders WHERE price < 2")
    assert run(w, wid, f"SELECT id FROM main.{schema}.cheap").result.data_array == [["1"]]
    r = run(w, wid, f"CREATE OR REPLACE TABLE main.{schema}.orders AS SELECT 9 AS id")
    assert r.status.state == sql.StatementState.SUCCEEDED, r.status
    assert run(w, wid, f"SELECT * FROM main.{schema}.orders").result.data_array == [["9"]]
    hist = run(w, wid, f"DESCRIBE HISTORY main.{schema}.orders")
    assert hist.status.state == sql.StatementState.SUCCEEDED and hist.manifest.total_row_count >= 2, hist.status


def test_async_statements_cancel_and_on_wait_timeout(env):
    w, wid = env["w"], env["warehouse"]
    r = w.statement_execution.execute_statement(statement=SLOW, warehouse_id=wid, wait_timeout="0s")
    assert r.status.state in (sql.StatementState.PENDING, sql.StatementState.RUNNING)
    wait_for(lambda: w.statement_execution.get_statement(r.statement_id).status.state == sql.StatementState.RUNNING,
             30, "the statement running")
    w.statement_execution.cancel_execution(r.statement_id)
    got = wait_for(lambda: (lambda s: s if s.status.state == sql.StatementState.CANCELED else None)(
        w.statement_execution.get_statement(r.statement_id)), 30, "the statement cancelled")
    assert got.result is None
    started = time.time()
    r = w.statement_execution.execute_statement(statement=SLOW, warehouse_id=wid, wait_timeout="5s",
                                                on_wait_timeout=sql.ExecuteStatementRequestOnWaitTimeout.CANCEL)
    assert r.status.state == sql.StatementState.CANCELED and time.time() - started < 20
    # the engine is free again: a quick statement answers at once
    assert run(w, wid, "SELECT 2").result.data_array == [["2"]]
    # another user cannot see a statement
    other = non_admin(env["server"], w, "stmts")
    with pytest.raises((NotFound, PermissionDenied)):
        other["w"].statement_execution.get_statement(r.statement_id)


def test_chunks_limits_and_external_links(env):
    import pyarrow as pa

    w, wid = env["w"], env["warehouse"]
    r = run(w, wid, "SELECT id, id * 2 AS twice FROM range(25000) ORDER BY id")
    m = r.manifest
    assert m.total_row_count == 25000 and m.total_chunk_count == 3 and len(m.chunks) == 3
    assert len(r.result.data_array) == 10000 and r.result.next_chunk_index == 1
    second = w.statement_execution.get_statement_result_chunk_n(r.statement_id, 1)
    assert second.row_offset == 10000 and second.data_array[0] == ["10000", "20000"]
    limited = run(w, wid, "SELECT id FROM range(100)", row_limit=7)
    assert limited.manifest.total_row_count == 7 and limited.manifest.truncated
    # ARROW_STREAM and CSV as links fetched with no Authorization header
    arrow = run(w, wid, "SELECT id, concat('row', id) AS label FROM range(5)",
                disposition=sql.Disposition.EXTERNAL_LINKS, format=sql.Format.ARROW_STREAM)
    link = arrow.result.external_links[0]
    assert link.expiration and "token=" in link.external_link
    got = requests.get(link.external_link, verify=False)
    assert got.status_code == 200
    table = pa.ipc.open_stream(io.BytesIO(got.content)).read_all()
    assert table.column("label").to_pylist() == [f"row{i}" for i in range(5)]
    csv = run(w, wid, "SELECT 1 AS a, 'x,y' AS b", disposition=sql.Disposition.EXTERNAL_LINKS, format=sql.Format.CSV)
    assert requests.get(csv.result.external_links[0].external_link).text == '1,"x,y"\n'
    bad = requests.get(link.external_link.split("token=")[0] + "token=forged")
    assert bad.status_code == 403
    # what ran is in the query history
    history = list(w.query_history.list(filter_by=sql.QueryFilter(warehouse_ids=[wid]), max_results=100).res)
    texts = [q.query_text for q in history]
    assert "SELECT id FROM range(100)" in texts
    q = next(q for q in history if q.query_text == "SELECT id FROM range(100)")
    assert q.status == sql.QueryStatus.FINISHED and q.user_name and q.statement_type.value == "SELECT"


def test_warehouse_lifecycle_auto_stop_and_start_on_a_statement(env):
    w, server = env["w"], env["server"]
    h = server.http()
    url = server.url("/api/2.0/sql/warehouses")
    for bad in [{"name": "x"}, {"name": "x", "cluster_size": "Huge"},
                {"name": "x", "cluster_size": "Small", "min_num_clusters": 3, "max_num_clusters": 2}]:
        assert_error(h.post(url, json=bad), 400, "INVALID_PARAMETER_VALUE")
    name = unique("auto")
    wh = w.warehouses.create_and_wait(name=name, cluster_size="X-Small", auto_stop_mins=0,
                                      tags=sql.EndpointTags(custom_tags=[sql.EndpointTagPair(key="team", value="data")]),
                                      enable_photon=True, channel=sql.Channel(name=sql.ChannelName.CHANNEL_NAME_PREVIEW),
                                      timeout=WAIT)
    assert wh.state == sql.State.RUNNING and wh.tags.custom_tags[0].value == "data" and wh.enable_photon
    assert wh.channel.name == sql.ChannelName.CHANNEL_NAME_PREVIEW
    assert_error(h.post(url, json={"name": name, "cluster_size": "Small"}), 409, "RESOURCE_ALREADY_EXISTS")
    # an engine with one local worker behind it
    engine = [c for c in w.clusters.list() if c.cluster_source and c.cluster_source.value == "SQL"
              and c.custom_tags and c.custom_tags.get("SqlEndpointId") == wh.id]
    assert len(engine) == 1 and engine[0].num_workers == 1
    # auto-stop (a minute is a second here), then a statement starts it again
    w.warehouses.edit(wh.id, name=name, cluster_size="X-Small", auto_stop_mins=1)
    wait_for(lambda: w.warehouses.get(wh.id).state == sql.State.STOPPED, 60, "the warehouse auto-stopped")
    r = run(w, wh.id, "SELECT 'woke' AS s", wait_timeout="50s")
    assert r.status.state == sql.StatementState.SUCCEEDED and r.result.data_array == [["woke"]], r.status
    # stop, start, edit, delete through the SDK's waiters
    w.warehouses.edit(wh.id, name=name, cluster_size="X-Small", auto_stop_mins=0)
    w.warehouses.start_and_wait(wh.id, timeout=WAIT)
    w.warehouses.stop_and_wait(wh.id, timeout=WAIT)
    assert w.warehouses.get(wh.id).num_clusters == 0
    w.warehouses.start_and_wait(wh.id, timeout=WAIT)
    w.warehouses.edit(wh.id, name=name, cluster_size="Small").result(timeout=WAIT)
    resized = w.warehouses.get(wh.id)
    assert resized.cluster_size == "Small" and resized.state == sql.State.RUNNING and resized.auto_stop_mins == 0
    w.warehouses.delete(wh.id)
    wait_for(lambda: w.warehouses.get(wh.id).state == sql.State.DELETED, 60, "the warehouse deleted")
    assert wh.id not in [x.id for x in w.warehouses.list()]
    assert not [c for c in w.clusters.list() if c.custom_tags and c.custom_tags.get("SqlEndpointId") == wh.id]
    r = h.post(server.url("/api/2.0/sql/statements"), json={"statement": "SELECT 1", "warehouse_id": wh.id})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")


def test_permissions_level_by_level(env):
    w, server, wid = env["w"], env["server"], env["warehouse"]
    other = non_admin(server, w, "whuser")
    ow = other["w"]
    assert wid not in [x.id for x in ow.warehouses.list()]
    with pytest.raises(PermissionDenied):
        ow.statement_execution.execute_statement(statement="SELECT 1", warehouse_id=wid)
    w.warehouses.update_permissions(wid, access_control_list=[
        sql.WarehouseAccessControlRequest(user_name=other["name"], permission_level=sql.WarehousePermissionLevel.CAN_USE)])
    assert wid in [x.id for x in ow.warehouses.list()]
    r = ow.statement_execution.execute_statement(statement="SELECT current_date() IS NOT NULL AS ok", warehouse_id=wid,
                                                 wait_timeout="30s")
    assert r.result.data_array == [["true"]]
    with pytest.raises(PermissionDenied):
        ow.warehouses.stop(wid)
    with pytest.raises(PermissionDenied):
        ow.warehouses.delete(wid)
    levels = [p.permission_level.value for p in w.warehouses.get_permission_levels(wid).permission_levels]
    assert levels == ["CAN_USE", "CAN_MONITOR", "CAN_MANAGE", "IS_OWNER"]
    # a user sees only their own queries in the history
    mine = list(ow.query_history.list(max_results=1000).res)
    assert mine and {q.user_name for q in mine} == {other["name"]}


def test_more_engines_while_statements_queue(kiln_factory):
    server = kiln_factory()
    w = server.client()
    wh = w.warehouses.create_and_wait(name=unique("scale"), cluster_size="2X-Small", min_num_clusters=1,
                                      max_num_clusters=2, auto_stop_mins=0, timeout=WAIT)
    slow = [w.statement_execution.execute_statement(statement=SLOW, warehouse_id=wh.id, wait_timeout="0s")
            for _ in range(12)]
    wait_for(lambda: w.warehouses.get(wh.id).num_clusters == 2, 120, "a second engine while statements queue")
    for s in slow:
        w.statement_execution.cancel_execution(s.statement_id)
    done = [wait_for(lambda s=s: (lambda x: x if x.status.state == sql.StatementState.CANCELED else None)(
        w.statement_execution.get_statement(s.statement_id)), 60, "cancelled") for s in slow]
    assert len(done) == 12
    # the extra engine goes after a minute (a second here) without work
    wait_for(lambda: w.warehouses.get(wh.id).num_clusters == 1, 60, "back to one engine")
    server.stop()


def test_a_job_sql_task_runs_a_file_on_the_warehouse(env):
    import base64

    from databricks.sdk.service import jobs
    from databricks.sdk.service.workspace import ImportFormat

    w, server, wid = env["w"], env["server"], env["warehouse"]
    home = f"/Users/{w.current_user.me().user_name}/{unique('sqltask')}"
    w.workspace.mkdirs(home)
    schema = unique("sqltask").replace("-", "_")
    text = (f"CREATE SCHEMA IF NOT EXISTS main.{schema};\n"
            f"CREATE TABLE main.{schema}.events (kind STRING, n INT) USING delta;\n"
            f"INSERT INTO main.{schema}.events VALUES ('click', 1), ('other; DROP', 2);\n"
            f"-- a parameter is data, never SQL text (the engine binds markers in queries)\n"
            f"SELECT count(*) FROM main.{schema}.events WHERE kind = :kind;\n")
    w.workspace.import_(path=f"{home}/load.sql", format=ImportFormat.AUTO,
                        content=base64.b64encode(text.encode()).decode(), overwrite=True)
    w.workspace.import_(path=f"{home}/broken.sql", format=ImportFormat.AUTO,
                        content=base64.b64encode(b"SELECT * FROM main.nowhere.nothing;").decode(), overwrite=True)
    r = server.http().post(server.url("/api/2.2/jobs/create"), json={"name": "x", "tasks": [
        {"task_key": "q", "sql_task": {"warehouse_id": "nope", "file": {"path": f"{home}/load.sql"}}}]})
    assert "sql_task.warehouse_id" in assert_error(r, 400, "INVALID_PARAMETER_VALUE")["message"]
    job = w.jobs.create(name=unique("sqljob"), tasks=[
        jobs.Task(task_key="load", sql_task=jobs.SqlTask(warehouse_id=wid, parameters={"kind": "click"},
                                                       file=jobs.SqlTaskFile(path=f"{home}/load.sql"))),
        jobs.Task(task_key="broken", depends_on=[jobs.TaskDependency(task_key="load")],
                  sql_task=jobs.SqlTask(warehouse_id=wid, file=jobs.SqlTaskFile(path=f"{home}/broken.sql")))])
    run = w.jobs.run_now_and_wait(job_id=job.job_id, timeout=WAIT)
    load = next(t for t in run.tasks if t.task_key == "load")
    broken = next(t for t in run.tasks if t.task_key == "broken")
    assert load.state.result_state == jobs.RunResultState.SUCCESS, w.jobs.get_run_output(load.run_id)
    assert broken.state.result_state == jobs.RunResultState.FAILED
    assert "nothing" in w.jobs.get_run_output(broken.run_id).error.lower()
    rows = run_sql = w.statement_execution.execute_statement(
        statement=f"SELECT kind, n FROM main.{schema}.events ORDER BY n", warehouse_id=wid, wait_timeout="30s")
    assert rows.result.data_array == [["click", "1"], ["other; DROP", "2"]], run_sql.status
