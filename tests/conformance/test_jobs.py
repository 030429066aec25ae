"""Jobs (Workflows) through the SDK and Airflow-shaped raw requests: multi-task runs on real
engines (notebooks with widgets and task values, a condition, a Python file on a job cluster),
failures and retries, the single-task submit shape, bad settings, permissions, cancel, queueing
and a Quartz schedule."""

from __future__ import annotations

import base64
import io
import time
from datetime import timedelta

import pytest
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service import jobs
from databricks.sdk.service.iam import AccessControlRequest, PermissionLevel
from databricks.sdk.service.workspace import ImportFormat, Language

from kiln_helpers import assert_error, non_admin, unique, wait_for

SPARK = "16.4.x-scala2.12"
WAIT = timedelta(minutes=6)


@pytest.fixture(scope="module")
def env(kiln_factory):
    server = kiln_factory()
    w = server.client()
    cluster = w.clusters.create_and_wait(cluster_name=unique("jobs"), spark_version=SPARK, num_workers=0)
    home = f"/Users/{w.current_user.me().user_name}/{unique('jobs')}"
    w.workspace.mkdirs(home)
    return {"server": server, "w": w, "cluster": cluster.cluster_id, "home": home}


def put_notebook(w, path: str, source: str):
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=Language.PYTHON,
                        content=base64.b64encode(source.encode()).decode(), overwrite=True)


def put_file(w, path: str, text: str):
    w.workspace.import_(path=path, format=ImportFormat.AUTO, content=base64.b64encode(text.encode()).decode(),
                        overwrite=True)


def put_dbfs(server, path: str, text: str):
    local = server.shared_dir / "dbfs" / path.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text)


def create(w, **settings) -> int:
    body = dict(settings)
    return w.api_client.do("POST", "/api/2.2/jobs/create", body=body)["job_id"]


def task_of(run: jobs.Run, key: str) -> jobs.RunTask:
    return next(t for t in run.tasks if t.task_key == key)


def explain(w, run: jobs.Run) -> str:
    """Each task's state and error, for a failed assertion's message."""
    lines = []
    for t in run.tasks or []:
        out = w.jobs.get_run_output(t.run_id)
        lines.append(f"{t.task_key}: {t.state.result_state} {t.state.state_message!r} error={out.error!r}")
    return "\n".join(lines)


def test_a_dag_with_widgets_task_values_a_condition_and_a_python_file(env):
    w, home = env["w"], env["home"]
    put_notebook(w, f"{home}/ingest", """# Databricks notebook source
dbutils.widgets.text("who", "nobody")
n = spark.range(3).count()
dbutils.jobs.taskValues.set("rows", int(n))
# COMMAND ----------
dbutils.notebook.exit("hello " + dbutils.widgets.get("who"))
""")
    put_file(w, f"{home}/report.py", """import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("argv", sys.argv[1:], "count", spark.range(int(sys.argv[1])).count())
""")
    job_id = create(
        w, name=unique("dag"),
        parameters=[{"name": "who", "default": "kiln"}],
        job_clusters=[{"job_cluster_key": "main", "new_cluster": {"spark_version": SPARK, "num_workers": 0}}],
        tasks=[
            {"task_key": "ingest", "job_cluster_key": "main", "notebook_task": {"notebook_path": f"{home}/ingest"}},
            {"task_key": "enough", "depends_on": [{"task_key": "ingest"}],
             "condition_task": {"op": "GREATER_THAN", "left": "{{tasks.ingest.values.rows}}", "right": "2"}},
            {"task_key": "report", "depends_on": [{"task_key": "enough", "outcome": "true"}], "job_cluster_key": "main",
             "spark_python_task": {"python_file": f"{home}/report.py", "parameters": ["{{tasks.ingest.values.rows}}", "x"]}},
            {"task_key": "alert", "depends_on": [{"task_key": "enough", "outcome": "false"}],
             "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
        ],
    )
    job = w.jobs.get(job_id)
    assert job.creator_user_name and job.settings.max_concurrent_runs == 1
    report = next(t for t in job.settings.tasks if t.task_key == "report")
    assert report.run_if == jobs.RunIf.ALL_SUCCESS and report.timeout_seconds == 0

    run = w.jobs.run_now_and_wait(job_id=job_id, job_parameters={"who": "world"}, timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, explain(w, run)
    assert task_of(run, "alert").state.result_state == jobs.RunResultState.EXCLUDED
    assert task_of(run, "enough").state.result_state == jobs.RunResultState.SUCCESS
    ingest = w.jobs.get_run_output(task_of(run, "ingest").run_id)
    assert ingest.notebook_output.result == "hello world"
    report_out = w.jobs.get_run_output(task_of(run, "report").run_id)
    assert "argv ['3', 'x'] count 3" in report_out.logs, report_out.logs
    # the job cluster was made for this run and ends with it
    cluster_id = task_of(run, "ingest").cluster_instance.cluster_id
    assert cluster_id == task_of(run, "report").cluster_instance.cluster_id
    wait_for(lambda: w.clusters.get(cluster_id).state.value == "TERMINATED", 120, "job cluster terminated")
    assert w.clusters.get(cluster_id).cluster_source.value == "JOB"
    runs = list(w.jobs.list_runs(job_id=job_id))
    assert [r.run_id for r in runs] == [run.run_id] and runs[0].trigger == jobs.TriggerType.ONE_TIME


def test_failures_retries_and_error_traces(env):
    w, server, cluster = env["w"], env["server"], env["cluster"]
    marker = unique("marker")
    put_dbfs(server, f"/jobs/{marker}.py", f"""flag = "dbfs:/{marker}.flag"
try:
    dbutils.fs.head(flag)
except Exception:
    dbutils.fs.put(flag, "x")
    raise RuntimeError("first attempt fails")
print("second attempt works")
""")
    put_dbfs(server, "/jobs/boom.py", "def f():\n    raise ValueError('boom')\nf()\n")
    run = w.api_client.do("POST", "/api/2.2/jobs/runs/submit", body={
        "run_name": unique("fail"),
        "tasks": [
            {"task_key": "flaky", "existing_cluster_id": cluster, "max_retries": 1,
             "spark_python_task": {"python_file": f"dbfs:/jobs/{marker}.py"}},
            {"task_key": "boom", "existing_cluster_id": cluster, "spark_python_task": {"python_file": "dbfs:/jobs/boom.py"}},
            {"task_key": "after", "depends_on": [{"task_key": "boom"}], "condition_task": {"op": "EQUAL_TO", "left": "a", "right": "a"}},
            {"task_key": "cleanup", "depends_on": [{"task_key": "boom"}], "run_if": "ALL_DONE",
             "condition_task": {"op": "EQUAL_TO", "left": "a", "right": "a"}},
        ],
    })
    done = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=run["run_id"], timeout=WAIT)
    assert done.state.result_state == jobs.RunResultState.FAILED
    assert done.state.state_message == "Workload failed, see run output for details"
    flaky = task_of(done, "flaky")
    assert flaky.state.result_state == jobs.RunResultState.SUCCESS and flaky.attempt_number == 1
    assert task_of(done, "after").state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    assert task_of(done, "cleanup").state.result_state == jobs.RunResultState.SUCCESS
    out = w.jobs.get_run_output(task_of(done, "boom").run_id)
    assert out.error == "ValueError: boom", out.error
    assert "Traceback" in out.error_trace and "raise ValueError('boom')" in out.error_trace

    # repair: the fixed task and what depends on it run again; the rest keep their results
    put_dbfs(server, "/jobs/boom.py", "print('fixed')\n")
    flaky_run = task_of(done, "flaky").run_id
    repair_id = w.jobs.repair_run(run_id=run["run_id"], rerun_all_failed_tasks=True,
                                  rerun_dependent_tasks=True).response.repair_id
    repaired = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=run["run_id"], timeout=WAIT)
    stale = server.http().post(server.url("/api/2.2/jobs/runs/repair"),
                               json={"run_id": run["run_id"], "rerun_tasks": ["boom"], "latest_repair_id": 1})
    assert "latest_repair_id" in assert_error(stale, 400, "INVALID_PARAMETER_VALUE")["message"]
    assert repaired.state.result_state == jobs.RunResultState.SUCCESS, explain(w, repaired)
    assert task_of(repaired, "flaky").run_id == flaky_run
    assert task_of(repaired, "boom").run_id != task_of(done, "boom").run_id
    assert task_of(repaired, "after").state.result_state == jobs.RunResultState.SUCCESS
    assert [h.type.value for h in repaired.repair_history] == ["ORIGINAL", "REPAIR"]
    assert repaired.repair_history[1].id == repair_id


def test_the_airflow_single_task_submit_shape(env):
    server, cluster = env["server"], env["cluster"]
    http = server.http()
    put_dbfs(server, "/jobs/hello.py", "import sys\nprint('hello', *sys.argv[1:])\n")
    token = unique("airflow")
    body = {"run_name": "airflow", "existing_cluster_id": cluster, "idempotency_token": token, "timeout_seconds": 600,
            "spark_python_task": {"python_file": "dbfs:/jobs/hello.py", "parameters": ["from", "airflow"]}}
    first = http.post(server.url("/api/2.1/jobs/runs/submit"), json=body)
    assert first.status_code == 200, first.text
    again = http.post(server.url("/api/2.1/jobs/runs/submit"), json=body)
    assert again.json()["run_id"] == first.json()["run_id"]
    run_id = first.json()["run_id"]

    def ended():
        r = http.get(server.url("/api/2.1/jobs/runs/get"), params={"run_id": run_id}).json()
        return r if r["state"]["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR") else None
    run = wait_for(ended, 360, "the submitted run", interval=0.2)
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    assert run["run_page_url"] and run["tasks"][0]["run_id"]
    out = http.get(server.url("/api/2.1/jobs/runs/get-output"), params={"run_id": run_id}).json()
    assert "hello from airflow" in out["logs"], out


def test_bad_settings_are_refused_and_change_nothing(env):
    server, w, cluster = env["server"], env["w"], env["cluster"]
    before = len(list(w.jobs.list()))
    cond = {"op": "EQUAL_TO", "left": "1", "right": "1"}
    bad = [
        ({"tasks": [{"task_key": "a", "depends_on": [{"task_key": "b"}], "condition_task": cond},
                    {"task_key": "b", "depends_on": [{"task_key": "a"}], "condition_task": cond}]}, "cycle"),
        ({"tasks": [{"task_key": "a", "condition_task": cond}, {"task_key": "a", "condition_task": cond}]}, "duplicate"),
        ({"tasks": [{"task_key": "a"}]}, "task type"),
        ({"tasks": [{"task_key": "a", "existing_cluster_id": "0000-nope", "notebook_task": {"notebook_path": "/x"}}]}, "0000-nope"),
        ({"max_concurrent_runs": 1001}, "max_concurrent_runs"),
        ({"schedule": {"quartz_cron_expression": "0 0 * * *", "timezone_id": "UTC"}}, "quartz_cron_expression"),
        ({"tasks": [{"task_key": "a", "sql_task": {"query": {"query_id": "1"}}}]}, "sql_task"),
    ]
    for settings, words in bad:
        r = server.http().post(server.url("/api/2.2/jobs/create"), json={"name": unique("bad"), **settings})
        body = assert_error(r, 400, "INVALID_PARAMETER_VALUE")
        assert words in body["message"], body
    assert len(list(w.jobs.list())) == before
    job_id = create(w, name=unique("ok"), tasks=[{"task_key": "a", "condition_task": cond}])
    r = server.http().post(server.url("/api/2.2/jobs/reset"),
                           json={"job_id": job_id, "new_settings": {"tasks": [{"task_key": "a"}]}})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert w.jobs.get(job_id).settings.tasks[0].condition_task.op == jobs.ConditionTaskOp.EQUAL_TO
    r = server.http().get(server.url("/api/2.2/jobs/get"), params={"job_id": 424242})
    assert r.status_code in (400, 404) and r.json()["error_code"] in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def test_permissions_level_by_level_cancel_and_queue(env):
    server, w, cluster, home = env["server"], env["w"], env["cluster"], env["home"]
    put_notebook(w, f"{home}/slow", "# Databricks notebook source\nimport time\ntime.sleep(120)\n")
    job_id = create(w, name=unique("slow"), max_concurrent_runs=1, queue={"enabled": True},
                    tasks=[{"task_key": "slow", "existing_cluster_id": cluster, "notebook_task": {"notebook_path": f"{home}/slow"}}])
    other = non_admin(server, w, "jobs")
    with pytest.raises(PermissionDenied):
        other["w"].jobs.get(job_id)
    assert job_id not in [j.job_id for j in other["w"].jobs.list()]
    acl = lambda level: w.permissions.update("jobs", str(job_id), access_control_list=[
        AccessControlRequest(user_name=other["name"], permission_level=level)])
    acl(PermissionLevel.CAN_VIEW)
    assert other["w"].jobs.get(job_id).job_id == job_id
    with pytest.raises(PermissionDenied):
        other["w"].jobs.run_now(job_id=job_id)
    acl(PermissionLevel.CAN_MANAGE_RUN)
    w.permissions.update("clusters", cluster, access_control_list=[
        AccessControlRequest(user_name=other["name"], permission_level=PermissionLevel.CAN_ATTACH_TO)])
    w.permissions.update("directories", str(w.workspace.get_status(home).object_id), access_control_list=[
        AccessControlRequest(user_name=other["name"], permission_level=PermissionLevel.CAN_READ)])
    first = other["w"].jobs.run_now(job_id=job_id).run_id
    wait_for(lambda: task_of(w.jobs.get_run(first), "slow").state.life_cycle_state == jobs.RunLifeCycleState.RUNNING,
             300, "the slow task running")
    second = w.jobs.run_now(job_id=job_id).run_id
    assert w.jobs.get_run(second).state.life_cycle_state == jobs.RunLifeCycleState.QUEUED
    with pytest.raises(PermissionDenied):
        other["w"].jobs.delete(job_id)
    started = time.monotonic()
    other["w"].jobs.cancel_run(first)
    ended = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=first, timeout=WAIT)
    assert ended.state.result_state == jobs.RunResultState.CANCELED
    assert time.monotonic() - started < 60
    # the queued run starts when the first ends; cancel it too
    wait_for(lambda: w.jobs.get_run(second).state.life_cycle_state != jobs.RunLifeCycleState.QUEUED, 60, "dequeued")
    w.jobs.cancel_all_runs(job_id=job_id)
    assert w.jobs.wait_get_run_job_terminated_or_skipped(run_id=second, timeout=WAIT).state.result_state \
        == jobs.RunResultState.CANCELED
    # without a queue, a run over the limit is skipped
    w.jobs.update(job_id, new_settings=jobs.JobSettings(queue=jobs.QueueSettings(enabled=False)))
    third = w.jobs.run_now(job_id=job_id).run_id
    wait_for(lambda: task_of(w.jobs.get_run(third), "slow").state.life_cycle_state == jobs.RunLifeCycleState.RUNNING,
             300, "the third run running")
    skipped = w.jobs.get_run(w.jobs.run_now(job_id=job_id).run_id)
    assert skipped.state.life_cycle_state == jobs.RunLifeCycleState.SKIPPED
    assert skipped.state.result_state == jobs.RunResultState.MAXIMUM_CONCURRENT_RUNS_REACHED
    w.jobs.cancel_run(third)
    w.jobs.wait_get_run_job_terminated_or_skipped(run_id=third, timeout=WAIT)


def test_a_quartz_schedule_fires_each_instant_once_and_pauses(env):
    w = env["w"]
    job_id = create(w, name=unique("cron"),
                    schedule={"quartz_cron_expression": "*/3 * * * * ?", "timezone_id": "Europe/Paris"},
                    tasks=[{"task_key": "tick", "condition_task": {"op": "EQUAL_TO", "left": "{{job.trigger.type}}", "right": "PERIODIC"}}])
    runs = wait_for(lambda: (lambda rs: rs if len(rs) >= 2 else None)(list(w.jobs.list_runs(job_id=job_id, expand_tasks=True))),
                    30, "two scheduled runs", interval=0.2)
    assert all(r.trigger == jobs.TriggerType.PERIODIC for r in runs)
    starts = sorted(r.start_time for r in runs)
    assert starts[1] - starts[0] >= 2000, starts
    w.jobs.update(job_id, new_settings=jobs.JobSettings(schedule=jobs.CronSchedule(
        quartz_cron_expression="*/3 * * * * ?", timezone_id="Europe/Paris", pause_status=jobs.PauseStatus.PAUSED)))
    time.sleep(0.5)
    count = len(list(w.jobs.list_runs(job_id=job_id)))
    time.sleep(4)
    assert len(list(w.jobs.list_runs(job_id=job_id))) == count
    done = [w.jobs.wait_get_run_job_terminated_or_skipped(run_id=r.run_id, timeout=WAIT) for r in runs]
    assert all(r.state.result_state == jobs.RunResultState.SUCCESS for r in done)
    assert all(task_of(r, "tick").state.result_state == jobs.RunResultState.SUCCESS for r in done)


def test_kill_9_during_a_run_and_a_schedule(kiln_factory):
    server = kiln_factory()
    w = server.client()
    home = f"/Users/{w.current_user.me().user_name}/{unique('crash')}"
    w.workspace.mkdirs(home)
    put_notebook(w, f"{home}/slow", "# Databricks notebook source\nimport time\ntime.sleep(300)\n")
    job_id = create(w, name=unique("crash"),
                    job_clusters=[{"job_cluster_key": "c", "new_cluster": {"spark_version": SPARK, "num_workers": 0}}],
                    tasks=[{"task_key": "slow", "job_cluster_key": "c", "notebook_task": {"notebook_path": f"{home}/slow"}}])
    run_id = w.jobs.run_now(job_id=job_id).run_id
    slow = wait_for(lambda: (lambda t: t if t.cluster_instance else None)(task_of(w.jobs.get_run(run_id), "slow")),
                    300, "the slow task on its cluster", interval=0.2)
    cluster_id = slow.cluster_instance.cluster_id
    ticking = create(w, name=unique("tick"),
                     schedule={"quartz_cron_expression": "*/2 * * * * ?", "timezone_id": "UTC"},
                     tasks=[{"task_key": "t", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}])
    wait_for(lambda: list(w.jobs.list_runs(job_id=ticking)), 20, "a scheduled run", interval=0.2)
    server.restart()
    w = server.client()
    run = w.jobs.get_run(run_id)
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR, run.state
    assert task_of(run, "slow").state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
    wait_for(lambda: w.clusters.get(cluster_id).state.value == "TERMINATED", 120, "the job cluster terminated")
    # the schedule goes on after the restart, each instant once
    time.sleep(5)
    runs = list(w.jobs.list_runs(job_id=ticking))
    starts = sorted(r.start_time for r in runs)
    assert len(runs) >= 2 and all(b - a >= 1500 for a, b in zip(starts, starts[1:])), starts
    assert not [r for r in w.jobs.list_runs(job_id=ticking, active_only=True)
                if r.state.life_cycle_state == jobs.RunLifeCycleState.RUNNING and time.time() * 1000 - r.start_time > 30000]
    server.stop()


def test_for_each_and_run_job_tasks(env):
    w, cluster, home = env["w"], env["cluster"], env["home"]
    put_notebook(w, f"{home}/times10", """# Databricks notebook source
dbutils.widgets.text("n", "0")
dbutils.notebook.exit(str(int(dbutils.widgets.get("n")) * 10))
""")
    put_notebook(w, f"{home}/inputs", "# Databricks notebook source\ndbutils.jobs.taskValues.set('items', [1, 2, 3])\n")
    child = create(w, name=unique("child"), parameters=[{"name": "x", "default": "0"}],
                   tasks=[{"task_key": "check", "condition_task": {"op": "EQUAL_TO", "left": "{{job.parameters.x}}", "right": "5"}}])
    job_id = create(w, name=unique("loop"), tasks=[
        {"task_key": "inputs", "existing_cluster_id": cluster, "notebook_task": {"notebook_path": f"{home}/inputs"}},
        {"task_key": "each", "depends_on": [{"task_key": "inputs"}], "for_each_task": {
            "inputs": "{{tasks.inputs.values.items}}", "concurrency": 2,
            "task": {"task_key": "each_iteration", "existing_cluster_id": cluster,
                     "notebook_task": {"notebook_path": f"{home}/times10", "base_parameters": {"n": "{{input}}"}}}}},
        {"task_key": "child", "depends_on": [{"task_key": "each"}], "run_job_task": {"job_id": child, "job_parameters": {"x": "5"}}},
    ])
    run = w.jobs.run_now_and_wait(job_id=job_id, timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, explain(w, run)
    raw = w.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": run.run_id})
    iterations = next(t for t in raw["tasks"] if t["task_key"] == "each")["iterations"]
    assert len(iterations) == 3 and all(i["state"]["result_state"] == "SUCCESS" for i in iterations), iterations
    assert sorted(w.jobs.get_run_output(i["run_id"]).notebook_output.result for i in iterations) == ["10", "20", "30"]
    child_runs = list(w.jobs.list_runs(job_id=child))
    assert len(child_runs) == 1 and child_runs[0].trigger == jobs.TriggerType.RUN_JOB_TASK
    assert child_runs[0].state.result_state == jobs.RunResultState.SUCCESS
    bad = env["server"].http().post(env["server"].url("/api/2.2/jobs/create"), json={"name": "x", "tasks": [
        {"task_key": "e", "for_each_task": {"inputs": "[1]", "task": {"task_key": "i", "for_each_task": {"inputs": "[1]"}}}}]})
    assert "cannot nest" in assert_error(bad, 400, "INVALID_PARAMETER_VALUE")["message"]


def wheel(name: str, code: str, scripts: dict) -> bytes:
    """A minimal, valid wheel of package `name` (module `name`, console scripts)."""
    import hashlib
    import io
    import zipfile

    files = {
        f"{name}/__init__.py": code,
        f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{name}-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}-0.1.dist-info/entry_points.txt": "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items()),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-0.1.dist-info/RECORD,,")
    files[f"{name}-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return out.getvalue()


def test_a_python_wheel_task_with_its_library(env):
    w, server, cluster = env["w"], env["server"], env["cluster"]
    name = "kilnwheel" + unique("w").split("-")[1][:6]
    local = server.shared_dir / "dbfs" / "jobs" / f"{name}-0.1-py3-none-any.whl"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(wheel(name, "import sys\n\ndef main():\n    print('wheel says', *sys.argv[1:])\n",
                            {"greet": f"{name}:main"}))
    run = w.api_client.do("POST", "/api/2.2/jobs/runs/submit", body={"run_name": unique("wheel"), "tasks": [{
        "task_key": "w", "existing_cluster_id": cluster,
        "libraries": [{"whl": f"dbfs:/jobs/{name}-0.1-py3-none-any.whl"}],
        "python_wheel_task": {"package_name": name, "entry_point": "greet", "named_parameters": {"day": "sunday"}}}]})
    done = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=run["run_id"], timeout=WAIT)
    assert done.state.result_state == jobs.RunResultState.SUCCESS, explain(w, done)
    out = w.jobs.get_run_output(task_of(done, "w").run_id)
    assert "wheel says --day=sunday" in out.logs, out.logs
    statuses = w.libraries.cluster_status(cluster)
    assert any(s.status.value == "INSTALLED" for s in statuses)


def test_a_continuous_job_keeps_one_run_going_until_paused(env):
    w, server = env["w"], env["server"]
    cond = {"op": "EQUAL_TO", "left": "{{job.trigger.type}}", "right": "CONTINUOUS"}
    bad = server.http().post(server.url("/api/2.2/jobs/create"), json={
        "name": "x", "continuous": {"pause_status": "UNPAUSED"},
        "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"}, "tasks": []})
    assert "continuous" in assert_error(bad, 400, "INVALID_PARAMETER_VALUE")["message"]
    job_id = create(w, name=unique("forever"), continuous={"pause_status": "UNPAUSED"},
                    tasks=[{"task_key": "t", "condition_task": cond}])
    runs = wait_for(lambda: (lambda rs: rs if len(rs) >= 3 else None)(list(w.jobs.list_runs(job_id=job_id))),
                    30, "three continuous runs", interval=0.2)
    assert all(r.trigger.value == "CONTINUOUS" for r in runs)
    starts = sorted(r.start_time for r in runs)
    assert all(b - a >= 900 for a, b in zip(starts, starts[1:])), starts
    w.jobs.update(job_id, new_settings=jobs.JobSettings(continuous=jobs.Continuous(pause_status=jobs.PauseStatus.PAUSED)))
    wait_for(lambda: not list(w.jobs.list_runs(job_id=job_id, active_only=True)), 30, "the last run ended")
    count = len(list(w.jobs.list_runs(job_id=job_id)))
    time.sleep(2.5)
    assert len(list(w.jobs.list_runs(job_id=job_id))) == count
    done = [w.jobs.get_run(r.run_id) for r in runs]
    assert all(r.state.result_state == jobs.RunResultState.SUCCESS for r in done), [r.state for r in done]


def test_file_arrival_and_table_update_triggers(env):
    from databricks.sdk.service.catalog import VolumeType
    from databricks.sdk.service.compute import Language as CommandLanguage

    w, server, cluster = env["w"], env["server"], env["cluster"]
    schema = w.schemas.create(name=unique("trig").replace("-", "_"), catalog_name="main").name
    volume = w.volumes.create(catalog_name="main", schema_name=schema, name="landing",
                              volume_type=VolumeType.MANAGED)
    base = f"/Volumes/main/{schema}/{volume.name}"
    w.files.upload(f"{base}/in/before.csv", io.BytesIO(b"0"))  # there before the trigger: never fires it
    cond = {"op": "EQUAL_TO", "left": "{{job.trigger.type}}", "right": "FILE_ARRIVAL"}
    bad = server.http().post(server.url("/api/2.2/jobs/create"), json={
        "name": "x", "trigger": {"file_arrival": {"url": "s3://bucket/in/"}}, "tasks": []})
    assert "trigger.file_arrival.url" in assert_error(bad, 400, "INVALID_PARAMETER_VALUE")["message"]
    bad = server.http().post(server.url("/api/2.2/jobs/create"), json={
        "name": "x", "trigger": {"file_arrival": {"url": f"/Volumes/main/{schema}/nope/"}}, "tasks": []})
    assert "does not exist" in assert_error(bad, 400, "INVALID_PARAMETER_VALUE")["message"]
    files = create(w, name=unique("arrival"),
                   trigger={"file_arrival": {"url": f"{base}/in/", "wait_after_last_change_seconds": 1}},
                   tasks=[{"task_key": "t", "condition_task": cond}])
    time.sleep(2.5)
    assert not list(w.jobs.list_runs(job_id=files))
    w.files.upload(f"{base}/in/a.csv", io.BytesIO(b"1"))
    w.files.upload(f"{base}/in/sub/b.csv", io.BytesIO(b"2"))
    first = wait_for(lambda: list(w.jobs.list_runs(job_id=files)), 20, "a file-arrival run", interval=0.2)
    assert len(first) == 1 and first[0].trigger == jobs.TriggerType.FILE_ARRIVAL
    w.files.upload(f"{base}/elsewhere.csv", io.BytesIO(b"3"))  # outside the watched path
    time.sleep(3)
    assert len(list(w.jobs.list_runs(job_id=files))) == 1  # one arrival fires once
    w.files.upload(f"{base}/in/c.csv", io.BytesIO(b"4"))
    wait_for(lambda: len(list(w.jobs.list_runs(job_id=files))) == 2, 20, "a second file-arrival run", interval=0.2)
    done = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=first[0].run_id, timeout=WAIT)
    assert done.state.result_state == jobs.RunResultState.SUCCESS, explain(w, done)
    w.jobs.update(files, new_settings=jobs.JobSettings(trigger=jobs.TriggerSettings(
        file_arrival=jobs.FileArrivalTriggerConfiguration(url=f"{base}/in/"), pause_status=jobs.PauseStatus.PAUSED)))

    # a table's new Delta version fires a table-update trigger
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=CommandLanguage.PYTHON)
    table = f"main.{schema}.orders"

    def sql(text):
        r = w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx.id,
                                                 language=CommandLanguage.SQL, command=text)
        assert r.results.result_type.value != "error", r.results
    sql(f"CREATE TABLE {table} (id INT) USING delta")
    sql(f"INSERT INTO {table} VALUES (1)")
    cond = {"op": "EQUAL_TO", "left": "{{job.trigger.type}}", "right": "TABLE"}
    tables = create(w, name=unique("table"),
                    trigger={"table_update": {"table_names": [table]}},
                    tasks=[{"task_key": "t", "condition_task": cond}])
    assert w.jobs.get(tables).settings.trigger.table_update.condition.value == "ANY_UPDATED"
    time.sleep(2.5)
    assert not list(w.jobs.list_runs(job_id=tables))
    sql(f"INSERT INTO {table} VALUES (2)")
    runs = wait_for(lambda: list(w.jobs.list_runs(job_id=tables)), 20, "a table-update run", interval=0.2)
    assert runs[0].trigger == jobs.TriggerType.TABLE
    time.sleep(2.5)
    assert len(list(w.jobs.list_runs(job_id=tables))) == 1
    done = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=runs[0].run_id, timeout=WAIT)
    assert done.state.result_state == jobs.RunResultState.SUCCESS, explain(w, done)
    w.jobs.delete(tables)
    w.command_execution.destroy(cluster_id=cluster, context_id=ctx.id)


def test_timeouts_pipeline_tasks_and_notebooks_that_run_notebooks(env):
    from databricks.sdk.service.workspace import Language as NbLanguage

    w, server, cluster, home = env["w"], env["server"], env["cluster"], env["home"]
    put_notebook(w, f"{home}/greeting", "# Databricks notebook source\ndef greet(v):\n    return f'got {v}'\n")
    put_notebook(w, f"{home}/plus_one", """# Databricks notebook source
dbutils.widgets.text("n", "0")
dbutils.notebook.exit(str(int(dbutils.widgets.get("n")) + 1))
""")
    put_notebook(w, f"{home}/parent", """# Databricks notebook source
# MAGIC %run ./greeting

# COMMAND ----------

value = dbutils.notebook.run("./plus_one", 120, {"n": "41"})
dbutils.notebook.exit(greet(value))
""")
    put_notebook(w, f"{home}/sleepy", "# Databricks notebook source\nimport time\ntime.sleep(300)\n")
    dlt = f"{home}/dlt/orders"
    w.workspace.mkdirs(f"{home}/dlt")
    w.workspace.import_(path=dlt, format=ImportFormat.SOURCE, language=NbLanguage.SQL, overwrite=True,
                        content=base64.b64encode(b"CREATE OR REFRESH MATERIALIZED VIEW totals AS SELECT 42 AS total").decode())
    target = unique("jobdlt").replace("-", "_")
    r = server.http().post(server.url("/api/2.0/pipelines"), json={
        "name": unique("jobdlt"), "target": target, "libraries": [{"notebook": {"path": dlt}}]})
    assert r.status_code == 200, r.text
    pipeline_id = r.json()["pipeline_id"]
    job_id = create(w, name=unique("mixed"), tasks=[
        {"task_key": "parent", "existing_cluster_id": cluster, "notebook_task": {"notebook_path": f"{home}/parent"}},
        {"task_key": "refresh", "pipeline_task": {"pipeline_id": pipeline_id, "full_refresh": True}},
        {"task_key": "sleepy", "existing_cluster_id": cluster, "timeout_seconds": 3,
         "notebook_task": {"notebook_path": f"{home}/sleepy"}},
    ])
    started = time.time()
    run = w.jobs.run_now(job_id=job_id).run_id
    done = w.jobs.wait_get_run_job_terminated_or_skipped(run_id=run, timeout=WAIT)
    assert done.state.result_state == jobs.RunResultState.FAILED, explain(w, done)
    # %run brought greet() in; dbutils.notebook.run ran the child and returned its exit value
    parent = task_of(done, "parent")
    assert parent.state.result_state == jobs.RunResultState.SUCCESS, explain(w, done)
    assert w.jobs.get_run_output(parent.run_id).notebook_output.result == "got 42"
    # the pipeline task followed its update, started by the job
    refresh = task_of(done, "refresh")
    assert refresh.state.result_state == jobs.RunResultState.SUCCESS, explain(w, done)
    updates = w.pipelines.list_updates(pipeline_id).updates
    assert len(updates) == 1 and updates[0].cause.value == "JOB_TASK" and updates[0].full_refresh
    assert w.tables.exists(f"main.{target}.totals").table_exists
    # the sleepy task timed out: interrupted after 3 s, not 300
    sleepy = task_of(done, "sleepy")
    assert sleepy.state.result_state == jobs.RunResultState.TIMEDOUT, explain(w, done)
    assert sleepy.end_time - sleepy.start_time < 60_000 and time.time() - started < 200


def test_what_the_sdks_own_jobs_integration_tests_call(env):
    """databricks-sdk-py's tests/integration/test_jobs.py (not shipped with the package): jobs are
    listed, each job's runs summarised from run_duration/end_time/result_state, and a job is created
    on a job cluster whose version and node type come from the SDK's own selectors."""
    from databricks.sdk.service import compute

    w = env["w"]
    ran = create(w, name=unique("listed"), tasks=[{"task_key": "t", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}])
    w.jobs.run_now_and_wait(job_id=ran, timeout=WAIT)
    listed = list(w.jobs.list())
    assert ran in [j.job_id for j in listed] and all(j.settings.name for j in listed)
    for job in listed:
        for run in w.jobs.list_runs(job_id=job.job_id, expand_tasks=False):
            assert run.run_duration is not None and run.end_time is not None and run.state is not None
    cluster = jobs.JobCluster(job_cluster_key="cluster1", new_cluster=compute.ClusterSpec(
        num_workers=2, spark_version=w.clusters.select_spark_version(),
        node_type_id=w.clusters.select_node_type(local_disk=True)))
    task = jobs.Task(task_key="task1", job_cluster_key="cluster1",
                     python_wheel_task=jobs.PythonWheelTask(entry_point="test", package_name="deepspeed"))
    created = w.jobs.create(job_clusters=[cluster], tasks=[task])
    got = w.jobs.get(created.job_id)
    assert got.settings.tasks[0].python_wheel_task.package_name == "deepspeed"
    assert got.settings.job_clusters[0].new_cluster.num_workers == 2
    w.jobs.delete(created.job_id)


class Receiver:
    """A local webhook receiver: records each POST; answers 500 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0):
        import http.server
        import json
        import threading

        self.got: list[dict] = []
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.got.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                  "body": json.loads(body or b"{}")})
                failing = len(outer.got) <= outer.fail_first
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self, path: str) -> list[str]:
        return [g["body"].get("event_type") or g["body"].get("text") for g in self.got if g["path"] == path]


def test_notification_destinations_and_job_webhooks(env):
    from databricks.sdk.service import settings as st

    w, server, cluster, home = env["w"], env["server"], env["cluster"], env["home"]
    hook = Receiver(fail_first=1)
    h = server.http()
    # bad configs, and only admins manage destinations
    for bad in [{}, {"generic_webhook": {"url": "ftp://x"}}, {"slack": {"url": hook.url}, "email": {"addresses": ["a@b.c"]}}]:
        r = h.post(server.url("/api/2.0/notification-destinations"), json={"display_name": "x", "config": bad})
        assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    other = non_admin(server, w, "hooks")
    with pytest.raises(PermissionDenied):
        other["w"].notification_destinations.create(display_name="x", config=st.Config(
            generic_webhook=st.GenericWebhookConfig(url=hook.url)))
    secret_url = f"{hook.url}/run-events?token=s3cr3t-{unique('t')}"
    dest = w.notification_destinations.create(display_name=unique("hook"), config=st.Config(
        generic_webhook=st.GenericWebhookConfig(url=secret_url, username="kiln", password="pa55")))
    assert dest.destination_type == st.DestinationType.WEBHOOK
    shown = w.notification_destinations.get(dest.id).config.generic_webhook
    assert shown.url_set and shown.password_set and shown.url is None and shown.password is None
    assert dest.id in [d.id for d in other["w"].notification_destinations.list()]
    # the URL is sealed at rest: not in Kiln's database files
    for f in server.data_dir.rglob("*.sqlite*"):
        assert secret_url.encode() not in f.read_bytes(), f
    email = w.notification_destinations.create(display_name=unique("mail"), config=st.Config(
        email=st.EmailConfig(addresses=["team@example.com"])))
    renamed = w.notification_destinations.update(email.id, display_name="Team mail")
    assert renamed.display_name == "Team mail" and renamed.config.email.addresses == ["team@example.com"]

    # an unknown destination in a job's settings is refused
    r = h.post(server.url("/api/2.2/jobs/create"), json={
        "name": "x", "webhook_notifications": {"on_start": [{"id": "nope"}]}, "tasks": []})
    assert "webhook_notifications.on_start.id" in assert_error(r, 400, "INVALID_PARAMETER_VALUE")["message"]

    put_notebook(w, f"{home}/nap", "# Databricks notebook source\nimport time\ntime.sleep(3)\n")
    hooks = {"on_start": [{"id": dest.id}], "on_success": [{"id": dest.id}], "on_failure": [{"id": dest.id}],
             "on_duration_warning_threshold_exceeded": [{"id": dest.id}]}
    ok = create(w, name=unique("hooked"), webhook_notifications=hooks,
                health={"rules": [{"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN", "value": 1}]},
                tasks=[{"task_key": "nap", "existing_cluster_id": cluster, "notebook_task": {"notebook_path": f"{home}/nap"}}])
    run = w.jobs.run_now_and_wait(job_id=ok, timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, explain(w, run)
    wanted = ["jobs.on_start", "jobs.on_duration_warning_threshold_exceeded", "jobs.on_success"]
    wait_for(lambda: all(e in hook.events("/run-events?" + secret_url.split("?")[1]) for e in wanted), 30,
             "the start, duration-warning and success webhooks (the first retried after a 500)", interval=0.2)
    delivered = [g for g in hook.got if g["body"].get("run", {}).get("run_id") == run.run_id]
    assert all(g["auth"] == "Basic " + base64.b64encode(b"kiln:pa55").decode() for g in delivered)
    assert delivered[-1]["body"]["job"] == {"job_id": ok, "name": w.jobs.get(ok).settings.name}
    assert len(delivered) == 4  # the first was answered 500 and sent again
    r = h.post(server.url("/api/2.2/jobs/create"), json={"name": "x", "tasks": [
        {"task_key": "t", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"},
         "webhook_notifications": {"on_failure": [{"id": "nope"}]}}]})
    assert "webhook_notifications.on_failure.id" in assert_error(r, 400, "INVALID_PARAMETER_VALUE")["message"]
    failing = create(w, name=unique("hooked-fail"), webhook_notifications={"on_failure": [{"id": dest.id}]},
                     tasks=[{"task_key": "f", "condition_task": {"op": "EQUAL_TO", "left": "{{job.nope}}", "right": "1"},
                             "webhook_notifications": {"on_failure": [{"id": dest.id}]}}])
    bad_run = w.jobs.run_now(job_id=failing).run_id
    w.jobs.wait_get_run_job_terminated_or_skipped(run_id=bad_run, timeout=WAIT)
    failures = wait_for(lambda: (lambda got: got if len(got) == 2 else None)(
        [g["body"] for g in hook.got if g["body"].get("run", {}).get("run_id") == bad_run
         and g["body"]["event_type"] == "jobs.on_failure"]), 30, "the run's and the task's failure webhooks", interval=0.2)
    assert sorted(b.get("task", {}).get("task_key", "") for b in failures) == ["", "f"]
    # the server log never has the URL's token
    assert secret_url.split("=")[1] not in server.log_path.read_text(errors="replace")
    w.notification_destinations.delete(email.id)
    assert email.id not in [d.id for d in w.notification_destinations.list()]


def test_environment_tasks_run_on_a_pooled_engine_with_their_dependencies(env):
    w, server, home = env["w"], env["server"], env["home"]
    name = "kilnenv" + unique("e").split("-")[1][:6]
    local = server.shared_dir / "dbfs" / "jobs" / f"{name}-0.1-py3-none-any.whl"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(wheel(name, "def answer():\n    return 42\n", {}))
    put_file(w, f"{home}/use_dep.py", f"import sys\nimport {name}\nprint('answer', {name}.answer(), sys.argv[1:])\n")
    environments = [{"environment_key": "default",
                     "spec": {"client": "2", "dependencies": [f"dbfs:/jobs/{name}-0.1-py3-none-any.whl"]}}]
    r = server.http().post(server.url("/api/2.2/jobs/create"), json={
        "name": "x", "environments": environments,
        "tasks": [{"task_key": "a", "environment_key": "other", "spark_python_task": {"python_file": f"{home}/use_dep.py"}}]})
    assert "tasks.environment_key" in assert_error(r, 400, "INVALID_PARAMETER_VALUE")["message"]
    task = {"environment_key": "default", "spark_python_task": {"python_file": f"{home}/use_dep.py", "parameters": ["x"]}}
    job_id = create(w, name=unique("serverless"), environments=environments,
                    tasks=[{"task_key": "a", **task}, {"task_key": "b", "depends_on": [{"task_key": "a"}], **task}])
    assert w.jobs.get(job_id).settings.environments[0].spec.dependencies == environments[0]["spec"]["dependencies"]
    first = w.jobs.run_now_and_wait(job_id=job_id, timeout=WAIT)
    assert first.state.result_state == jobs.RunResultState.SUCCESS, explain(w, first)
    out = w.jobs.get_run_output(task_of(first, "a").run_id)
    assert "answer 42 ['x']" in out.logs, out.logs
    engine = task_of(first, "a").cluster_instance.cluster_id
    assert task_of(first, "b").cluster_instance.cluster_id == engine
    # the engine outlives the run and the next run finds it warm, its dependency installed
    pooled = w.clusters.get(engine)
    assert pooled.cluster_name.startswith("serverless-env-") and pooled.state.value == "RUNNING"
    second = w.jobs.run_now_and_wait(job_id=job_id, timeout=WAIT)
    assert second.state.result_state == jobs.RunResultState.SUCCESS, explain(w, second)
    assert task_of(second, "a").cluster_instance.cluster_id == engine
    assert task_of(second, "a").setup_duration < task_of(first, "a").setup_duration


def test_jobs_and_runs_with_more_than_100_tasks_come_in_pages(env):
    w, server = env["w"], env["server"]
    cond = {"op": "EQUAL_TO", "left": "1", "right": "1"}
    tasks = [{"task_key": f"t{i:03}", "condition_task": cond} for i in range(150)]
    name = unique("wide")
    job_id = create(w, name=name, tasks=tasks, parameters=[{"name": "p", "default": "1"}])
    h = server.http()
    first = h.get(server.url("/api/2.2/jobs/get"), params={"job_id": job_id}).json()
    assert len(first["settings"]["tasks"]) == 100 and first["has_more"] and first["next_page_token"]
    assert first["settings"]["parameters"] == [{"name": "p", "default": "1"}]
    second = h.get(server.url("/api/2.2/jobs/get"), params={"job_id": job_id, "page_token": first["next_page_token"]}).json()
    assert len(second["settings"]["tasks"]) == 50 and not second["has_more"] and "next_page_token" not in second
    assert second["settings"]["parameters"] == [] and second["settings"]["job_clusters"] == []
    # 2.1 answers them whole; the SDK puts 2.2's pages together
    assert len(h.get(server.url("/api/2.1/jobs/get"), params={"job_id": job_id}).json()["settings"]["tasks"]) == 150
    assert [t.task_key for t in w.jobs.get(job_id).settings.tasks] == [t["task_key"] for t in tasks]
    listed = next(j for j in w.jobs.list(name=name, expand_tasks=True))
    assert len(listed.settings.tasks) == 150
    run = w.jobs.run_now_and_wait(job_id=job_id, timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    assert len(run.tasks) == 150 and len({t.run_id for t in run.tasks}) == 150
    raw = h.get(server.url("/api/2.2/jobs/runs/get"), params={"run_id": run.run_id}).json()
    assert len(raw["tasks"]) == 100 and raw["has_more"] and raw["job_parameters"] == [{"name": "p", "value": "1"}]
    w.jobs.delete(job_id)
