"""Managed tables on an object-store data root (issue 26 part 1): with `[storage] root = "s3://…"` (moto),
a MANAGED table's location is `s3://<bucket>/<prefix>/warehouse/<catalog>/<schema>/<id>`, the engine
writes its Delta files there, and what Kiln does with a table's files itself goes through `object_store`:
its Delta log (DESCRIBE HISTORY/DETAIL, its own commits), VACUUM, RESTORE, CLONE, OPTIMIZE and DROP.
Nothing of a table is written to the local shared tree."""

from __future__ import annotations

import datetime
import json

import pytest
from databricks.sdk.service.compute import Language

from test_object_storage import BUCKET, PREFIX, kiln, moto, s3, w  # noqa: F401  (fixtures)
from test_volumes import cluster, run  # noqa: F401

WAREHOUSE = f"{PREFIX}/warehouse"


def keys(s3, prefix: str) -> list[str]:
    out, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, **kw)
        out += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


@pytest.fixture()
def ctx(w, cluster):
    c = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                            timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    yield c
    w.command_execution.destroy(cluster_id=cluster, context_id=c)


def sql(w, cluster, ctx, text):
    return run(w, cluster, ctx, text, Language.SQL)


def rows(w, cluster, ctx, query) -> list[dict]:
    """A statement's rows as dicts (the utilities' results read through Spark)."""
    code = f"import json\nprint(json.dumps([r.asDict(recursive=True) for r in spark.sql({query!r}).collect()], default=str))"
    return json.loads(run(w, cluster, ctx, code).strip().splitlines()[-1])


def location(w, name: str) -> str:
    return w.tables.get(name).storage_location


def test_a_managed_table_lives_in_the_bucket(kiln, w, s3, cluster, ctx):
    name = "main.default.s3_events"
    run(w, cluster, ctx, f"spark.range(0, 1000, 1, 4).selectExpr('id', 'id % 3 AS k').write.saveAsTable('{name}')")
    loc = location(w, name)
    assert loc.startswith(f"s3://{BUCKET}/{WAREHOUSE}/main/default/"), loc
    table_prefix = loc.removeprefix(f"s3://{BUCKET}/") + "/"
    stored = keys(s3, table_prefix)
    assert f"{table_prefix}_delta_log/00000000000000000000.json" in stored, stored
    assert any(k.endswith(".parquet") for k in stored), stored
    # the local shared tree holds no table files
    local = kiln.shared_dir / "warehouse"
    assert not [p for p in local.rglob("*") if p.is_file()] if local.exists() else True
    # appends, an in-place overwrite and reads from SQL
    run(w, cluster, ctx, f"spark.range(1000, 1500).selectExpr('id', 'id % 3 AS k').write.mode('append').saveAsTable('{name}')")
    assert sql(w, cluster, ctx, f"SELECT count(*), sum(k) FROM {name}") == [[1500, sum(i % 3 for i in range(1500))]]
    run(w, cluster, ctx, f"spark.range(0, 10).selectExpr('id', 'id % 3 AS k').write.mode('overwrite').saveAsTable('{name}')")
    assert sql(w, cluster, ctx, f"SELECT count(*) FROM {name}") == [[10]]
    assert location(w, name) == loc  # a new version of the same table
    history = rows(w, cluster, ctx, f"DESCRIBE HISTORY {name}")
    # CREATE, the first rows, the append and the overwrite
    assert sorted(h["version"] for h in history) == [0, 1, 2, 3], history
    detail = rows(w, cluster, ctx, f"DESCRIBE DETAIL {name}")[0]
    assert detail["location"] == loc and detail["numFiles"] >= 1, detail


def test_kilns_own_commits_go_to_the_bucket(w, s3, cluster, ctx):
    name = "main.default.s3_props"
    run(w, cluster, ctx, f"spark.range(5).write.saveAsTable('{name}')")
    rows(w, cluster, ctx, f"ALTER TABLE {name} SET TBLPROPERTIES ('kiln.test' = 'yes')")
    props = {r["key"]: r["value"] for r in rows(w, cluster, ctx, f"SHOW TBLPROPERTIES {name}")}
    assert props.get("kiln.test") == "yes", props
    table_prefix = location(w, name).removeprefix(f"s3://{BUCKET}/") + "/"
    logged = sorted(k for k in keys(s3, f"{table_prefix}_delta_log/") if k.endswith(".json") and "_staged" not in k)
    body = s3.get_object(Bucket=BUCKET, Key=logged[-1])["Body"].read()
    assert b"kiln.test" in body and b"Kiln/" in body, body
    assert sql(w, cluster, ctx, f"SELECT count(*) FROM {name}") == [[5]]


def test_optimize_vacuum_restore_and_clone_on_the_bucket(w, s3, cluster, ctx):
    name = "main.default.s3_maint"
    for i in range(4):
        run(w, cluster, ctx, f"spark.range({i * 100}, {(i + 1) * 100}).write.mode('append').saveAsTable('{name}')")
    table_prefix = location(w, name).removeprefix(f"s3://{BUCKET}/") + "/"
    before = [k for k in keys(s3, table_prefix) if k.endswith(".parquet")]
    assert len(before) >= 4, before
    optimized = rows(w, cluster, ctx, f"OPTIMIZE {name}")[0]["metrics"]
    assert optimized["numFilesRemoved"] >= 4 and optimized["numFilesAdded"] == 1, optimized
    assert sql(w, cluster, ctx, f"SELECT count(*), sum(id) FROM {name}") == [[400, sum(range(400))]]
    assert not [k for k in keys(s3, table_prefix) if "_kiln_optimize_" in k]
    # VACUUM with no retention deletes the compacted files from the bucket
    run(w, cluster, ctx, "spark.conf.set('spark.databricks.delta.retentionDurationCheck.enabled', 'false')")
    dry = [r["path"] for r in rows(w, cluster, ctx, f"VACUUM {name} RETAIN 0 HOURS DRY RUN")]
    assert len(dry) == len(before) and all(p.startswith(f"s3://{BUCKET}/{table_prefix}") for p in dry), dry
    rows(w, cluster, ctx, f"VACUUM {name} RETAIN 0 HOURS")
    after = [k for k in keys(s3, table_prefix) if k.endswith(".parquet")]
    assert len(after) == 1 and not set(after) & set(before), after
    assert sql(w, cluster, ctx, f"SELECT count(*) FROM {name}") == [[400]]
    # RESTORE to a version whose files VACUUM deleted is refused; to the latest is fine
    with pytest.raises(AssertionError, match="deleted by VACUUM"):
        rows(w, cluster, ctx, f"RESTORE TABLE {name} TO VERSION AS OF 1")
    run(w, cluster, ctx, f"spark.range(400, 450).write.mode('append').saveAsTable('{name}')")
    latest = max(h["version"] for h in rows(w, cluster, ctx, f"DESCRIBE HISTORY {name}"))
    rows(w, cluster, ctx, f"RESTORE TABLE {name} TO VERSION AS OF {latest - 1}")
    assert sql(w, cluster, ctx, f"SELECT count(*) FROM {name}") == [[400]]
    # deep and shallow clones are new tables in the bucket with their own copies
    for kind in ("DEEP", "SHALLOW"):
        clone = f"main.default.s3_clone_{kind.lower()}"
        rows(w, cluster, ctx, f"CREATE TABLE {clone} {kind} CLONE {name}")
        assert sql(w, cluster, ctx, f"SELECT count(*), sum(id) FROM {clone}") == [[400, sum(range(400))]]
        clone_prefix = location(w, clone).removeprefix(f"s3://{BUCKET}/") + "/"
        assert clone_prefix != table_prefix
        assert [k for k in keys(s3, clone_prefix) if k.endswith(".parquet")]


def test_drop_deletes_the_tables_objects(w, s3, cluster, ctx):
    name = "main.default.s3_dropped"
    keep = "main.default.s3_dropped_not"
    run(w, cluster, ctx, f"spark.range(5).write.saveAsTable('{name}')\nspark.range(5).write.saveAsTable('{keep}')")
    table_prefix = location(w, name).removeprefix(f"s3://{BUCKET}/") + "/"
    kept_prefix = location(w, keep).removeprefix(f"s3://{BUCKET}/") + "/"
    assert keys(s3, table_prefix)
    rows(w, cluster, ctx, f"DROP TABLE {name}")
    assert keys(s3, table_prefix) == []
    assert keys(s3, kept_prefix)
    assert sql(w, cluster, ctx, f"SELECT count(*) FROM {keep}") == [[5]]


def source_pipeline(w, source: str):
    """A development pipeline over `source`: a materialized view `by_k` (counts per `k`) and a
    streaming table `raw` (its rows). Returns its id, its target schema and a function that runs
    one update to COMPLETED."""
    import base64

    from databricks.sdk.service.pipelines import NotebookLibrary, PipelineLibrary
    from databricks.sdk.service.workspace import ImportFormat, Language as NbLanguage

    from kiln_helpers import unique, wait_for

    path = f"/Users/admin/{unique('s3-dlt')}/notebook"
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    text = (f"CREATE MATERIALIZED VIEW by_k AS SELECT k, count(*) AS n FROM {source} GROUP BY k;\n"
            f"CREATE STREAMING TABLE raw AS SELECT * FROM STREAM({source});")  # fmt: skip
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=NbLanguage.SQL,
                        content=base64.b64encode(text.encode()).decode(), overwrite=True)  # fmt: skip
    target = unique("s3p").replace("-", "_")
    pid = w.pipelines.create(name=unique("s3-pipeline"), target=target, development=True,
                             libraries=[PipelineLibrary(notebook=NotebookLibrary(path=path))]).pipeline_id  # fmt: skip

    def update():
        u = w.pipelines.start_update(pid).update_id

        def done():
            got = w.pipelines.get_update(pipeline_id=pid, update_id=u).update
            return got if got.state.value in ("COMPLETED", "FAILED", "CANCELED") else None

        got = wait_for(done, 300, "the pipeline update", 0.5)
        assert got.state.value == "COMPLETED", [str(e.error)[:600] for e in w.pipelines.list_pipeline_events(pipeline_id=pid) if e.error][:2]

    return pid, target, update


def test_a_pipeline_reads_and_writes_managed_tables_in_the_bucket(w, s3, cluster, ctx):
    source = "main.default.s3_pipeline_source"
    run(w, cluster, ctx, f"spark.range(0, 90).selectExpr('id', 'id % 3 AS k').write.saveAsTable('{source}')")
    pid, target, update = source_pipeline(w, source)
    update()
    assert sorted(sql(w, cluster, ctx, f"SELECT k, n FROM main.{target}.by_k")) == [[0, 30], [1, 30], [2, 30]]
    assert sql(w, cluster, ctx, f"SELECT count(*) FROM main.{target}.raw") == [[90]]
    for t in ("by_k", "raw"):
        assert location(w, f"main.{target}.{t}").startswith(f"s3://{BUCKET}/{WAREHOUSE}/")
    # a second update reads only what was appended since (the stream's offsets are the log's versions)
    run(w, cluster, ctx, f"spark.range(90, 120).selectExpr('id', 'id % 3 AS k').write.mode('append').saveAsTable('{source}')")
    update()
    assert sql(w, cluster, ctx, f"SELECT count(*), count(DISTINCT id) FROM main.{target}.raw") == [[120, 120]]
    assert sorted(sql(w, cluster, ctx, f"SELECT k, n FROM main.{target}.by_k")) == [[0, 40], [1, 40], [2, 40]]
    w.pipelines.delete(pid)


def test_a_table_update_trigger_watches_a_table_in_the_bucket(w, cluster, ctx):
    """The trigger reads the table's Delta log through object_store (from the triggers' own thread)."""
    import time

    from databricks.sdk.service import jobs

    from kiln_helpers import unique, wait_for

    table = "main.default.s3_watched"
    run(w, cluster, ctx, f"spark.range(3).write.saveAsTable('{table}')")
    cond = {"op": "EQUAL_TO", "left": "{{job.trigger.type}}", "right": "TABLE"}
    job = w.api_client.do("POST", "/api/2.2/jobs/create", body={
        "name": unique("s3table"), "tasks": [{"task_key": "t", "condition_task": cond}],
        "trigger": {"table_update": {"table_names": [table]}}})["job_id"]  # fmt: skip
    runs = lambda: list(w.jobs.list_runs(job_id=job))  # noqa: E731
    time.sleep(2.5)
    assert not runs()
    run(w, cluster, ctx, f"spark.range(3, 5).write.mode('append').saveAsTable('{table}')")
    wait_for(lambda: len(runs()) == 1, 20, "a table-update run", interval=0.2)
    assert runs()[0].trigger == jobs.TriggerType.TABLE
    time.sleep(2.5)
    assert len(runs()) == 1
    w.jobs.delete(job)


def test_tables_made_before_the_root_was_set_keep_working(kiln_binary, tmp_path_factory, moto, s3):
    """A Kiln that had local managed tables is given a root: old tables stay where they are (read, appended,
    optimized, their history), new ones go to the bucket, and a deep clone copies an old table's files into
    the bucket."""
    from databricks.sdk.service.compute import State

    from conftest import base_config
    from kiln_helpers import SPARK_VERSION, KilnServer, to_toml, unique, wait_cluster_state
    from test_object_storage import KEYS

    prefix = "tenant-b/root"
    server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-before-root"), base_config()).start()
    try:
        w = server.client()
        cid = w.clusters.create_and_wait(cluster_name=unique("before"), spark_version=SPARK_VERSION,
                                         num_workers=0, autotermination_minutes=0).cluster_id  # fmt: skip
        server.track(cid)
        c = w.command_execution.create_and_wait(cluster_id=cid, language=Language.PYTHON).id
        run(w, cid, c, "spark.range(0, 100, 1, 4).write.saveAsTable('main.default.old_local')")
        old = location(w, "main.default.old_local")
        assert old.startswith("file://"), old
        server.stop()
        storage = {"root": f"s3://{BUCKET}/{prefix}", "endpoint": moto, "allow_http": True, "region": "us-east-1", **KEYS}
        server.config = {**server.config, "storage": storage}  # the same shared tree, now with a root
        server.config_path.write_text(to_toml(server.config))
        server.start()
        w = server.client()
        wait_cluster_state(w, cid, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
        c = w.command_execution.create_and_wait(cluster_id=cid, language=Language.PYTHON).id
        run(w, cid, c, "spark.range(100, 150).write.mode('append').saveAsTable('main.default.old_local')")
        assert location(w, "main.default.old_local") == old
        assert rows(w, cid, c, "SELECT count(*) AS n FROM main.default.old_local") == [{"n": 150}]
        assert rows(w, cid, c, "OPTIMIZE main.default.old_local")[0]["metrics"]["numFilesAdded"] == 1
        assert len(rows(w, cid, c, "DESCRIBE HISTORY main.default.old_local")) >= 3
        rows(w, cid, c, "CREATE TABLE main.default.old_clone DEEP CLONE main.default.old_local")
        clone = location(w, "main.default.old_clone")
        assert clone.startswith(f"s3://{BUCKET}/{prefix}/warehouse/"), clone
        assert rows(w, cid, c, "SELECT count(*) AS n, sum(id) AS s FROM main.default.old_clone") == [{"n": 150, "s": sum(range(150))}]
        assert [k for k in keys(s3, clone.removeprefix(f"s3://{BUCKET}/") + "/") if k.endswith(".parquet")]
        rows(w, cid, c, "DROP TABLE main.default.old_local")
        assert not __import__("pathlib").Path(old.removeprefix("file://")).exists()
    finally:
        server.stop()
