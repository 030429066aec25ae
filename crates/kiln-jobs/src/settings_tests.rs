//! Unit tests of job settings: defaults, the single-task shape, and refusals naming their field.
use super::*;

struct Everything;
impl Lookups for Everything {
    fn cluster_exists(&self, id: &str) -> bool {
        id == "c1"
    }
    fn pipeline_exists(&self, id: &str) -> bool {
        id == "p1"
    }
    fn job_exists(&self, id: i64) -> bool {
        id == 7
    }
    fn volume_exists(&self, name: &str) -> bool {
        name == "main.default.landing"
    }
    fn table_exists(&self, name: &str) -> bool {
        name == "main.default.orders"
    }
    fn destination_exists(&self, id: &str) -> bool {
        id == "d1"
    }
    fn warehouse_exists(&self, id: &str) -> bool {
        id == "w1"
    }
}

fn check(settings: Value) -> Result<Map<String, Value>> {
    normalize(settings, &Everything)
}

#[test]
fn defaults_are_filled_and_dependencies_sorted() -> Result<()> {
    let s = check(json!({"name": "n", "tasks": [
        {"task_key": "a", "notebook_task": {"notebook_path": "/n"}, "existing_cluster_id": "c1"},
        {"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
        {"task_key": "b", "depends_on": [{"task_key": "c"}, {"task_key": "a"}],
         "notebook_task": {"notebook_path": "/n"}, "existing_cluster_id": "c1"}]}))?;
    assert_eq!(s["max_concurrent_runs"], 1);
    assert_eq!(s["email_notifications"], json!({}));
    let b = &s["tasks"][2];
    assert_eq!(b["run_if"], "ALL_SUCCESS");
    assert_eq!(b["timeout_seconds"], 0);
    assert_eq!(
        b["depends_on"],
        json!([{"task_key": "a"}, {"task_key": "c"}])
    );
    Ok(())
}

#[test]
fn bad_settings_name_their_field() {
    let cases = [
        (json!({"tasks": [{"task_key": "a"}]}), "no task type"),
        (
            json!({"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/n"}, "condition_task": {}}]}),
            "more than one",
        ),
        (
            json!({"tasks": [{"task_key": "a", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
                          {"task_key": "a", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}),
            "duplicate",
        ),
        (
            json!({"tasks": [{"task_key": "a", "depends_on": [{"task_key": "b"}], "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
                          {"task_key": "b", "depends_on": [{"task_key": "a"}], "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}),
            "cycle",
        ),
        (
            json!({"tasks": [{"task_key": "a", "depends_on": [{"task_key": "x"}], "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}),
            "unknown task x",
        ),
        (
            json!({"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/n"}, "existing_cluster_id": "nope"}]}),
            "does not exist",
        ),
        (
            json!({"tasks": [{"task_key": "a", "pipeline_task": {"pipeline_id": "nope"}}]}),
            "pipeline nope",
        ),
        (
            json!({"tasks": [{"task_key": "a", "sql_task": {"warehouse_id": "nope", "file": {"path": "/q.sql"}}}]}),
            "warehouse nope",
        ),
        (
            json!({"tasks": [{"task_key": "a", "sql_task": {"warehouse_id": "w1", "query": {"query_id": "q"}}}]}),
            "Queries API",
        ),
        (
            json!({"tasks": [{"task_key": "a", "dbt_task": {"commands": ["dbt run"]}}]}),
            "tasks.dbt_task.project_directory",
        ),
        (
            json!({"tasks": [{"task_key": "a", "dbt_task": {"commands": ["rm -rf /"], "project_directory": "/p"}}]}),
            "start with dbt",
        ),
        (json!({"max_concurrent_runs": 1001}), "max_concurrent_runs"),
        (json!({"trigger": {}}), "exactly one of"),
        (
            json!({"trigger": {"periodic": {"interval": 0, "unit": "HOURS"}}}),
            "trigger.periodic.interval",
        ),
        (
            json!({"trigger": {"file_arrival": {"url": "/Volumes/main/default/gone/"}}}),
            "volume main.default.gone does not exist",
        ),
        (
            json!({"trigger": {"file_arrival": {"url": "/Volumes/main/default/landing/", "wait_after_last_change_seconds": -1}}}),
            "trigger.file_arrival.wait_after_last_change_seconds",
        ),
        (
            json!({"trigger": {"table_update": {"table_names": ["main.default.nope"]}}}),
            "trigger.table_update.table_names",
        ),
        (
            json!({"trigger": {"table_update": {"table_names": ["main.default.orders"], "condition": "SOME"}}}),
            "trigger.table_update.condition",
        ),
        (
            json!({"tasks": [{"task_key": "a b", "condition_task": {}}]}),
            "task_key",
        ),
        (
            json!({"tasks": [{"task_key": "a", "condition_task": {"op": "LIKE", "left": "1", "right": "1"}}]}),
            "op",
        ),
    ];
    for (settings, expect) in cases {
        let err = check(settings.clone()).err();
        assert!(
            err.as_ref().is_some_and(|e| e.message.contains(expect)
                && e.code == kiln_core::ErrorCode::InvalidParameterValue),
            "{settings}: {err:?}"
        );
    }
}

#[test]
fn the_single_task_submit_shape_becomes_one_task() {
    let body = json!({"run_name": "r", "existing_cluster_id": "c1",
        "spark_python_task": {"python_file": "dbfs:/x.py"}, "timeout_seconds": 60});
    let s = single_task_settings(body.as_object().unwrap_or(&Map::new())).unwrap_or_default();
    assert_eq!(
        s["tasks"][0]["spark_python_task"]["python_file"],
        "dbfs:/x.py"
    );
    assert_eq!(s["tasks"][0]["existing_cluster_id"], "c1");
    assert_eq!(s["run_name"], "r");
}
