"""The Delta table utilities Databricks users run daily — DESCRIBE HISTORY/DETAIL, SHOW
TBLPROPERTIES, SHOW CREATE TABLE, OPTIMIZE (ZORDER BY, WHERE), VACUUM (RETAIN, DRY RUN),
RESTORE, SHALLOW/DEEP CLONE, ALTER TABLE SET/UNSET TBLPROPERTIES and ADD COLUMNS, COMMENT ON
TABLE — through a SQL context, a Python context (spark.sql) and Spark Connect through the
gateway, served from the tables' real Delta logs and checked against the data read back."""

from __future__ import annotations

import base64
import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service import workspace as ws
from databricks.sdk.service.compute import Language, State

from kiln_helpers import unique

SPARK_VERSION = "16.4.x-scala2.12"


@pytest.fixture(scope="module")
def cluster(kiln, w):
    c = w.clusters.create_and_wait(cluster_name=unique("delta"), spark_version=SPARK_VERSION, num_workers=0)
    assert c.state == State.RUNNING
    yield kiln.track(c.cluster_id)
    try:
        w.clusters.permanent_delete(c.cluster_id)
    except DatabricksError:
        pass


class Context:
    def __init__(self, w, cluster, language):
        self.w, self.cluster, self.language = w, cluster, language
        self.id = w.command_execution.create_and_wait(cluster_id=cluster, language=language).id

    def run(self, code):
        res = self.w.command_execution.execute_and_wait(cluster_id=self.cluster, context_id=self.id,
                                                        language=self.language, command=code)
        return res.status.value, res.results.as_dict()

    def ok(self, code):
        status, r = self.run(code)
        assert status == "Finished" and r["resultType"] != "error", (code, r)
        return r

    def rows(self, sql):
        r = self.ok(sql)
        assert r["resultType"] == "table", r
        names = [c["name"] for c in r["schema"]]
        return [dict(zip(names, row)) for row in r.get("data") or []]

    def error(self, code):
        status, r = self.run(code)
        assert status == "Error" or r["resultType"] == "error", (code, r)
        return (r.get("cause") or "") + (r.get("summary") or "")


@pytest.fixture(scope="module")
def sql(w, cluster):
    return Context(w, cluster, Language.SQL)


@pytest.fixture(scope="module")
def py(w, cluster):
    return Context(w, cluster, Language.PYTHON)


def script_file(text):
    """A script PySpark can run (`python -c` leaves it no SPARK_HOME to find)."""
    fd, path = tempfile.mkstemp(suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def table_name(prefix):
    return "main.default." + unique(prefix).replace("-", "_")


def as_map(value):
    """A MAP column as the REST API renders it: a list of [key, value] pairs."""
    return {k: v for k, v in value} if isinstance(value, list) else dict(value or {})


def files_of(w, table):
    location = w.tables.get(table).storage_location
    root = location[len("file://"):]
    return root, sorted(p for p in glob.glob(root + "/**/*.parquet", recursive=True) if "/_" not in p[len(root):])


def test_history_and_detail_come_from_the_delta_log(w, sql, py):
    t = table_name("hist")
    py.ok(f"spark.range(5).write.saveAsTable('{t}')")
    py.ok(f"spark.range(5, 8).write.mode('append').saveAsTable('{t}')")
    history = sql.rows(f"DESCRIBE HISTORY {t}")
    assert [h["version"] for h in history] == [2, 1, 0]
    assert history[0]["operation"] == "WRITE" and as_map(history[0]["operationParameters"])["mode"] == "Append"
    assert as_map(history[0]["operationMetrics"])["numOutputRows"] == "3"
    assert history[-1]["operation"] == "CREATE TABLE"
    assert [h["version"] for h in sql.rows(f"DESCRIBE HISTORY {t} LIMIT 1")] == [2]
    # the same through spark.sql in Python
    assert py.ok(f"spark.sql('DESCRIBE HISTORY {t}').count()")["data"] == "3"
    detail = sql.rows(f"DESCRIBE DETAIL {t}")[0]
    root, files = files_of(w, t)
    assert detail["format"] == "delta" and detail["name"] == t
    assert detail["numFiles"] == len(files) == 2
    assert detail["sizeInBytes"] == sum(os.path.getsize(f) for f in files)
    assert detail["location"] == "file://" + root
    assert "inCommitTimestamp" in detail["tableFeatures"]
    props = {r["key"]: r["value"] for r in sql.rows(f"SHOW TBLPROPERTIES {t}")}
    assert props["delta.minWriterVersion"] == str(detail["minWriterVersion"])
    create = sql.rows(f"SHOW CREATE TABLE {t}")[0]["createtab_stmt"]
    assert create.startswith("CREATE TABLE `main`.`default`.") and "`id` BIGINT" in create and "USING delta" in create
    assert "TABLE_OR_VIEW_NOT_FOUND" in sql.error("DESCRIBE HISTORY main.default.no_such_table")


def test_alter_properties_add_columns_and_comment(w, sql, py):
    t = table_name("alter")
    py.ok(f"spark.createDataFrame([(1, 'a')], 'id INT, k STRING').write.saveAsTable('{t}')")
    sql.ok(f"ALTER TABLE {t} SET TBLPROPERTIES ('team' = 'data', 'delta.deletedFileRetentionDuration' = 'interval 2 days')")
    props = {r["key"]: r["value"] for r in sql.rows(f"SHOW TBLPROPERTIES {t}")}
    assert props["team"] == "data" and props["delta.deletedFileRetentionDuration"] == "interval 2 days"
    assert sql.rows(f"SHOW TBLPROPERTIES {t} ('team')") == [{"key": "team", "value": "data"}]
    assert w.tables.get(t).properties["team"] == "data"
    assert "DELTA_INVALID_TABLE_PROPERTY_VALUE" in sql.error(f"ALTER TABLE {t} SET TBLPROPERTIES ('delta.appendOnly' = 'maybe')")
    assert "DELTA_UNKNOWN_CONFIGURATION" in sql.error(f"ALTER TABLE {t} SET TBLPROPERTIES ('delta.noSuchThing' = 'x')")
    sql.ok(f"ALTER TABLE {t} UNSET TBLPROPERTIES ('team')")
    assert "team" not in {r["key"] for r in sql.rows(f"SHOW TBLPROPERTIES {t}")}
    assert "UNSET_NONEXISTENT_PROPERTIES" in sql.error(f"ALTER TABLE {t} UNSET TBLPROPERTIES ('team')")
    sql.ok(f"ALTER TABLE {t} UNSET TBLPROPERTIES IF EXISTS ('team')")
    # ADD COLUMNS: old rows read NULL, new rows carry the column
    sql.ok(f"ALTER TABLE {t} ADD COLUMNS (score DOUBLE COMMENT 'points', tags ARRAY<STRING>)")
    py.ok(f"spark.createDataFrame([(2, 'b', 1.5, ['x'])], 'id INT, k STRING, score DOUBLE, tags ARRAY<STRING>').write.mode('append').saveAsTable('{t}')")
    rows = sql.rows(f"SELECT id, k, score, tags FROM {t} ORDER BY id")
    assert rows == [{"id": 1, "k": "a", "score": None, "tags": None}, {"id": 2, "k": "b", "score": 1.5, "tags": ["x"]}]
    assert [c.name for c in w.tables.get(t).columns] == ["id", "k", "score", "tags"]
    assert "FIELD_ALREADY_EXISTS" in sql.error(f"ALTER TABLE {t} ADD COLUMN K STRING")
    sql.ok(f"COMMENT ON TABLE {t} IS 'the scores'")
    assert sql.rows(f"DESCRIBE DETAIL {t}")[0]["description"] == "the scores"
    assert w.tables.get(t).comment == "the scores"
    ops = [h["operation"] for h in sql.rows(f"DESCRIBE HISTORY {t}")]
    assert ops[:4] == ["SET TBLPROPERTIES", "WRITE", "ADD COLUMNS", "UNSET TBLPROPERTIES"]


def test_optimize_compacts_small_files_and_keeps_every_row(w, sql, py):
    t = table_name("opt")
    py.ok(f"spark.range(0).write.saveAsTable('{t}')")
    py.ok(f"for i in reversed(range(8)):\n    spark.range(i * 10, i * 10 + 5).write.mode('append').saveAsTable('{t}')")
    before = sql.rows(f"SELECT count(*) AS n, sum(id) AS s FROM {t}")
    _, files = files_of(w, t)
    assert len(files) >= 8
    result = sql.rows(f"OPTIMIZE {t}")[0]
    metrics = result["metrics"]
    assert metrics["numFilesRemoved"] == 8 and metrics["numFilesAdded"] == 1, metrics
    assert sql.rows(f"SELECT count(*) AS n, sum(id) AS s FROM {t}") == before
    detail = sql.rows(f"DESCRIBE DETAIL {t}")[0]
    assert detail["numFiles"] == 1
    top = sql.rows(f"DESCRIBE HISTORY {t} LIMIT 1")[0]
    assert top["operation"] == "OPTIMIZE" and as_map(top["operationMetrics"])["numRemovedFiles"] == "8"
    # nothing left to compact: no new version
    assert sql.rows(f"OPTIMIZE {t}")[0]["metrics"]["numFilesAdded"] == 0
    assert sql.rows(f"DESCRIBE HISTORY {t} LIMIT 1")[0]["version"] == top["version"]
    # time travel still reads the files OPTIMIZE removed
    assert sql.rows(f"SELECT count(*) AS n, sum(id) AS s FROM {t} VERSION AS OF {top['version'] - 1}") == before
    # the compacted file keeps the commit order; ZORDER BY sorts it by the columns
    first = f"print([r.id for r in spark.table('{t}').collect()][:5])"
    assert py.ok(first)["data"] == "[70, 71, 72, 73, 74]"
    assert "DELTA_ZORDERING_COLUMN_DOES_NOT_EXIST" in sql.error(f"OPTIMIZE {t} ZORDER BY (nope)")
    sql.ok(f"OPTIMIZE {t} ZORDER BY (id)")
    assert py.ok(first)["data"] == "[0, 1, 2, 3, 4]"
    assert sql.rows(f"SELECT count(*) AS n, sum(id) AS s FROM {t}") == before


def test_optimize_where_takes_partitions_only(w, sql, py):
    t = table_name("optp")
    py.ok(f"df = spark.createDataFrame([(i, 'a' if i % 2 else 'b') for i in range(4)], 'id INT, p STRING')\n"
          f"df.write.partitionBy('p').saveAsTable('{t}')\n"
          f"for i in range(3):\n    df.write.mode('append').partitionBy('p').saveAsTable('{t}')")
    assert "DELTA_NON_PARTITION_COLUMN_REFERENCE" in sql.error(f"OPTIMIZE {t} WHERE id > 1")
    metrics = sql.rows(f"OPTIMIZE {t} WHERE p = 'a'")[0]["metrics"]
    assert metrics["partitionsOptimized"] == 1 and metrics["numFilesAdded"] == 1
    assert sql.rows(f"SELECT p, count(*) AS n FROM {t} GROUP BY p ORDER BY p") == [{"p": "a", "n": 8}, {"p": "b", "n": 8}]
    assert sql.rows(f"OPTIMIZE {t}")[0]["metrics"]["partitionsOptimized"] == 1  # only b was left


def test_optimize_under_a_concurrent_append_loses_nothing(w, sql, py, kiln, cluster):
    t = table_name("optc")
    py.ok(f"for i in range(30):\n    spark.range(i * 10, i * 10 + 10).write.mode('append').saveAsTable('{t}')")
    url = f"sc://127.0.0.1:{kiln.port}/;x-databricks-cluster-id={cluster};authorization=Bearer {kiln.token}"
    script = textwrap.dedent(f"""
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.remote({url!r}).getOrCreate()
        for i in range(10):
            spark.range(1000 + i * 10, 1000 + i * 10 + 10).write.mode('append').saveAsTable({t!r})
    """)
    appender = subprocess.Popen([sys.executable, script_file(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tempfile.gettempdir())
    optimized = sql.rows(f"OPTIMIZE {t}")[0]["metrics"]
    out, _ = appender.communicate(timeout=300)
    assert appender.returncode == 0, out
    assert optimized["numFilesRemoved"] >= 30
    assert sql.rows(f"SELECT count(*) AS n, count(DISTINCT id) AS d FROM {t}") == [{"n": 400, "d": 400}]
    history = sql.rows(f"DESCRIBE HISTORY {t}")
    assert [h["version"] for h in history] == list(range(len(history) - 1, -1, -1))


def test_vacuum_dry_run_then_real_run(w, sql, py):
    t = table_name("vac")
    py.ok(f"for i in range(4):\n    spark.range(i * 10, i * 10 + 5).write.mode('append').saveAsTable('{t}')")
    sql.ok(f"OPTIMIZE {t}")
    root, files = files_of(w, t)
    live = {os.path.basename(r) for r in files} & {os.path.basename(p) for p in glob.glob(root + "/*zstd.parquet")}
    assert "DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT" in sql.error(f"VACUUM {t} RETAIN 0 HOURS")
    # the default retention keeps files removed a moment ago
    assert sql.rows(f"VACUUM {t} DRY RUN") == []
    sql.ok("SET spark.databricks.delta.retentionDurationCheck.enabled = false")
    dry = [r["path"] for r in sql.rows(f"VACUUM {t} RETAIN 0 HOURS DRY RUN")]
    assert len(dry) == 4 and all(os.path.exists(p[len("file:"):]) for p in dry)
    assert not {os.path.basename(p) for p in dry} & live
    assert files_of(w, t)[1] == files  # a dry run deletes nothing
    assert sql.rows(f"VACUUM {t} RETAIN 0 HOURS") == [{"path": w.tables.get(t).storage_location}]
    assert not any(os.path.exists(p[len("file:"):]) for p in dry)
    assert sql.rows(f"SELECT count(*) AS n FROM {t}") == [{"n": 20}]
    ops = [h["operation"] for h in sql.rows(f"DESCRIBE HISTORY {t} LIMIT 2")]
    assert ops == ["VACUUM END", "VACUUM START"]
    # the versions before the OPTIMIZE lost their files: RESTORE to them is refused
    assert "DELTA_FILE_NOT_FOUND_DETAILED" in sql.error(f"RESTORE TABLE {t} TO VERSION AS OF 1")


def test_vacuum_through_the_gateway_honours_spark_conf(kiln, w, sql, py, cluster):
    t = table_name("vacg")
    py.ok(f"spark.range(3).write.saveAsTable('{t}')")
    url = f"sc://127.0.0.1:{kiln.port}/;x-databricks-cluster-id={cluster};authorization=Bearer {kiln.token}"
    script = textwrap.dedent(f"""
        import json
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.remote({url!r}).getOrCreate()
        out = {{}}
        try:
            spark.sql("VACUUM {t} RETAIN 0 HOURS").collect()
        except Exception as e:
            out["refused"] = type(e).__name__ + ": " + str(e).splitlines()[0]
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        out["vacuumed"] = [r.path for r in spark.sql("VACUUM {t} RETAIN 0 HOURS").collect()]
        out["history"] = [r.operation for r in spark.sql("DESCRIBE HISTORY {t}").collect()]
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, script_file(script)], capture_output=True, text=True, timeout=300, cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["refused"].startswith("AnalysisException") and "DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT" in out["refused"]
    assert out["vacuumed"] == [w.tables.get(t).storage_location]
    assert out["history"][:2] == ["VACUUM END", "VACUUM START"]


def test_restore_and_clone(w, sql, py):
    t = table_name("rest")
    py.ok(f"spark.range(3).write.saveAsTable('{t}')")
    py.ok(f"spark.range(3, 6).write.mode('append').saveAsTable('{t}')")
    py.ok(f"spark.range(100, 101).write.mode('overwrite').saveAsTable('{t}')")
    assert sql.rows(f"SELECT count(*) AS n FROM {t}") == [{"n": 1}]
    writes = [h for h in sql.rows(f"DESCRIBE HISTORY {t}") if as_map(h["operationParameters"]).get("mode") == "Append"]
    first, appended = writes[-1]["version"], writes[0]["version"]  # the first rows, then the append
    result = sql.rows(f"RESTORE TABLE {t} TO VERSION AS OF {appended}")[0]
    assert result["num_restored_files"] == 2 and result["num_removed_files"] == 1
    assert sql.rows(f"SELECT sum(id) AS s FROM {t}") == [{"s": 15}]
    assert sql.rows(f"DESCRIBE HISTORY {t} LIMIT 1")[0]["operation"] == "RESTORE"
    assert "DELTA_CANNOT_RESTORE_TABLE_VERSION" in sql.error(f"RESTORE TABLE {t} TO VERSION AS OF 99")
    assert "DELTA_TIMESTAMP_EARLIER_THAN_COMMIT_RETENTION" in sql.error(f"RESTORE TABLE {t} TO TIMESTAMP AS OF '2001-01-01'")
    sql.ok(f"RESTORE TABLE {t} TO TIMESTAMP AS OF '2999-01-01 00:00:00'")  # the latest version: no change
    assert sql.rows(f"SELECT sum(id) AS s FROM {t}") == [{"s": 15}]
    # clones: deep copies the files, shallow refers to them; both are tables of their own
    deep, shallow = t + "_deep", t + "_shallow"
    copied = sql.rows(f"CREATE TABLE {deep} DEEP CLONE {t} VERSION AS OF {first}")[0]
    assert copied["num_copied_files"] == 1 and copied["source_num_of_files"] == 1
    assert sql.rows(f"SELECT sum(id) AS s FROM {deep}") == [{"s": 3}]
    sql.ok(f"CREATE TABLE {shallow} SHALLOW CLONE {t}")
    assert sql.rows(f"SELECT sum(id) AS s FROM {shallow}") == [{"s": 15}]
    # no data copied: the clone's files are the source's own bytes (hard links)
    source_inodes = {os.stat(f).st_ino for f in files_of(w, t)[1]}
    assert {os.stat(f).st_ino for f in files_of(w, shallow)[1]} <= source_inodes
    py.ok(f"spark.range(1000, 1001).write.mode('append').saveAsTable('{shallow}')")
    assert sql.rows(f"SELECT sum(id) AS s FROM {shallow}") == [{"s": 1015}]
    assert sql.rows(f"SELECT sum(id) AS s FROM {t}") == [{"s": 15}]  # the source is untouched
    clone_op = sql.rows(f"DESCRIBE HISTORY {deep} LIMIT 1")[0]
    assert clone_op["operation"] == "CLONE" and as_map(clone_op["operationParameters"])["sourceVersion"] == str(first)
    assert "TABLE_OR_VIEW_ALREADY_EXISTS" in sql.error(f"CREATE TABLE {deep} CLONE {t}")
    sql.ok(f"CREATE TABLE IF NOT EXISTS {deep} CLONE {t}")
    sql.ok(f"CREATE OR REPLACE TABLE {deep} CLONE {t}")
    assert sql.rows(f"SELECT sum(id) AS s FROM {deep}") == [{"s": 15}]


def test_magic_commands_in_python_and_sql_contexts(w, sql, py):
    """The notebook lines of the fidelity issue, through REST 1.2 on a real cluster."""
    r = py.ok("%pip install tabulate==0.9.0")
    assert "tabulate" in r["data"]
    assert py.ok("import tabulate\ntabulate.__version__")["data"] == "'0.9.0'"
    other = Context(w, py.cluster, Language.PYTHON)  # another context does not see it
    assert "No module named 'tabulate'" in other.error("import tabulate")
    rows = py.rows("%sql SELECT 1 AS one, 'a' AS s")
    assert rows == [{"one": 1, "s": "a"}]
    assert py.ok("_sqldf.collect()[0].one")["data"] == "1"
    md = py.ok("%md\n# Title\n*hello*")
    assert md["resultType"] == "text" and md["data"].startswith("# Title")  # (its HTML: tests/kernel)
    assert sql.ok("%python\nprint(spark.range(3).count())")["data"] == "3"
    assert "Magic command %bogus is not supported" in sql.error("%bogus")
    t = table_name("magic")
    py.ok(f"spark.range(2).write.saveAsTable('{t}')")
    assert [h["operation"] for h in py.rows(f"%sql DESCRIBE HISTORY {t}")][-1] == "CREATE TABLE"
    assert py.ok("%sh echo from-sh")["data"] == "from-sh"
    assert py.rows("%fs ls /")[0].keys() >= {"path", "name", "size"}
    # dbutils.notebook.run: another notebook in a context of its own, arguments as its widgets
    me = w.current_user.me().user_name
    child = f"/Users/{me}/{unique('child')}"
    w.workspace.mkdirs(f"/Users/{me}")
    source = "# Databricks notebook source\nn = int(dbutils.widgets.get('n'))\n\n# COMMAND ----------\n\ndbutils.notebook.exit(str(n + 1))\n"
    w.workspace.import_(path=child, format=ws.ImportFormat.SOURCE, language=ws.Language.PYTHON,
                        content=base64.b64encode(source.encode()).decode(), overwrite=True)  # fmt: skip
    assert py.ok(f"dbutils.notebook.run('{child}', 120, {{'n': 41}})")["data"] == "'42'"
    assert "NameError" in py.error("n")
