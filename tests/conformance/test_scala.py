"""Scala execution contexts (seed 002): each context is its own Spark Connect Scala REPL
(Ammonite) with its own Spark session on the cluster's engine; values persist across
commands, output and expression values come back as text, display(df) and SQL as tables,
compile and runtime errors as errors, cancel interrupts and keeps the context's values."""

from __future__ import annotations

import shutil
import time

import pytest
from databricks.sdk.service.compute import CommandStatus, ContextStatus, Language, State

from kiln_helpers import all_procs, unique, wait_for

WAIT = __import__("datetime").timedelta(seconds=900)  # the first context installs the REPL


@pytest.fixture(scope="module")
def scala_cluster(kiln, w):
    if not (shutil.which("java") and shutil.which("javac")):
        pytest.skip("no JDK on this host (.ci/run installs openjdk-17-jdk-headless)")
    c = w.clusters.create_and_wait(cluster_name=unique("scala"), spark_version="16.4.x-scala2.12", num_workers=0)
    assert c.state == State.RUNNING
    yield kiln.track(c.cluster_id)
    w.clusters.permanent_delete(c.cluster_id)


def run(w, cluster, ctx, code, language=Language.SCALA):
    return w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx, language=language, command=code,
                                                timeout=WAIT)


def test_scala_contexts_run_the_seeds_commands(w, scala_cluster):
    cluster = scala_cluster
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.SCALA, timeout=WAIT)
    assert ctx.status == ContextStatus.RUNNING
    # seed 002: a value, then a command that uses it
    assert run(w, cluster, ctx.id, "val x = 21").results.data == "x: Int = 21"
    r = run(w, cluster, ctx.id, "println(x * 2)")
    assert r.status == CommandStatus.FINISHED and r.results.data == "42", r.results.as_dict()
    assert run(w, cluster, ctx.id, "spark.range(5).count()").results.data.endswith("Long = 5L")
    # display(df) and SQL come back as tables
    r = run(w, cluster, ctx.id, 'display(spark.range(3).withColumn("sq", col("id") * col("id")))')
    assert r.results.result_type.value == "table" and r.results.data == [[0, 0], [1, 1], [2, 4]], r.results.as_dict()
    assert [c["name"] for c in r.results.schema] == ["id", "sq"]
    r = run(w, cluster, ctx.id, "SELECT 1 AS a, 'x' AS b", Language.SQL)
    assert r.results.result_type.value == "table" and r.results.data == [[1, "x"]], r.results.as_dict()
    # a Delta table written from Scala is a Unity Catalog table like any other
    table = f"main.default.{unique('scala').replace('-', '_')}"
    run(w, cluster, ctx.id, f'spark.range(4).write.mode("overwrite").saveAsTable("{table}")')
    assert run(w, cluster, ctx.id, f'spark.table("{table}").count()').results.data.endswith("Long = 4L")
    assert w.tables.get(table).data_source_format.value == "DELTA"
    # the seed's SparkContext call: Spark Connect has none, and the error says so
    r = run(w, cluster, ctx.id, "sc.parallelize(1 to 10).collect()")
    assert r.status == CommandStatus.ERROR and r.results.result_type.value == "error", r.results.as_dict()
    assert "no SparkContext" in r.results.summary and "not found: value sc" in r.results.cause
    # compile and runtime errors
    r = run(w, cluster, ctx.id, "val y = undefinedThing + 1")
    assert r.results.result_type.value == "error" and "not found: value undefinedThing" in r.results.cause
    r = run(w, cluster, ctx.id, "val = 3")  # the REPL's own parse error
    assert r.status == CommandStatus.ERROR and "expected" in r.results.summary, r.results.as_dict()
    r = run(w, cluster, ctx.id, "val z = {")  # the REPL would wait for more: Kiln refuses it
    assert r.status == CommandStatus.ERROR and "Incomplete command" in r.results.summary, r.results.as_dict()
    r = run(w, cluster, ctx.id, 'throw new RuntimeException("boom")')
    assert r.results.result_type.value == "error" and "java.lang.RuntimeException: boom" in r.results.summary
    # Scala UDFs cannot run on the engine: a clear error
    r = run(w, cluster, ctx.id, 'spark.udf.register("plus1", (v: Long) => v + 1)')
    assert r.results.result_type.value == "error" and "Scala UDFs" in r.results.summary, r.results.as_dict()
    # cancel interrupts the running command; the context keeps its values
    waiter = w.command_execution.execute(cluster_id=cluster, context_id=ctx.id, language=Language.SCALA,
                                         command='spark.range(0, 5000000000L).selectExpr("sum(id * id)").collect()')
    cid = waiter.response.id
    deadline = time.time() + 120
    while w.command_execution.command_status(cluster_id=cluster, context_id=ctx.id, command_id=cid).status != CommandStatus.RUNNING:
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(1)
    w.command_execution.cancel(cluster_id=cluster, context_id=ctx.id, command_id=cid)
    while (s := w.command_execution.command_status(cluster_id=cluster, context_id=ctx.id, command_id=cid)).status not in (
            CommandStatus.CANCELLED, CommandStatus.FINISHED, CommandStatus.ERROR):
        assert time.time() < deadline
        time.sleep(0.2)
    assert s.status == CommandStatus.CANCELLED, s.as_dict()
    assert run(w, cluster, ctx.id, "x").results.data.endswith("Int = 21")
    # each context is its own REPL: another context does not see x
    other = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.SCALA, timeout=WAIT)
    r = run(w, cluster, other.id, "x")
    assert r.results.result_type.value == "error" and "not found: value x" in r.results.cause
    w.command_execution.destroy(cluster_id=cluster, context_id=other.id)
    w.command_execution.destroy(cluster_id=cluster, context_id=ctx.id)
    # each REPL is a JVM that ends with its context
    wait_for(lambda: not [p for p in all_procs() if "KilnScalaRepl" in p.cmdline], 60, "the REPL JVMs to end")


def test_a_scala_context_ends_with_its_cluster(w, kiln):
    if not (shutil.which("java") and shutil.which("javac")):
        pytest.skip("no JDK on this host")
    c = w.clusters.create_and_wait(cluster_name=unique("scala-end"), spark_version="16.4.x-scala2.12", num_workers=0)
    kiln.track(c.cluster_id)
    ctx = w.command_execution.create_and_wait(cluster_id=c.cluster_id, language=Language.SCALA, timeout=WAIT)
    assert run(w, c.cluster_id, ctx.id, "val z = 1").results.data == "z: Int = 1"
    assert [p for p in all_procs() if "KilnScalaRepl" in p.cmdline]
    w.clusters.delete_and_wait(c.cluster_id)
    status = w.command_execution.context_status(cluster_id=c.cluster_id, context_id=ctx.id).status
    assert status == ContextStatus.ERROR, status
    wait_for(lambda: not [p for p in all_procs() if "KilnScalaRepl" in p.cmdline], 60, "the REPL JVM to end")
    w.clusters.permanent_delete(c.cluster_id)
