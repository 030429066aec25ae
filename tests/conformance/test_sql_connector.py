"""The Databricks SQL protocol with the real databricks-sql-connector (from PyPI, pinned): on a
warehouse and on an all-purpose cluster, queries, parameters, Arrow fetches, fetchmany, metadata
calls, an error, a bad token."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kiln_helpers import unique

WAIT = timedelta(minutes=5)
SPARK = "16.4.x-scala2.12"


@pytest.fixture(scope="module")
def env(kiln_factory):
    server = kiln_factory()
    w = server.client()
    wh = w.warehouses.create_and_wait(name=unique("conn"), cluster_size="2X-Small", auto_stop_mins=0, timeout=WAIT)
    return {"server": server, "w": w, "warehouse": wh}


def connect(server, http_path, token=None, **kw):
    from databricks import sql

    port = server.config["server"]["https_port"]
    # telemetry off: its feature-flag lookup ignores _port and would wait on port 443
    return sql.connect(server_hostname="127.0.0.1", _port=port, http_path=http_path,
                       access_token=token or server.token, _tls_no_verify=True, enable_telemetry=False, **kw)


def test_queries_parameters_and_arrow_on_a_warehouse(env):
    server, wh = env["server"], env["warehouse"]
    with connect(server, wh.odbc_params.path) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 AS one, 'kiln' AS name, CAST(2.5 AS DECIMAL(4,2)) AS amount")
        assert cur.fetchall()[0].asDict() == {"one": 1, "name": "kiln", "amount": __import__("decimal").Decimal("2.50")}
        assert [d[0] for d in cur.description] == ["one", "name", "amount"]
        assert [d[1] for d in cur.description] == ["int", "string", "decimal"]
        cur.execute("SELECT id FROM range(10) WHERE id >= :low ORDER BY id", {"low": 7})
        assert [r.id for r in cur.fetchall()] == [7, 8, 9]
        cur.execute("SELECT id, id * 2 AS twice FROM range(100000) ORDER BY id")
        first = cur.fetchmany(5)
        assert [r.id for r in first] == [0, 1, 2, 3, 4]
        rest = cur.fetchall_arrow()
        assert rest.num_rows == 99995 and rest.column("twice")[0].as_py() == 10


def test_metadata_calls_errors_and_a_bad_token(env):
    from databricks.sql.exc import RequestError, ServerOperationError

    server, w, wh = env["server"], env["w"], env["warehouse"]
    schema = unique("meta").replace("-", "_")
    with connect(server, wh.odbc_params.path, catalog="main") as conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"CREATE TABLE {schema}.orders (id BIGINT, item STRING, price DECIMAL(10,2)) USING delta")
        cur.execute(f"INSERT INTO {schema}.orders VALUES (1, 'apple', 1.50)")
        cur.execute(f"CREATE VIEW {schema}.cheap AS SELECT * FROM {schema}.orders WHERE price < 2")
        cur.catalogs()
        assert "main" in [r[0] for r in cur.fetchall()]
        cur.schemas(catalog_name="main", schema_name=schema)
        assert [tuple(r) for r in cur.fetchall()] == [(schema, "main")]
        cur.tables(catalog_name="main", schema_name=schema)
        tables = {r.TABLE_NAME: r.TABLE_TYPE for r in cur.fetchall()}
        assert tables == {"orders": "TABLE", "cheap": "VIEW"}
        cur.columns(catalog_name="main", schema_name=schema, table_name="orders")
        cols = [(r.COLUMN_NAME, r.ORDINAL_POSITION) for r in cur.fetchall()]
        assert cols == [("id", 1), ("item", 2), ("price", 3)], cols
        # the session's initial catalog holds for its statements
        cur.execute(f"SELECT item FROM {schema}.cheap")
        assert cur.fetchall()[0].item == "apple"
        with pytest.raises(ServerOperationError) as failed:
            cur.execute("SELECT * FROM main.nowhere.nothing")
        assert "nothing" in str(failed.value).lower()
        cur.execute("SELECT 1 AS still_ok")
        assert cur.fetchone().still_ok == 1
    with pytest.raises(RequestError):
        connect(server, wh.odbc_params.path, token="dapi-not-a-token")


def test_an_all_purpose_cluster_speaks_the_protocol_too(env):
    server, w = env["server"], env["w"]
    cluster = w.clusters.create_and_wait(cluster_name=unique("sqlc"), spark_version=SPARK, num_workers=0)
    org = w.get_workspace_id()
    with connect(server, f"sql/protocolv1/o/{org}/{cluster.cluster_id}") as conn, conn.cursor() as cur:
        cur.execute("SELECT concat('on ', :where) AS s", {"where": "a cluster"})
        assert cur.fetchone().s == "on a cluster"
        cur.execute("SELECT id FROM range(3) ORDER BY id")
        assert cur.fetchall_arrow().column("id").to_pylist() == [0, 1, 2]
        # the cluster usage tags Databricks sets (dbt-databricks reads the runtime version so)
        cur.execute("SET spark.databricks.clusterUsageTags.sparkVersion")
        assert list(cur.fetchone()) == ["spark.databricks.clusterUsageTags.sparkVersion", SPARK]
        cur.execute("SET spark.databricks.clusterUsageTags.clusterId")
        assert cur.fetchone()[1] == cluster.cluster_id


NO_ARROW = r'''
import json, sys
sys.modules["pyarrow"] = None  # the connector as `pip install databricks-sql-connector` has it: no pyarrow
from databricks import sql
port, path, token = sys.argv[1], sys.argv[2], sys.argv[3]
with sql.connect(server_hostname="127.0.0.1", _port=int(port), http_path=path, access_token=token,
                 _tls_no_verify=True, enable_telemetry=False) as conn, conn.cursor() as cur:
    cur.execute("SELECT id, concat('n', id) AS s, CAST(id AS DOUBLE) / 2 AS half, id % 2 = 0 AS even, "
                "CASE WHEN id = 1 THEN NULL ELSE id END AS maybe, DATE'2024-01-02' AS d FROM range(3) ORDER BY id")
    rows = [list(r) for r in cur.fetchall()]
    cur.catalogs()
    cats = [r[0] for r in cur.fetchall()]
print(json.dumps({"rows": rows, "catalogs": cats}, default=str))
'''


def test_a_client_without_arrow_gets_column_based_results(env):
    import json
    import subprocess
    import sys

    server, wh = env["server"], env["warehouse"]
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", NO_ARROW, str(wh.odbc_params.port),
                          wh.odbc_params.path, server.token], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rows"] == [[0, "n0", 0.0, True, 0, "2024-01-02"], [1, "n1", 0.5, False, None, "2024-01-02"],
                           [2, "n2", 1.0, True, 2, "2024-01-02"]], got
    assert "main" in got["catalogs"]
