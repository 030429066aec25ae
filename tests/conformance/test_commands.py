"""Command Execution API 1.2: execution contexts and commands (contract §5, appendix A.2).

Driven through the SDK (`w.command_execution`, whose waiters poll at 1 s, 2 s, ...) and through
raw HTTP shaped like the REST 1.2 curl examples: form bodies, JSON bodies, multipart file upload,
Basic auth, GET with a form body or a query string.

Most tests share one RUNNING cluster (module fixture); restart/terminate/autotermination tests
use clusters of their own. Every context a test creates is destroyed when the test ends, so the
kernel processes of the shared cluster are always "contexts still alive + one warm kernel".
"""

from __future__ import annotations

import datetime
import json
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Optional

import pytest
import requests
from databricks.sdk.errors import (
    BadRequest,
    DatabricksError,
    NotFound,
)
from databricks.sdk.service.compute import (
    CommandStatus,
    ContextStatus,
    Language,
    ResultType,
    State,
    TerminationReasonCode,
)

from kiln_helpers import (
    SDK_TIMEOUT,
    SPARK_VERSION,
    assert_error,
    descends_from,
    http,
    is_alive,
    kernel_procs,
    proc_info,
    unique,
    wait_cluster_state,
    wait_for,
)

BAD = (State.ERROR, State.TERMINATED)
TERMINAL = ("Finished", "Error", "Cancelled")
COMMAND_TIMEOUT = float(os.environ.get("KILN_TEST_COMMAND_TIMEOUT", "120"))
CMD_WAIT = datetime.timedelta(seconds=COMMAND_TIMEOUT)
SLEEPER = "import time\ntime.sleep(600)"


# =============================================================================================
# raw REST 1.2 client (what the curl examples of the docs send)


class Rest12:
    """A thin REST 1.2 client over requests, Basic auth per call (as the 1.2 docs describe)."""

    def __init__(self, kiln, cluster_id: str, auth=None):
        self.kiln = kiln
        self.cluster_id = cluster_id
        self.s = http()
        self.s.auth = auth or ("admin", kiln.token)
        self.created: list[str] = []

    def url(self, path: str) -> str:
        return self.kiln.url("/api/1.2/" + path)

    @staticmethod
    def ok(r: requests.Response) -> dict:
        assert r.status_code == 200, f"{r.request.method} {r.url} -> {r.status_code}: {r.text[:1000]}"
        return r.json()

    # -- contexts

    def create(self, language: str = "python", wait: bool = True) -> str:
        body = self.ok(self.s.post(self.url("contexts/create"), data={"clusterId": self.cluster_id, "language": language}))
        assert set(body) == {"id"} and isinstance(body["id"], str) and body["id"], body
        self.created.append(body["id"])
        if wait:
            self.wait_context(body["id"])
        return body["id"]

    def context_status(self, ctx: str) -> str:
        body = self.ok(self.s.get(self.url("contexts/status"), params={"clusterId": self.cluster_id, "contextId": ctx}))
        assert body["id"] == ctx, body
        assert body["status"] in ("Pending", "Running", "Error"), body
        return body["status"]

    def wait_context(self, ctx: str, target: str = "Running") -> None:
        def poll():
            st = self.context_status(ctx)
            if target != "Error" and st == "Error":
                raise AssertionError(f"context {ctx} went Error while waiting for {target}")
            return st == target

        wait_for(poll, COMMAND_TIMEOUT, f"context {ctx} to be {target}", 0.02)

    def destroy(self, ctx: str) -> dict:
        return self.ok(self.s.post(self.url("contexts/destroy"), data={"clusterId": self.cluster_id, "contextId": ctx}))

    def destroy_all(self) -> None:
        for ctx in self.created:
            try:
                self.s.post(self.url("contexts/destroy"), data={"clusterId": self.cluster_id, "contextId": ctx}, timeout=30)
            except requests.RequestException:
                pass

    # -- commands

    def execute(self, ctx: str, command: str, language: Optional[str] = None, options: Optional[dict] = None) -> str:
        body = {"clusterId": self.cluster_id, "contextId": ctx, "command": command}
        if language:
            body["language"] = language
        if options is not None:
            body["options"] = options
        out = self.ok(self.s.post(self.url("commands/execute"), json=body))
        assert set(out) == {"id"} and isinstance(out["id"], str) and out["id"], out
        return out["id"]

    def status(self, ctx: str, cmd: str) -> dict:
        body = self.ok(self.s.get(self.url("commands/status"),
                                  params={"clusterId": self.cluster_id, "contextId": ctx, "commandId": cmd}))  # fmt: skip
        assert body["id"] == cmd, body
        assert body["status"] in ("Queued", "Running", "Cancelling", "Finished", "Cancelled", "Error"), body
        return body

    def wait(self, ctx: str, cmd: str, until=TERMINAL, seen: Optional[list] = None) -> dict:
        seen = seen if seen is not None else []

        def poll():
            body = self.status(ctx, cmd)
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            return body if body["status"] in until else None

        return wait_for(poll, COMMAND_TIMEOUT, f"command {cmd} to reach {until} (seen {seen})", 0.01)

    def run(self, ctx: str, command: str, **kw) -> dict:
        return self.wait(ctx, self.execute(ctx, command, **kw))

    def value(self, ctx: str, command: str, **kw):
        """Runs a Python command that must finish and returns its text result."""
        body = self.run(ctx, command, **kw)
        assert body["status"] == "Finished", body
        assert body["results"]["resultType"] == "text", body
        return body["results"]["data"]

    def cancel(self, ctx: str, cmd: str) -> dict:
        return self.ok(self.s.post(self.url("commands/cancel"),
                                   data={"clusterId": self.cluster_id, "contextId": ctx, "commandId": cmd}))  # fmt: skip


def assert_ack(body: dict, ident: str):
    """destroy/cancel replies: `{}` (contract §5, SDK) or `{"id": ...}` (the 1.2 docs' examples)."""
    assert body in ({}, {"id": ident}), body


def assert_error_result(results, *, contains: str = ""):
    """An `error` result as the SDK and its dbutils proxy need it: summary and cause are strings."""
    assert results is not None
    if isinstance(results, dict):
        rtype, summary, cause = results.get("resultType"), results.get("summary"), results.get("cause")
    else:
        rtype, summary, cause = results.result_type, results.summary, results.cause
        rtype = rtype.value if rtype is not None else None
    assert rtype == "error", results
    assert isinstance(summary, str) and summary, results
    assert isinstance(cause, str) and cause, results
    if contains:
        assert contains in cause, f"{contains!r} not in cause {cause!r}"
    return summary, cause


def strip_tags(html: str) -> str:
    return re.sub(r"<[^>]*>", "", html)


def kernel_pid(api: Rest12, ctx: str):
    """(pid, Proc) of the kernel running a context, read from inside it."""
    pid = int(api.value(ctx, "import os\nos.getpid()"))
    proc = proc_info(pid)
    assert proc is not None, f"kernel pid {pid} reported by the context is not a live process"
    return pid, proc


def create_cluster(w, kiln, name_prefix: str, **kw) -> str:
    spec = dict(cluster_name=unique(name_prefix), spark_version=SPARK_VERSION, num_workers=0, autotermination_minutes=0)
    spec.update(kw)
    c = w.clusters.create_and_wait(**spec, timeout=SDK_TIMEOUT)
    assert c.state == State.RUNNING
    return kiln.track(c.cluster_id)


def drop_cluster(w, cid: str) -> None:
    try:
        w.clusters.permanent_delete(cid)
    except DatabricksError:
        pass


# =============================================================================================
# fixtures


@pytest.fixture(scope="module")
def cluster(kiln, w):
    """The shared RUNNING cluster."""
    cid = create_cluster(w, kiln, "cmd")
    yield cid
    drop_cluster(w, cid)


@pytest.fixture
def api(kiln, cluster):
    """Raw REST 1.2 client on the shared cluster; destroys the contexts it created."""
    client = Rest12(kiln, cluster)
    yield client
    client.destroy_all()


@pytest.fixture
def sdk_context(w, cluster):
    """sdk_context(language) -> context id via create_and_wait; destroyed after the test."""
    made = []

    def make(language: Language = Language.PYTHON) -> str:
        ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=language, timeout=CMD_WAIT)
        assert ctx.status == ContextStatus.RUNNING, ctx
        assert isinstance(ctx.id, str) and ctx.id
        made.append(ctx.id)
        return ctx.id

    yield make
    for ctx in made:
        try:
            w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
        except DatabricksError:
            pass


def sdk_run(w, cluster, ctx, command, language=Language.PYTHON):
    return w.command_execution.execute_and_wait(
        cluster_id=cluster, context_id=ctx, language=language, command=command, timeout=CMD_WAIT
    )


def sdk_text(w, cluster, ctx, command) -> str:
    res = sdk_run(w, cluster, ctx, command)
    assert res.status == CommandStatus.FINISHED, res
    assert res.results.result_type == ResultType.TEXT, res
    return res.results.data


# =============================================================================================
# SDK: contexts, persistent namespaces, isolation


def test_sdk_create_execute_and_persistent_variables(w, cluster, sdk_context):
    ctx = sdk_context()
    assert w.command_execution.context_status(cluster_id=cluster, context_id=ctx).status == ContextStatus.RUNNING
    res = sdk_run(w, cluster, ctx, "x = 40\ndef inc(v):\n    return v + 1")
    assert res.status == CommandStatus.FINISHED, res
    assert res.id and res.results.result_type == ResultType.TEXT
    assert sdk_text(w, cluster, ctx, "inc(x) + 1") == "42"
    # stdout first, then the repr of the last expression
    assert sdk_text(w, cluster, ctx, "print('hello')\n'world'") == "hello\n'world'"
    assert sdk_text(w, cluster, ctx, "import sys\nprint('to stderr', file=sys.stderr)\nx") == "to stderr\n40"
    # the status call reports the same finished command again
    again = w.command_execution.command_status(cluster_id=cluster, context_id=ctx, command_id=res.id)
    assert again.status == CommandStatus.FINISHED and again.id == res.id


def test_contexts_have_separate_namespaces(w, cluster, sdk_context):
    a, b = sdk_context(), sdk_context()
    assert a != b
    assert sdk_run(w, cluster, a, "only_in_a = 1").status == CommandStatus.FINISHED
    res = sdk_run(w, cluster, b, "only_in_a")
    assert res.status == CommandStatus.ERROR, res
    summary, cause = assert_error_result(res.results)
    assert "NameError" in summary and "only_in_a" in cause, res.results
    assert sdk_text(w, cluster, a, "only_in_a") == "1"


def test_contexts_have_separate_spark_sessions(w, cluster, sdk_context):
    a, b = sdk_context(), sdk_context()
    view = "tv_" + uuid.uuid4().hex[:8]
    assert sdk_text(w, cluster, a, f"spark.range(3).createOrReplaceTempView('{view}')\nspark.table('{view}').count()") == "3"
    res = sdk_run(w, cluster, b, f"spark.table('{view}').count()")
    assert res.status == CommandStatus.ERROR, res
    assert_error_result(res.results, contains=view)
    res = sdk_run(w, cluster, b, f"SELECT * FROM {view}", language=Language.SQL)
    assert res.status == CommandStatus.ERROR, res
    # still there in A, also from SQL
    res = sdk_run(w, cluster, a, f"SELECT count(*) AS n FROM {view}", language=Language.SQL)
    assert res.status == CommandStatus.FINISHED and res.results.data == [[3]], res


def test_context_kernel_is_a_child_process_of_kiln(kiln, api):
    ctx = api.create()
    pid, proc = kernel_pid(api, ctx)
    assert proc.cluster_id == api.cluster_id, proc
    assert "-m kiln_kernel.kernel" in proc.cmdline, proc.cmdline
    assert descends_from(pid, kiln.proc.pid), "the kernel is not a child of this kiln server"
    assert api.value(ctx, "import os\nos.environ['KILN_CLUSTER_ID']") == repr(api.cluster_id)
    other = api.create()
    assert kernel_pid(api, other)[0] != pid, "two contexts share one kernel process"


# =============================================================================================
# errors


def test_python_error_has_traceback_and_context_survives(w, cluster, sdk_context):
    ctx = sdk_context()
    # execute_and_wait returns Error results (it raises only on Cancelled/Cancelling)
    res = sdk_run(w, cluster, ctx, "kept = 7\ndef f():\n    return 1 / 0\nf()")
    assert res.status == CommandStatus.ERROR, res
    summary, cause = assert_error_result(res.results)
    assert "ZeroDivisionError: division by zero" in strip_tags(summary), summary
    assert cause.startswith("Traceback (most recent call last):"), cause
    assert "ZeroDivisionError: division by zero" in cause
    assert "in f" in cause and "line 3" in cause, cause
    assert "kiln_kernel" not in cause, f"kernel frames leak into the user's traceback:\n{cause}"
    # the context is usable afterwards and kept what ran before the error
    assert w.command_execution.context_status(cluster_id=cluster, context_id=ctx).status == ContextStatus.RUNNING
    assert sdk_text(w, cluster, ctx, "kept") == "7"


def test_python_syntax_error(api):
    ctx = api.create()
    body = api.run(ctx, "def broken(:\n    pass")
    assert body["status"] == "Error", body
    summary, _ = assert_error_result(body["results"])
    assert "SyntaxError" in summary, body
    assert api.value(ctx, "'still fine'") == "'still fine'"


def test_sql_error_carries_engine_message(w, cluster, sdk_context):
    ctx = sdk_context(Language.SQL)
    res = sdk_run(w, cluster, ctx, "SELECT * FROM no_such_table_kiln", language=Language.SQL)
    assert res.status == CommandStatus.ERROR, res
    summary, cause = assert_error_result(res.results)
    assert "no_such_table_kiln" in cause, cause
    assert "not found" in cause.lower() or "TABLE_OR_VIEW_NOT_FOUND" in cause, cause
    # SQL errors are the engine's message, not a Python traceback of the kernel
    assert "Traceback" not in cause, cause
    assert "no_such_table_kiln" in strip_tags(summary)


# =============================================================================================
# tables: SQL results and display()


def test_sql_context_table_shape(w, cluster, sdk_context):
    ctx = sdk_context(Language.SQL)
    res = sdk_run(w, cluster, ctx, "SELECT 1 AS a, 'x' AS b", language=Language.SQL)
    assert res.status == CommandStatus.FINISHED, res
    r = res.results
    assert r.result_type == ResultType.TABLE, r
    assert r.data == [[1, "x"]], r.data
    assert r.is_json_schema is True
    assert r.truncated is False
    assert [c["name"] for c in r.schema] == ["a", "b"], r.schema
    assert [json.loads(c["type"]) for c in r.schema] == ["integer", "string"], r.schema
    for col in r.schema:
        assert isinstance(col["type"], str) and isinstance(col["metadata"], str), col
        assert json.loads(col["metadata"]) == {}, col


def test_sql_context_runs_several_statements_and_defaults_language(api):
    ctx = api.create("sql")
    # no `language` on the command: the context's language applies; the last statement's result is shown
    body = api.run(ctx, "CREATE OR REPLACE TEMPORARY VIEW v_multi AS SELECT 5 AS n;\nSELECT n * 2 AS m FROM v_multi")
    assert body["status"] == "Finished", body
    assert body["results"]["resultType"] == "table", body
    assert body["results"]["data"] == [[10]], body


def test_python_context_runs_sql_command(api):
    ctx = api.create("python")
    body = api.run(ctx, "SELECT 'mixed' AS s, CAST(2.5 AS DOUBLE) AS d", language="sql")
    assert body["status"] == "Finished", body
    r = body["results"]
    assert r["resultType"] == "table" and r["data"] == [["mixed", 2.5]], r
    assert [json.loads(c["type"]) for c in r["schema"]] == ["string", "double"], r["schema"]


def test_display_dataframe_is_a_table(w, cluster, sdk_context):
    ctx = sdk_context()
    res = sdk_run(w, cluster, ctx, "display(spark.range(5))")
    assert res.status == CommandStatus.FINISHED, res
    r = res.results
    assert r.result_type == ResultType.TABLE, r
    assert r.data == [[0], [1], [2], [3], [4]], r.data
    assert r.schema == [{"name": "id", "type": '"long"', "metadata": "{}"}], r.schema
    assert r.truncated is False and r.is_json_schema is True


def test_display_row_limit(api):
    ctx = api.create()
    body = api.run(ctx, "display(spark.range(5))", options={"displayRowLimit": 2})
    r = body["results"]
    assert body["status"] == "Finished" and r["resultType"] == "table", body
    assert r["data"] == [[0], [1]], r
    assert r["truncated"] is True, r
    # exactly at the limit: complete, not truncated
    r = api.run(ctx, "display(spark.range(5))", options={"displayRowLimit": 5})["results"]
    assert len(r["data"]) == 5 and r["truncated"] is False, r
    # the limit applies to one command only
    r = api.run(ctx, "display(spark.range(12))")["results"]
    assert len(r["data"]) == 12 and r["truncated"] is False, r
    # SQL results honour it too
    sql = api.create("sql")
    r = api.run(sql, "SELECT * FROM range(10)", options={"displayRowLimit": 3})["results"]
    assert r["data"] == [[0], [1], [2]] and r["truncated"] is True, r


def test_display_row_limit_default_is_10000(api):
    ctx = api.create()
    r = api.run(ctx, "display(spark.range(10001))")["results"]
    assert r["resultType"] == "table" and len(r["data"]) == 10000 and r["truncated"] is True, (len(r["data"]), r["truncated"])


@pytest.mark.parametrize("limit", [0, -1, "many"])
def test_bad_display_row_limit_is_rejected(api, limit):
    ctx = api.create()
    r = api.s.post(api.url("commands/execute"), json={"clusterId": api.cluster_id, "contextId": ctx,
                                                      "command": "1", "options": {"displayRowLimit": limit}})  # fmt: skip
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")


# =============================================================================================
# raw wire: the REST 1.2 curl examples (form bodies, GET with a body, query strings, multipart)


def test_seed_curl_flow_with_form_bodies(kiln, cluster):
    """The docs' curl flow, byte for byte: `--data a=b --data c=d` bodies, `--get` status calls."""
    s = http()
    s.auth = ("admin", kiln.token)
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl --data sends
    url = kiln.url
    # curl -n -X POST .../contexts/create --data clusterId=<id> --data language=sql
    r = s.post(url("/api/1.2/contexts/create"), data=f"clusterId={cluster}&language=sql", headers=form)
    ctx = Rest12.ok(r)["id"]
    try:
        assert re.fullmatch(r"\S+", ctx), ctx
        # GET .../contexts/status with a form body (curl --request GET --data ...)
        def status_via_body():
            body = Rest12.ok(s.get(url("/api/1.2/contexts/status"), data=f"clusterId={cluster}&contextId={ctx}", headers=form))
            assert body["id"] == ctx
            return body["status"] == "Running"

        wait_for(status_via_body, COMMAND_TIMEOUT, "context Running (GET with form body)", 0.02)
        # GET .../contexts/status?clusterId=..&contextId=.. (query string)
        body = Rest12.ok(s.get(url(f"/api/1.2/contexts/status?clusterId={cluster}&contextId={ctx}")))
        assert body == {"id": ctx, "status": "Running"}, body

        # POST .../commands/execute --data 'language=sql&clusterId=..&contextId=..&command=...'
        r = s.post(url("/api/1.2/commands/execute"),
                   data=f"language=sql&clusterId={cluster}&contextId={ctx}&command=SELECT 6*7 AS answer",
                   headers=form)  # fmt: skip
        cmd = Rest12.ok(r)["id"]
        assert isinstance(cmd, str) and cmd

        # GET .../commands/status with a form body, then with a query string
        def done_via_body():
            body = Rest12.ok(s.get(url("/api/1.2/commands/status"),
                                   data=f"clusterId={cluster}&contextId={ctx}&commandId={cmd}", headers=form))  # fmt: skip
            return body if body["status"] in TERMINAL else None

        body = wait_for(done_via_body, COMMAND_TIMEOUT, "command done (GET with form body)", 0.02)
        assert body["id"] == cmd and body["status"] == "Finished", body
        assert body["results"]["data"] == [[42]], body
        q = Rest12.ok(s.get(url(f"/api/1.2/commands/status?clusterId={cluster}&contextId={ctx}&commandId={cmd}")))
        assert q == body
        # requests' own encodings of the same
        assert Rest12.ok(s.get(url("/api/1.2/commands/status"),
                               data={"clusterId": cluster, "contextId": ctx, "commandId": cmd})) == body  # fmt: skip
        assert Rest12.ok(s.get(url("/api/1.2/commands/status"),
                               params={"clusterId": cluster, "contextId": ctx, "commandId": cmd})) == body  # fmt: skip

        # POST .../commands/cancel --data '...' on a finished command: accepted
        assert_ack(Rest12.ok(s.post(url("/api/1.2/commands/cancel"),
                                    data=f"clusterId={cluster}&contextId={ctx}&commandId={cmd}", headers=form)), cmd)  # fmt: skip
    finally:
        # POST .../contexts/destroy with a JSON body and Content-Type: application/json
        r = s.post(url("/api/1.2/contexts/destroy"), data=json.dumps({"contextId": ctx, "clusterId": cluster}),
                   headers={"Content-Type": "application/json"})  # fmt: skip
    assert_ack(Rest12.ok(r), ctx)
    r = s.get(url("/api/1.2/contexts/status"), params={"clusterId": cluster, "contextId": ctx})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")


def test_seed_json_execute_with_token_basic_auth(kiln, cluster):
    # Basic auth with the user name `token` and a PAT as the password
    api = Rest12(kiln, cluster, auth=("token", kiln.token))
    try:
        ctx = api.create("python")
        # curl ... -H 'Content-Type: application/json' --data @execute-command.json
        payload = {"clusterId": cluster, "contextId": ctx, "language": "python", "command": 'print("Hello, World!")'}
        r = api.s.post(api.url("commands/execute"), data=json.dumps(payload), headers={"Content-Type": "application/json"})
        cmd = Rest12.ok(r)["id"]
        body = api.wait(ctx, cmd)
        assert body["status"] == "Finished" and body["results"]["resultType"] == "text", body
        assert body["results"]["data"].rstrip("\n") == "Hello, World!", body
        # curl --data '{...}' without a content type (curl labels it a form): still JSON
        r = api.s.post(api.url("commands/execute"), data=json.dumps({**payload, "command": "6*7"}),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert api.wait(ctx, Rest12.ok(r)["id"])["results"]["data"] == "42"
    finally:
        api.destroy_all()


def test_form_options_as_json_string_and_admin_password(kiln, cluster):
    api = Rest12(kiln, cluster, auth=("admin", kiln.admin_password))
    try:
        ctx = api.create("python")
        r = api.s.post(api.url("commands/execute"), data={
            "clusterId": cluster, "contextId": ctx, "language": "python",
            "command": "display(spark.range(9))", "options": json.dumps({"displayRowLimit": 3})})  # fmt: skip
        body = api.wait(ctx, Rest12.ok(r)["id"])
        assert body["results"]["data"] == [[0], [1], [2]] and body["results"]["truncated"] is True, body
    finally:
        api.destroy_all()


PY_FILE = b"def double(x):\n    return x * 2\n\nprint('from a file')\ndouble(21)\n"


def test_multipart_file_upload(api, tmp_path):
    ctx = api.create("python")
    # curl -F language=python -F clusterId=.. -F contextId=.. -F command=@myfile.py
    r = api.s.post(api.url("commands/execute"),
                   data={"language": "python", "clusterId": api.cluster_id, "contextId": ctx},
                   files={"command": ("myfile.py", PY_FILE, "application/octet-stream")})  # fmt: skip
    assert r.request.headers["Content-Type"].startswith("multipart/form-data; boundary="), r.request.headers
    body = api.wait(ctx, Rest12.ok(r)["id"])
    assert body["status"] == "Finished", body
    assert body["results"] == {"resultType": "text", "data": "from a file\n42"}, body
    # the file's definitions live on in the context
    assert api.value(ctx, "double(4)") == "8"


def test_multipart_with_seed_content_type_header(api):
    """The 1.2 docs' file example also passes `--header "Content-Type: multipart/form"`.

    With -F, curl keeps that value and appends the boundary:
    `Content-Type: multipart/form; boundary=------------------------3ec90ac2803dcb25`.
    """
    ctx = api.create("python")
    req = requests.Request("POST", api.url("commands/execute"),
                           data={"language": "python", "clusterId": api.cluster_id, "contextId": ctx},
                           files={"command": ("myfile.py", PY_FILE, "application/octet-stream")}).prepare()  # fmt: skip
    req.headers["Content-Type"] = req.headers["Content-Type"].replace("multipart/form-data", "multipart/form", 1)
    req.prepare_auth(api.s.auth)
    r = api.s.send(req)
    body = api.wait(ctx, Rest12.ok(r)["id"])
    assert body["status"] == "Finished" and body["results"]["data"] == "from a file\n42", body


def test_unauthenticated_and_bad_password(kiln, cluster):
    r = http().post(kiln.url("/api/1.2/contexts/create"), data={"clusterId": cluster, "language": "python"})
    assert_error(r, 401, "UNAUTHENTICATED")
    s = http()
    s.auth = ("admin", "not-the-password")
    r = s.post(kiln.url("/api/1.2/commands/execute"), data={"clusterId": cluster, "contextId": "1", "command": "1"})
    assert_error(r, 401, "UNAUTHENTICATED")


# =============================================================================================
# cancel, queueing, ordering


def wait_running(api: Rest12, ctx: str, cmd: str) -> None:
    body = api.wait(ctx, cmd, until=("Running",) + TERMINAL)
    assert body["status"] == "Running", body


def test_sdk_cancel_and_wait_then_context_still_usable(w, cluster, sdk_context, api):
    ctx = sdk_context()
    assert sdk_run(w, cluster, ctx, "survivor = 'kept'").status == CommandStatus.FINISHED
    waiter = w.command_execution.execute(cluster_id=cluster, context_id=ctx, language=Language.PYTHON, command=SLEEPER)
    cmd = waiter.response.id
    assert cmd and waiter.command_id == cmd
    wait_running(api, ctx, cmd)
    res = w.command_execution.cancel_and_wait(cluster_id=cluster, context_id=ctx, command_id=cmd, timeout=CMD_WAIT)
    assert res.status == CommandStatus.CANCELLED, res
    assert w.command_execution.context_status(cluster_id=cluster, context_id=ctx).status == ContextStatus.RUNNING
    assert sdk_text(w, cluster, ctx, "survivor") == "'kept'"


def test_raw_cancel_running_command(api):
    ctx = api.create()
    pid, proc = kernel_pid(api, ctx)
    api.value(ctx, "survivor = 99")
    cmd = api.execute(ctx, SLEEPER)
    wait_running(api, ctx, cmd)
    assert_ack(api.cancel(ctx, cmd), cmd)
    # cancel changes the state before it replies
    first = api.status(ctx, cmd)["status"]
    assert first in ("Cancelling", "Cancelled"), first
    seen = [first]
    body = api.wait(ctx, cmd, seen=seen)
    assert body["status"] == "Cancelled", body
    assert set(seen) <= {"Cancelling", "Cancelled"}, seen
    if "results" in body:
        assert_error_result(body["results"])
    # the kernel was interrupted, not replaced: same process, same namespace
    assert api.context_status(ctx) == "Running"
    assert is_alive(proc)
    assert api.value(ctx, "survivor") == "99"
    assert kernel_pid(api, ctx)[0] == pid
    # cancelling again is harmless
    assert_ack(api.cancel(ctx, cmd), cmd)
    assert api.status(ctx, cmd)["status"] == "Cancelled"


def test_cancel_at_any_instant_interrupts_and_keeps_the_context(api):
    """A cancel right after execute can land before the kernel began executing
    (its SIGINT would be ignored): the command is still cancelled, quickly, and
    the same kernel goes on."""
    ctx = api.create()
    pid, _ = kernel_pid(api, ctx)
    for attempt in range(5):
        cmd = api.execute(ctx, SLEEPER)
        api.cancel(ctx, cmd)
        body = api.wait(ctx, cmd)
        assert body["status"] == "Cancelled", (attempt, body)
        # a missed SIGINT used to end in the whole kernel being killed after the grace period
        assert api.context_status(ctx) == "Running", attempt
    assert kernel_pid(api, ctx)[0] == pid
    assert api.value(ctx, "6*7") == "42"


def test_cancel_queued_command(api):
    ctx = api.create()
    sleeper = api.execute(ctx, SLEEPER)
    queued = api.execute(ctx, "ran_after_cancel = True")
    wait_running(api, ctx, sleeper)
    assert api.status(ctx, queued)["status"] == "Queued"
    assert_ack(api.cancel(ctx, queued), queued)
    # a queued command is cancelled at once
    assert api.status(ctx, queued)["status"] == "Cancelled"
    assert api.status(ctx, sleeper)["status"] == "Running", "cancelling a queued command touched the running one"
    api.cancel(ctx, sleeper)
    assert api.wait(ctx, sleeper)["status"] == "Cancelled"
    # the cancelled command never ran, and the context goes on
    assert api.value(ctx, "'ran_after_cancel' in globals()") == "False"
    assert api.wait(ctx, queued)["status"] == "Cancelled"


def test_cancel_of_finished_command_changes_nothing(api):
    ctx = api.create()
    cmd = api.execute(ctx, "'done'")
    before = api.wait(ctx, cmd)
    assert before["status"] == "Finished" and before["results"] == {"resultType": "text", "data": "'done'"}, before
    assert_ack(api.cancel(ctx, cmd), cmd)
    after = api.status(ctx, cmd)
    assert after == before, f"cancel of a Finished command changed it:\nbefore {before}\nafter  {after}"


def test_cancel_unknown_command(api):
    ctx = api.create()
    r = api.s.post(api.url("commands/cancel"), data={"clusterId": api.cluster_id, "contextId": ctx, "commandId": "nope"})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")


def test_commands_run_in_order(api):
    ctx = api.create()
    ids = [api.execute(ctx, "import time\ntime.sleep(0.3)\nseq = []")]
    ids += [api.execute(ctx, f"seq.append({i})") for i in (1, 2, 3)]  # sent without waiting
    last = api.run(ctx, "seq")
    assert last["status"] == "Finished" and last["results"]["data"] == "[1, 2, 3]", last
    assert [api.status(ctx, i)["status"] for i in ids] == ["Finished"] * 4


def test_later_commands_wait_for_a_running_one(api):
    ctx = api.create()
    slow = api.execute(ctx, "import time\ntime.sleep(1.5)\nflag = 'set by the slow command'")
    fast = api.execute(ctx, "flag")
    assert api.wait(ctx, fast)["results"] == {"resultType": "text", "data": "'set by the slow command'"}
    assert api.status(ctx, slow)["status"] == "Finished"


def test_sdk_execute_wait_raises_when_cancelled(w, cluster, sdk_context, api):
    """execute_and_wait raises OperationFailed when the command it waits for is cancelled."""
    from databricks.sdk.errors import OperationFailed

    ctx = sdk_context()
    waiter = w.command_execution.execute(cluster_id=cluster, context_id=ctx, language=Language.PYTHON, command=SLEEPER)
    wait_running(api, ctx, waiter.response.id)
    api.cancel(ctx, waiter.response.id)
    with pytest.raises(OperationFailed):
        waiter.result(timeout=CMD_WAIT)


# =============================================================================================
# failures of the request and of the kernel


def test_r_and_unknown_languages_are_invalid_parameter_values(kiln, w, cluster):
    with pytest.raises(BadRequest) as e:  # REST 1.2 errors carry no error_code: the status decides
        w.command_execution.create(cluster_id=cluster, language=Language.R)
    msg = str(e.value)
    assert "python" in msg and "sql" in msg and "scala" in msg, msg
    # the docs' JSON example shape: {"language": "...", "clusterId": ...}
    s = http(kiln.token)
    r = s.post(kiln.url("/api/1.2/contexts/create"), data=json.dumps({"language": "r", "clusterId": cluster}),
               headers={"Content-Type": "application/json"})  # fmt: skip
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    r = s.post(kiln.url("/api/1.2/contexts/create"), data={"language": "cobol", "clusterId": cluster})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")


def test_unknown_context_and_command_are_not_found(w, cluster, api):
    with pytest.raises(NotFound):
        w.command_execution.context_status(cluster_id=cluster, context_id="1234567890123456789")
    with pytest.raises(NotFound):
        w.command_execution.execute(cluster_id=cluster, context_id="1234567890123456789", language=Language.PYTHON,
                                    command="1")  # fmt: skip
    ctx = api.create()
    with pytest.raises(NotFound):
        w.command_execution.command_status(cluster_id=cluster, context_id=ctx, command_id="0000")
    # a real context asked for under another cluster id
    r = api.s.get(api.url("contexts/status"), params={"clusterId": "1234-567890-span123", "contextId": ctx})
    assert 400 <= r.status_code < 500 and r.status_code != 401, r.text
    # the raw shape
    r = api.s.get(api.url("contexts/status"), params={"clusterId": cluster, "contextId": "1234567890123456789"})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")


def test_missing_required_fields(api):
    s = api.s
    assert_error(s.post(api.url("contexts/create"), data={"language": "python"}), 400, "INVALID_PARAMETER_VALUE")
    ctx = api.create()
    r = s.post(api.url("commands/execute"), data={"clusterId": api.cluster_id, "contextId": ctx})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    r = s.get(api.url("commands/status"), params={"clusterId": api.cluster_id, "contextId": ctx})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")


def test_context_on_missing_cluster(kiln, w):
    with pytest.raises((BadRequest, NotFound)) as e:
        w.command_execution.create(cluster_id="0000-000000-doesnotexist", language=Language.PYTHON)
    assert "does not exist" in str(e.value), e.value


def test_destroy_context(w, cluster, api):
    ctx = api.create()
    _, proc = kernel_pid(api, ctx)
    w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
    with pytest.raises(NotFound):
        w.command_execution.context_status(cluster_id=cluster, context_id=ctx)
    r = api.s.post(api.url("commands/execute"), data={"clusterId": cluster, "contextId": ctx, "command": "1"})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    r = api.s.post(api.url("contexts/destroy"), data={"clusterId": cluster, "contextId": ctx})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    wait_for(lambda: not is_alive(proc), 30, f"kernel {proc.pid} of a destroyed context to exit", 0.05)


def test_destroy_context_with_running_command(api):
    ctx = api.create()
    _, proc = kernel_pid(api, ctx)
    cmd = api.execute(ctx, SLEEPER)
    wait_running(api, ctx, cmd)
    assert_ack(api.destroy(ctx), ctx)
    r = api.s.get(api.url("commands/status"), params={"clusterId": api.cluster_id, "contextId": ctx, "commandId": cmd})
    assert_error(r, 404, "RESOURCE_DOES_NOT_EXIST")
    wait_for(lambda: not is_alive(proc), 30, f"busy kernel {proc.pid} of a destroyed context to exit", 0.05)


def test_kernel_death_fails_command_and_context(w, cluster, api):
    ctx = api.create()
    _, proc = kernel_pid(api, ctx)
    res = sdk_run(w, cluster, ctx, "import os\nos._exit(1)")
    assert res.status == CommandStatus.ERROR, res
    _, cause = assert_error_result(res.results)
    assert "kernel" in cause.lower() and "exit" in cause.lower(), cause
    wait_for(lambda: api.context_status(ctx) == "Error", 30, "context to be Error after its kernel died", 0.05)
    assert w.command_execution.context_status(cluster_id=cluster, context_id=ctx).status == ContextStatus.ERROR
    assert not is_alive(proc)
    # no more commands on a dead context; a new context works
    with pytest.raises(BadRequest):
        w.command_execution.execute(cluster_id=cluster, context_id=ctx, language=Language.PYTHON, command="1")
    fresh = api.create()
    assert api.value(fresh, "1 + 1") == "2"


def test_queued_commands_fail_when_the_kernel_dies(api):
    ctx = api.create()
    dying = api.execute(ctx, "import time, os\ntime.sleep(0.5)\nos._exit(3)")
    queued = api.execute(ctx, "'never'")
    assert api.wait(ctx, dying)["status"] == "Error"
    body = api.wait(ctx, queued)
    assert body["status"] == "Error", body
    assert_error_result(body["results"])


# =============================================================================================
# output, dbutils, plots


def test_oversized_output_is_truncated(api):
    ctx = api.create()
    body = api.run(ctx, "print('a' * 300000)")
    assert body["status"] == "Finished", body
    r = body["results"]
    assert r["resultType"] == "text" and r.get("truncated") is True, {k: v for k, v in r.items() if k != "data"}
    data = r["data"]
    assert 256 * 1024 <= len(data) < 300000, len(data)
    assert data.startswith("aaaa")
    last = data.rstrip("\n").splitlines()[-1]
    assert "WARNING" in last.upper() and "aaaa" not in last, last
    # a large last-expression value is truncated the same way
    r = api.run(ctx, "'b' * 300000")["results"]
    assert r.get("truncated") is True and len(r["data"]) < 300000, len(r["data"])
    # small output is not flagged
    r = api.run(ctx, "print('small')")["results"]
    assert not r.get("truncated"), r


def test_dbutils_fs_round_trip(kiln, api):
    ctx = api.create()
    d = "dbfs:/kiln-tests/" + uuid.uuid4().hex[:8]
    code = f"""
import json
d = {d!r}
out = {{}}
out['mkdirs'] = dbutils.fs.mkdirs(d + '/sub')
out['put'] = dbutils.fs.put(d + '/a.txt', 'hello dbfs', overwrite=True)
out['head'] = dbutils.fs.head(d + '/a.txt')
out['ls'] = sorted([f.name, f.size, f.path] for f in dbutils.fs.ls(d))
out['cp'] = dbutils.fs.cp(d + '/a.txt', d + '/sub/b.txt')
out['mv'] = dbutils.fs.mv(d + '/sub/b.txt', d + '/c.txt')
out['after_mv'] = sorted(f.name for f in dbutils.fs.ls(d))
out['sub'] = [f.name for f in dbutils.fs.ls(d + '/sub')]
out['rm'] = dbutils.fs.rm(d + '/c.txt')
dbutils.notebook.exit(json.dumps(out))
"""
    out = json.loads(api.value(ctx, code))
    assert out["mkdirs"] is True and out["put"] is True and out["cp"] is True and out["mv"] is True and out["rm"] is True
    assert out["head"] == "hello dbfs"
    assert out["ls"] == [["a.txt", 10, d + "/a.txt"], ["sub/", 0, d + "/sub/"]], out["ls"]
    assert out["after_mv"] == ["a.txt", "c.txt", "sub/"], out
    assert out["sub"] == [], out
    # dbfs:/ is <data_dir>/dbfs on disk, shared with other contexts
    local = Path(kiln.shared_dir) / "dbfs" / d[len("dbfs:/"):]
    assert (local / "a.txt").read_text() == "hello dbfs"
    assert not (local / "c.txt").exists()
    other = api.create()
    assert api.value(other, f"dbutils.fs.head({d + '/a.txt'!r})") == "'hello dbfs'"
    assert api.value(other, f"dbutils.fs.rm({d!r}, True)") == "True"
    assert not local.exists()


@pytest.mark.parametrize("call", [
    "dbutils.fs.ls('dbfs:/../../etc')",
    "dbutils.fs.ls('/../../etc')",
    "dbutils.fs.head('dbfs:/../../../etc/hostname')",
    "dbutils.fs.put('dbfs:/../escaped-{tag}.txt', 'x')",
    "dbutils.fs.cp('dbfs:/../../etc/hostname', 'dbfs:/copied-{tag}')",
    "dbutils.fs.mkdirs('dbfs:/a/../../escaped-dir-{tag}')",
])  # fmt: skip
def test_dbutils_fs_refuses_to_escape_dbfs(kiln, api, call):
    tag = uuid.uuid4().hex[:8]
    ctx = api.create()
    body = api.run(ctx, call.format(tag=tag))
    assert body["status"] == "Error", body
    assert_error_result(body["results"])
    root = Path(kiln.shared_dir)
    assert not (root / f"escaped-{tag}.txt").exists()
    assert not (root / f"escaped-dir-{tag}").exists()
    assert not (root / "dbfs" / f"copied-{tag}").exists()


def test_dbutils_fs_ls_file_scheme_reports_file_paths(api):
    # a local directory user code may read (it runs as an unprivileged user when Kiln is root)
    tmp_path = Path(tempfile.mkdtemp(prefix="kiln-file-scheme-"))
    tmp_path.chmod(0o755)
    (tmp_path / "local.txt").write_text("x")
    ctx = api.create()
    paths = json.loads(api.value(ctx, f"import json\ndbutils.notebook.exit(json.dumps([f.path for f in dbutils.fs.ls('file:{tmp_path}')]))"))
    assert paths == [f"file:{tmp_path}/local.txt"], paths


def test_dbutils_notebook_exit(w, cluster, sdk_context, api):
    ctx = sdk_context()
    assert sdk_text(w, cluster, ctx, "dbutils.notebook.exit('v')") == "v"
    # the exit value is the whole result; output before it is dropped, code after it does not run
    assert sdk_text(w, cluster, ctx, "print('noise')\ndbutils.notebook.exit('only this')\nafter = 1") == "only this"
    assert sdk_run(w, cluster, ctx, "after").status == CommandStatus.ERROR
    # the remote-dbutils pattern of the SDK: JSON through notebook.exit
    assert json.loads(sdk_text(w, cluster, ctx, "import json\ndbutils.notebook.exit(json.dumps({'a': [1, 2]}))")) == {"a": [1, 2]}
    # the context lives on
    assert api.context_status(ctx) == "Running"


def test_matplotlib_figure_is_an_image(kiln, api):
    ctx = api.create()
    probe = api.run(ctx, "import matplotlib")
    if probe["status"] == "Error" and "No module named 'matplotlib'" in probe["results"].get("cause", ""):
        pytest.xfail("matplotlib is not installed in the kernel runtime (python/requirements-runtime.txt)")
    body = api.run(ctx, "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])")
    assert body["status"] == "Finished", body
    r = body["results"]
    assert r["resultType"] == "image", r
    m = re.fullmatch(r"/plots/([0-9a-f-]{36})\.png", r["fileName"])
    assert m, r
    png = Path(kiln.shared_dir) / "dbfs" / "FileStore" / "plots" / f"{m.group(1)}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # two figures -> images
    body = api.run(ctx, "plt.figure(); plt.plot([1]); plt.figure(); plt.plot([2])")
    r = body["results"]
    assert r["resultType"] == "images" and len(r["fileNames"]) == 2, r
    # figures are consumed: the next command is text again
    assert api.run(ctx, "1")["results"] == {"resultType": "text", "data": "1"}


# =============================================================================================
# kernel processes and cluster lifecycle


def test_destroyed_contexts_kernels_exit(kiln, api):
    cid = api.cluster_id
    ctxs = [api.create() for _ in range(3)]
    procs = [kernel_pid(api, c)[1] for c in ctxs]
    assert len({p.pid for p in procs}) == 3
    for p in procs:
        assert p.cluster_id == cid and "kiln_kernel" in p.cmdline, p

    def live_extra():
        """Kernel processes of the cluster that are not ours: must settle at exactly one (warm)."""
        ours = {p.pid for p in procs if is_alive(p)}
        return [p for p in kernel_procs(cid) if p.pid not in ours]

    wait_for(lambda: len(live_extra()) == 1, 60, f"exactly one warm kernel besides our contexts ({kernel_procs(cid)})", 0.1)
    for ctx in ctxs[:2]:
        api.destroy(ctx)
    wait_for(lambda: not is_alive(procs[0]) and not is_alive(procs[1]), 30, "kernels of destroyed contexts to exit", 0.05)
    assert is_alive(procs[2]), "destroying other contexts killed a live context's kernel"
    assert api.value(ctxs[2], "'alive'") == "'alive'"
    api.destroy(ctxs[2])
    wait_for(lambda: not is_alive(procs[2]), 30, "kernel of the last destroyed context to exit", 0.05)
    wait_for(lambda: len(kernel_procs(cid)) == 1, 60, f"only the warm kernel left ({kernel_procs(cid)})", 0.1)


def test_contexts_end_when_cluster_restarts(kiln, w):
    cid = create_cluster(w, kiln, "cmd-restart")
    api = Rest12(kiln, cid)
    try:
        ctx = api.create()
        sql = api.create("sql")
        _, proc = kernel_pid(api, ctx)
        busy = api.execute(ctx, SLEEPER)
        wait_running(api, ctx, busy)
        w.clusters.restart_and_wait(cid, timeout=SDK_TIMEOUT)
        for c in (ctx, sql):
            wait_for(lambda c=c: api.context_status(c) == "Error", 30, f"context {c} to end after restart", 0.05)
        body = api.wait(ctx, busy)
        assert body["status"] == "Error", body
        assert_error_result(body["results"])
        wait_for(lambda: not is_alive(proc), 30, "kernel of an ended context to exit", 0.05)
        with pytest.raises(BadRequest):
            w.command_execution.execute(cluster_id=cid, context_id=ctx, language=Language.PYTHON, command="1")
        # the restarted cluster takes new contexts, and only its new kernels run
        fresh = api.create()
        assert api.value(fresh, "spark.range(4).count()") == "4"
        assert proc.pid not in {p.pid for p in kernel_procs(cid)}
    finally:
        api.destroy_all()
        drop_cluster(w, cid)


def test_contexts_end_when_cluster_terminates(kiln, w):
    cid = create_cluster(w, kiln, "cmd-term")
    api = Rest12(kiln, cid)
    try:
        ctx = api.create()
        _, proc = kernel_pid(api, ctx)
        w.clusters.delete_and_wait(cid, timeout=SDK_TIMEOUT)
        wait_for(lambda: api.context_status(ctx) == "Error", 30, "context to end after terminate", 0.05)
        assert w.command_execution.context_status(cluster_id=cid, context_id=ctx).status == ContextStatus.ERROR
        wait_for(lambda: not kernel_procs(cid), 30, f"every kernel of a terminated cluster to exit ({kernel_procs(cid)})", 0.1)
        wait_for(lambda: not is_alive(proc), 10, f"kernel {proc.pid} to be gone", 0.05)
        # no new context on a TERMINATED cluster
        with pytest.raises(BadRequest):
            w.command_execution.create(cluster_id=cid, language=Language.PYTHON)
        r = api.s.post(api.url("contexts/create"), data={"clusterId": cid, "language": "sql"})
        assert_error(r, 400, "INVALID_STATE")
        # ... until it is started again
        w.clusters.start_and_wait(cid, timeout=SDK_TIMEOUT)
        again = api.create()
        assert api.value(again, "'back'") == "'back'"
    finally:
        api.destroy_all()
        drop_cluster(w, cid)


def test_cluster_terminated_while_warm_kernel_starts_leaves_no_kernel(kiln, w):
    """Terminate a cluster the moment it is RUNNING, while its warm kernel is still starting.

    Every process of a terminated cluster must go; a kernel has nothing to connect to any more.
    (30 s is an upper bound for killing a process, not a performance figure.)
    """
    cid = kiln.track(w.clusters.create(cluster_name=unique("cmd-quick"), spark_version=SPARK_VERSION, num_workers=0,
                                       autotermination_minutes=0).cluster_id)  # fmt: skip
    try:
        wait_cluster_state(w, cid, State.RUNNING, fail_on=BAD, interval=0.02)
        w.clusters.delete(cid)
        wait_cluster_state(w, cid, State.TERMINATED, fail_on=(State.ERROR,))
        wait_for(lambda: not kernel_procs(cid), 30,
                 f"the kernels of terminated cluster {cid} to exit ({kernel_procs(cid)})", 0.1)  # fmt: skip
    finally:
        drop_cluster(w, cid)


def test_running_command_keeps_cluster_from_autoterminating(kiln, w):
    # the session server counts an autotermination "minute" as 1 s: 10 minutes = 10 s idle
    cid = create_cluster(w, kiln, "cmd-idle", autotermination_minutes=10)
    api = Rest12(kiln, cid)
    try:
        ctx = api.create()
        cmd = api.execute(ctx, "import time\ntime.sleep(14)\n'slept'")
        states = set()

        def finished():
            states.add(w.clusters.get(cid).state)
            body = api.status(ctx, cmd)
            return body if body["status"] in TERMINAL else None

        body = wait_for(finished, 120, "the long command to finish", 0.5)
        assert body["status"] == "Finished" and body["results"]["data"] == "'slept'", body
        assert states == {State.RUNNING}, f"cluster left RUNNING while a command ran: {states}"
        # idle afterwards: it terminates for inactivity and its contexts end
        c = wait_cluster_state(w, cid, State.TERMINATED, fail_on=(State.ERROR,), timeout=120, interval=0.5)
        assert c.termination_reason is not None and c.termination_reason.code == TerminationReasonCode.INACTIVITY
        wait_for(lambda: api.context_status(ctx) == "Error", 30, "context to end after autotermination", 0.1)
    finally:
        api.destroy_all()
        drop_cluster(w, cid)
