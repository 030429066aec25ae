"""Overwrite and REPLACE of Unity Catalog tables in every path a user takes: Spark Connect
through the gateway (what Databricks Connect speaks), Python and SQL commands in contexts
(which reach the engine through Kiln's loopback front), with Databricks' semantics: the table
keeps its name and (for the same columns) its Delta history, readers never see it missing,
and a failed replace leaves the old table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.compute import Language, State

from kiln_helpers import unique

SPARK_VERSION = "16.4.x-scala2.12"

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import udf

    url, t = sys.argv[1:3]
    spark = SparkSession.builder.remote(url).getOrCreate()
    out = {}

    def attempt(name, f):
        try:
            f()
            out[name] = "ok"
        except Exception as e:  # the error class and first line, for the test to check
            out[name] = type(e).__name__ + ": " + str(e).splitlines()[0]

    rows = lambda name: [list(r) for r in spark.table(name).orderBy(*spark.table(name).columns).collect()]
    # a new table from local data (the engine's own create-as-select of it used to fail)
    df = spark.createDataFrame([(1, "a"), (2, "b")], "id INT, k STRING")
    df.write.saveAsTable(t + "_a")
    out["created"] = rows(t + "_a")
    # overwrite twice with the same columns, in another order: matched by name
    spark.createDataFrame([("c", 3)], "k STRING, id INT").write.mode("overwrite").saveAsTable(t + "_a")
    spark.createDataFrame([("d", 4)], "k STRING, id INT").write.mode("overwrite").saveAsTable(t + "_a")
    out["overwritten"] = rows(t + "_a")
    out["pandas"] = spark.table(t + "_a").toPandas().to_dict("records")
    # other columns need overwriteSchema, as on Databricks
    attempt("mismatch", lambda: spark.range(1).write.mode("overwrite").saveAsTable(t + "_a"))
    out["after_mismatch"] = rows(t + "_a")
    spark.range(3).write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(t + "_a")
    out["new_schema"] = rows(t + "_a")
    # a failing overwrite leaves the old table
    boom = udf(lambda x: 1 // 0, "long")
    attempt("failed_overwrite", lambda: spark.range(2).select(boom("id").alias("id")).write.mode("overwrite").saveAsTable(t + "_a"))
    attempt("failed_replace", lambda: spark.range(2).select(boom("id").alias("other")).write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(t + "_a"))
    out["after_failures"] = rows(t + "_a")
    # writeTo: create, createOrReplace (same and other columns), replace of a missing table
    df.writeTo(t + "_b").createOrReplace()
    df.writeTo(t + "_b").createOrReplace()
    spark.createDataFrame([("z",)], "zz STRING").writeTo(t + "_b").replace()
    out["write_to"] = rows(t + "_b")
    attempt("replace_missing", lambda: df.writeTo(t + "_missing").replace())
    # SQL
    spark.sql(f"CREATE OR REPLACE TABLE {t}_c AS SELECT 1 AS a").collect()
    spark.sql(f"CREATE OR REPLACE TABLE {t}_c COMMENT 'v2' AS SELECT 2 AS a, 'x' AS b").collect()
    out["sql"] = rows(t + "_c")
    spark.sql(f"CREATE OR REPLACE TABLE {t}_d (a INT)").collect()
    spark.sql(f"INSERT INTO {t}_d VALUES (7)").collect()
    spark.sql(f"CREATE OR REPLACE TABLE {t}_d (a INT, b STRING)").collect()
    out["sql_columns"] = [spark.table(t + "_d").columns, rows(t + "_d")]
    attempt("sql_replace_missing", lambda: spark.sql(f"REPLACE TABLE {t}_missing (a INT)").collect())
    df.createOrReplaceTempView("local_rows")
    spark.sql(f"CREATE TABLE {t}_e AS SELECT * FROM local_rows").collect()
    out["ctas_local"] = rows(t + "_e")
    # readers never see the table missing while it is replaced
    spark.sql(f"CREATE OR REPLACE TABLE {t}_f AS SELECT id FROM range(10)").collect()
    reader = SparkSession.builder.remote(url).create()
    seen, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                seen.append(reader.table(t + "_f").count())
            except Exception as e:
                seen.append(str(e).splitlines()[0])

    thread = threading.Thread(target=read)
    thread.start()
    for i in range(4):  # the same columns: new versions of one Delta table
        spark.sql(f"CREATE OR REPLACE TABLE {t}_f AS SELECT id FROM range({i}, {i} + 10)").collect()
        spark.range(10).write.mode("overwrite").saveAsTable(t + "_f")
    stop.set()
    thread.join()
    out["reads"] = sorted(set(map(str, seen)))
    seen.clear()
    stop.clear()
    thread = threading.Thread(target=read)
    thread.start()
    for i in range(4):  # other columns: the table is given a new Delta table
        spark.sql(f"CREATE OR REPLACE TABLE {t}_f AS SELECT id, {i} AS round FROM range(10)").collect()
        spark.range(10).write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(t + "_f")
    stop.set()
    thread.join()
    out["reads_new_schema"] = sorted(set(map(str, seen)))
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def cluster(kiln, w):
    # the scripts below send Python UDFs from the suite's Python: the cluster runs that minor
    c = w.clusters.create_and_wait(cluster_name=unique("writes"), spark_version=SPARK_VERSION, num_workers=0,
                                   spark_env_vars={"PYSPARK_PYTHON": f"python{sys.version_info[0]}.{sys.version_info[1]}"})
    assert c.state == State.RUNNING
    yield kiln.track(c.cluster_id)
    try:
        w.clusters.permanent_delete(c.cluster_id)
    except DatabricksError:
        pass


def run_script(url: str, table: str):
    script = os.path.join(tempfile.gettempdir(), "kiln_table_writes.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    r = subprocess.run([sys.executable, script, url, table], capture_output=True, text=True, timeout=600,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_overwrite_and_replace_through_the_gateway(kiln, w, cluster):
    t = f"main.default.{unique('rw').replace('-', '_')}"
    url = f"sc://127.0.0.1:{kiln.port}/;x-databricks-cluster-id={cluster};authorization=Bearer {kiln.token}"
    out = run_script(url, t)
    assert out["created"] == [[1, "a"], [2, "b"]]
    assert out["overwritten"] == [[4, "d"]]
    assert out["pandas"] == [{"id": 4, "k": "d"}]
    assert out["mismatch"].startswith("AnalysisException: [DELTA_METADATA_MISMATCH]"), out["mismatch"]
    assert out["after_mismatch"] == [[4, "d"]]
    assert out["new_schema"] == [[0], [1], [2]]
    assert out["failed_overwrite"].startswith("PythonException") and out["failed_replace"].startswith("PythonException"), out
    assert out["after_failures"] == [[0], [1], [2]]
    assert out["write_to"] == [["z"]]
    assert out["replace_missing"].startswith("AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]"), out["replace_missing"]
    assert out["sql"] == [[2, "x"]]
    assert out["sql_columns"] == [["a", "b"], []]
    assert out["sql_replace_missing"].startswith("AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]")
    assert out["ctas_local"] == [[1, "a"], [2, "b"]]
    assert out["reads"] == ["10"], out["reads"]
    # A query planned just before a swap to a new Delta table can be refused by the
    # engine (its second catalog lookup finds the new location); it never sees the
    # table missing or half written.
    assert "10" in out["reads_new_schema"], out["reads_new_schema"]
    assert all(r == "10" or "table URI mismatch" in r for r in out["reads_new_schema"]), out["reads_new_schema"]
    assert w.tables.get(f"{t}_c").comment == "v2"
    # no hidden table of a replace is left or listed
    names = [x.name for x in w.tables.list(catalog_name="main", schema_name="default")]
    assert not [n for n in names if n.startswith("__kiln")], names
    assert f"{t}_a".split(".")[-1] in names


def test_an_overwrite_with_the_same_columns_is_a_new_version_of_the_same_table(kiln, w, cluster):
    t = f"main.default.{unique('ver').replace('-', '_')}"
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON)

    def py(code):
        res = w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx.id,
                                                   language=Language.PYTHON, command=code)
        assert res.status.value == "Finished", res.results.as_dict()
        return res.results

    py(f'spark.createDataFrame([(1, "a")], "id INT, k STRING").write.mode("overwrite").saveAsTable("{t}")')
    first = w.tables.get(t)
    r = py(f'spark.createDataFrame([(2, "b")], "id INT, k STRING").write.mode("overwrite").saveAsTable("{t}")\n'
           f'print(spark.table("{t}").collect())')
    assert r.data.strip() == "[Row(id=2, k='b')]"
    again = w.tables.get(t)
    assert (again.table_id, again.storage_location) == (first.table_id, first.storage_location)
    log = os.path.join(first.storage_location.removeprefix("file://"), "_delta_log")
    versions = sorted(f for f in os.listdir(log) if f.endswith(".json"))
    assert len(versions) >= 3, versions  # create, insert, overwrite: one Delta history
    r = py(f'spark.range(2).write.mode("overwrite").option("overwriteSchema", "true").saveAsTable("{t}")\n'
           f'print(spark.table("{t}").columns)')
    assert r.data.strip() == "['id']"
    replaced = w.tables.get(t)
    assert replaced.table_id != first.table_id and replaced.created_at == first.created_at
    assert os.path.isdir(log), "the earlier data stays until the table is dropped"
    w.tables.delete(t)
    assert not os.path.exists(log)


def test_create_or_replace_in_a_sql_context(w, cluster):
    t = f"main.default.{unique('sqlctx').replace('-', '_')}"
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.SQL)

    def sql(code):
        return w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx.id,
                                                    language=Language.SQL, command=code)

    for query in (f"CREATE OR REPLACE TABLE {t} AS SELECT 1 AS a",
                  f"CREATE OR REPLACE TABLE {t} AS SELECT 2 AS a",
                  f"CREATE OR REPLACE TABLE {t} AS SELECT 3 AS a, 'x' AS b"):
        res = sql(query)
        assert res.status.value == "Finished", res.results.as_dict()
    res = sql(f"SELECT * FROM {t}")
    assert res.results.data == [[3, "x"]]
    res = sql(f"REPLACE TABLE {t}_missing (a INT)")
    assert res.status.value == "Error" or res.results.result_type.value == "error", res.results.as_dict()
    assert "TABLE_OR_VIEW_NOT_FOUND" in (res.results.cause or res.results.summary or ""), res.results.as_dict()


VIEWS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pyspark.sql import SparkSession

    url, s = sys.argv[1:3]
    spark = SparkSession.builder.remote(url).getOrCreate()
    out = {}

    def attempt(name, f):
        try:
            out[name] = f()
        except Exception as e:
            out[name] = type(e).__name__ + ": " + str(e).splitlines()[0]

    spark.sql(f"CREATE SCHEMA IF NOT EXISTS main.{s}").collect()
    spark.createDataFrame([(1, "a"), (2, "b"), (3, "a")], "id INT, k STRING").write.saveAsTable(f"main.{s}.base")
    spark.sql(f"CREATE VIEW main.{s}.counts AS SELECT k, count(*) AS n FROM main.{s}.base GROUP BY k").collect()
    out["sql"] = [list(r) for r in spark.sql(f"SELECT * FROM main.{s}.counts ORDER BY k").collect()]
    out["table"] = [list(r) for r in spark.table(f"main.{s}.counts").orderBy("k").collect()]
    out["columns"] = spark.table(f"main.{s}.counts").columns
    attempt("again", lambda: spark.sql(f"CREATE VIEW main.{s}.counts AS SELECT 1").collect())
    spark.sql(f"CREATE OR REPLACE VIEW main.{s}.counts (key, cnt) COMMENT 'per key' AS SELECT k, count(*) FROM main.{s}.base GROUP BY k").collect()
    spark.sql(f"CREATE VIEW main.{s}.big AS SELECT * FROM main.{s}.counts WHERE cnt > 1").collect()
    out["nested"] = [list(r) for r in spark.sql(f"SELECT * FROM main.{s}.big").collect()]
    out["join"] = [list(r) for r in spark.sql(
        f"SELECT b.id, c.cnt FROM main.{s}.base b JOIN main.{s}.counts c ON b.k = c.key ORDER BY b.id").collect()]
    # a view follows its table
    spark.createDataFrame([(4, "b")], "id INT, k STRING").write.mode("append").saveAsTable(f"main.{s}.base")
    out["live"] = [list(r) for r in spark.sql(f"SELECT * FROM main.{s}.big ORDER BY key").collect()]
    attempt("broken", lambda: spark.sql(f"CREATE VIEW main.{s}.broken AS SELECT * FROM main.{s}.nothere").collect())
    out["listed"] = sorted(r.tableName for r in spark.sql(f"SHOW TABLES IN main.{s}").collect())
    attempt("drop_table_as_view", lambda: spark.sql(f"DROP VIEW main.{s}.base").collect())
    # a query that ends in a comment is wrapped on lines of its own
    spark.sql(f"CREATE VIEW main.{s}.commented AS SELECT 7 AS seven -- the end").collect()
    spark.sql(f"CREATE TABLE main.{s}.commented_t AS SELECT * FROM main.{s}.commented -- copied").collect()
    out["commented"] = [list(r) for r in spark.table(f"main.{s}.commented_t").collect()]
    spark.sql(f"DROP VIEW main.{s}.commented").collect()
    spark.sql(f"DROP TABLE main.{s}.commented_t").collect()
    spark.sql(f"CREATE OR REPLACE TABLE main.{s}.snapshot AS SELECT * FROM main.{s}.big").collect()
    out["ctas"] = [list(r) for r in spark.table(f"main.{s}.snapshot").orderBy("key").collect()]
    # names without a schema are read where the session's USE points
    spark.sql(f"USE SCHEMA main.{s}").collect()
    spark.createDataFrame([(9, "z")], "id INT, k STRING").write.mode("overwrite").saveAsTable("scoped")
    spark.createDataFrame([(8, "y")], "id INT, k STRING").write.mode("overwrite").saveAsTable("scoped")
    spark.sql("CREATE OR REPLACE VIEW scoped_v AS SELECT id FROM scoped").collect()
    out["scoped"] = [list(r) for r in spark.sql("SELECT * FROM scoped_v").collect()]
    spark.sql("USE SCHEMA main.default").collect()
    # the view's own table is the one of the view's schema, whatever the reader's USE
    out["scoped_elsewhere"] = [list(r) for r in spark.sql(f"SELECT * FROM main.{s}.scoped_v").collect()]
    spark.sql("CREATE TEMP VIEW local_v AS SELECT 5 AS z").collect()
    out["temp"] = [list(r) for r in spark.sql("SELECT * FROM local_v").collect()]
    spark.sql("DROP VIEW local_v").collect()
    print(json.dumps(out))
    """
)


def test_views_are_unity_catalog_views_on_every_cluster(kiln, w, cluster):
    s = unique("views").replace("-", "_")
    script = os.path.join(tempfile.gettempdir(), "kiln_views.py")
    with open(script, "w") as f:
        f.write(VIEWS_SCRIPT)
    url = f"sc://127.0.0.1:{kiln.port}/;x-databricks-cluster-id={cluster};authorization=Bearer {kiln.token}"
    r = subprocess.run([sys.executable, script, url, s], capture_output=True, text=True, timeout=600,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["sql"] == [["a", 2], ["b", 1]] and out["table"] == out["sql"]
    assert out["columns"] == ["k", "n"]
    assert out["again"].startswith("AnalysisException: [VIEW_ALREADY_EXISTS]"), out["again"]
    assert out["nested"] == [["a", 2]]
    assert out["join"] == [[1, 2], [2, 1], [3, 2]]
    assert out["live"] == [["a", 2], ["b", 2]]
    assert "TABLE_OR_VIEW_NOT_FOUND" in out["broken"], out["broken"]
    assert out["listed"] == ["base", "big", "counts"], out["listed"]
    assert out["drop_table_as_view"].startswith("AnalysisException: [WRONG_COMMAND_FOR_OBJECT_TYPE]")
    assert out["ctas"] == [["a", 2], ["b", 2]]
    assert out["temp"] == [[5]]
    assert out["commented"] == [[7]]
    assert out["scoped"] == [[8]] and out["scoped_elsewhere"] == [[8]]
    assert w.tables.get(f"main.{s}.scoped_v").table_type.value == "VIEW"
    assert {t.name for t in w.tables.list(catalog_name="main", schema_name="default")}.isdisjoint({"scoped", "scoped_v"})
    info = w.tables.get(f"main.{s}.counts")
    assert info.table_type.value == "VIEW" and info.comment == "per key", info
    assert "GROUP BY k" in info.view_definition
    assert [c.name for c in info.columns] == ["key", "cnt"]
    # another cluster, a SQL context (the kernel reaches its engine through Kiln's front)
    other = w.clusters.create_and_wait(cluster_name=unique("views2"), spark_version=SPARK_VERSION, num_workers=0)
    kiln.track(other.cluster_id)
    try:
        ctx = w.command_execution.create_and_wait(cluster_id=other.cluster_id, language=Language.SQL)
        res = w.command_execution.execute_and_wait(cluster_id=other.cluster_id, context_id=ctx.id, language=Language.SQL,
                                                   command=f"SELECT key, cnt FROM main.{s}.big ORDER BY key")
        assert res.status.value == "Finished" and res.results.data == [["a", 2], ["b", 2]], res.results.as_dict()
        res = w.command_execution.execute_and_wait(cluster_id=other.cluster_id, context_id=ctx.id, language=Language.SQL,
                                                   command=f"DROP VIEW main.{s}.big")
        assert res.status.value == "Finished", res.results.as_dict()
    finally:
        w.clusters.permanent_delete(other.cluster_id)
    names = [t.name for t in w.tables.list(catalog_name="main", schema_name=s)]
    assert "big" not in names and "counts" in names, names
