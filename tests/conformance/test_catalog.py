"""Tables are shared through the Unity Catalog Kiln serves: created on one
cluster, read and written on another, and still there after Kiln restarts."""

from __future__ import annotations

import os

import pytest
from databricks.sdk.errors import NotFound
from databricks.sdk.service.compute import Language, State

from kiln_helpers import unique, wait_cluster_state

SPARK_VERSION = "16.4.x-scala2.12"


@pytest.fixture(scope="module")
def lake(kiln_factory):
    """A dedicated server (its restart does not disturb other modules) and two clusters."""
    server = kiln_factory()
    w = server.client()
    a = w.clusters.create_and_wait(cluster_name=unique("lake-a"), spark_version=SPARK_VERSION, num_workers=0)
    b = w.clusters.create_and_wait(cluster_name=unique("lake-b"), spark_version=SPARK_VERSION, num_workers=0)
    return {"server": server, "w": w, "a": a.cluster_id, "b": b.cluster_id}


def run(w, cluster_id: str, language: Language, command: str):
    ctx = w.command_execution.create_and_wait(cluster_id=cluster_id, language=language)
    try:
        return w.command_execution.execute_and_wait(cluster_id=cluster_id, context_id=ctx.id, language=language, command=command)
    finally:
        w.command_execution.destroy(cluster_id=cluster_id, context_id=ctx.id)


def sql(w, cluster_id: str, command: str):
    result = run(w, cluster_id, Language.SQL, command)
    assert result.status.value == "Finished", result.results.as_dict()
    return result.results.data


def test_default_catalog_and_schema(lake):
    w = lake["w"]
    assert "main" in [c.name for c in w.catalogs.list()]
    assert "default" in [s.name for s in w.schemas.list(catalog_name="main")]
    assert w.schemas.get("main.default").full_name == "main.default"


def test_table_created_on_one_cluster_is_used_from_another(lake):
    w, a, b = lake["w"], lake["a"], lake["b"]
    sql(w, a, "CREATE TABLE shared_sales AS SELECT id, id * 10 AS amount FROM range(5)")
    assert sql(w, b, "SELECT sum(amount) AS total FROM main.default.shared_sales") == [[100]]
    sql(w, b, "INSERT INTO shared_sales VALUES (100, 1000)")
    assert sql(w, a, "SELECT count(*) FROM shared_sales") == [[6]]
    table = w.tables.get("main.default.shared_sales")
    assert table.data_source_format.value == "DELTA"
    assert table.table_type.value == "MANAGED"
    location = table.storage_location.removeprefix("file://")
    assert location.startswith(str(lake["server"].shared_dir.resolve() / "warehouse"))
    assert os.path.isdir(os.path.join(location, "_delta_log"))


def test_save_as_table_from_python_is_delta_and_listed(lake):
    w, a, b = lake["w"], lake["a"], lake["b"]
    result = run(w, a, Language.PYTHON, "spark.range(3).write.saveAsTable('people_py')\nspark.table('people_py').count()")
    assert (result.status.value, result.results.data) == ("Finished", "3")
    names = [t.name for t in w.tables.list(catalog_name="main", schema_name="default")]
    assert "people_py" in names
    assert sql(w, b, "SELECT count(*) FROM people_py") == [[3]]


def test_schemas_created_in_sql_are_in_the_catalog(lake):
    w, a, b = lake["w"], lake["a"], lake["b"]
    sql(w, a, "CREATE SCHEMA analytics")
    sql(w, a, "CREATE TABLE analytics.events AS SELECT 1 AS id")
    assert "analytics" in [s.name for s in w.schemas.list(catalog_name="main")]
    assert [t.full_name for t in w.tables.list(catalog_name="main", schema_name="analytics")] == ["main.analytics.events"]
    assert sql(w, b, "SELECT id FROM main.analytics.events") == [[1]]


def test_drop_table_removes_its_data(lake):
    w, a, b = lake["w"], lake["a"], lake["b"]
    sql(w, a, "CREATE TABLE short_lived AS SELECT 1 AS x")
    location = w.tables.get("main.default.short_lived").storage_location.removeprefix("file://")
    assert os.path.isdir(location)
    sql(w, b, "DROP TABLE short_lived")
    assert not os.path.exists(location)
    with pytest.raises(NotFound):
        w.tables.get("main.default.short_lived")
    missing = run(w, a, Language.SQL, "SELECT * FROM short_lived")
    assert missing.status.value == "Error"


def test_missing_objects_are_not_found(lake):
    w = lake["w"]
    with pytest.raises(NotFound):
        w.tables.get("main.default.no_such_table")
    with pytest.raises(NotFound):
        w.schemas.get("main.no_such_schema")
    response = lake["server"].http(token=None).get(lake["server"].url("/api/2.1/unity-catalog/catalogs"))
    assert response.status_code == 401


def test_tables_survive_a_kiln_restart(lake):
    server, w, a = lake["server"], lake["w"], lake["a"]
    sql(w, a, "CREATE TABLE durable AS SELECT id FROM range(4)")
    server.kill9()
    server.restart()
    w = server.client()
    wait_cluster_state(w, a, State.RUNNING, timeout=120)
    assert sql(w, a, "SELECT count(*) FROM durable") == [[4]]
    assert "durable" in [t.name for t in w.tables.list(catalog_name="main", schema_name="default")]
    lake["w"] = w
