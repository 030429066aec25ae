"""Magic commands in the kernel (no engine): every path that runs a command gets them."""

import base64
import http.server
import json
import threading

import pytest

from kiln_kernel import magics
from kiln_kernel.kernel import Kernel


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return Kernel(None, str(tmp_path / "dbfs"), None)


def test_split_reads_the_first_line():
    assert magics.split("%sql SELECT 1") == ("sql", "SELECT 1", "")
    assert magics.split("\n  %pip install x\n") == ("pip", "install x", "")
    assert magics.split("%md\n# Title") == ("md", "", "# Title")
    assert magics.split("x = 1\n%sql") is None
    assert magics.split("print('%sql')") is None


def test_python_magic_and_unknown_magics(kernel):
    assert kernel.execute("sql", "%python\nprint(6 * 7)", {}) == ("Finished", {"resultType": "text", "data": "42"})
    status, result = kernel.execute("python", "%bogus x", {})
    assert status == "Error" and "%bogus is not supported" in result["summary"]
    status, result = kernel.execute("python", "%scala\nval x = 1", {})
    assert status == "Error" and "scala context" in result["cause"]


def test_sql_magic_needs_spark_and_says_so(kernel):
    status, result = kernel.execute("python", "%sql SELECT 1", {})
    assert status == "Error" and "Spark session" in result["summary"]


def test_markdown_renders_without_running(kernel):
    status, result = kernel.execute("python", "%md\n# Hello\nSome **bold** `code` and [a link](https://x.org)\n\n- one\n- two", {})
    assert status == "Finished" and result["data"].startswith("# Hello")
    assert "<h1>Hello</h1>" in result["html"] and "<strong>bold</strong>" in result["html"]
    assert "<li>two</li>" in result["html"] and '<a href="https://x.org">a link</a>' in result["html"]
    assert "<script>" not in magics.markdown("<script>alert(1)</script>")


def test_sh_runs_a_shell(kernel):
    assert kernel.execute("python", "%sh echo hi; echo there", {}) == ("Finished", {"resultType": "text", "data": "hi\nthere"})
    status, result = kernel.execute("python", "%sh\nexit 3", {})
    assert status == "Error" and "status 3" in result["summary"]


def test_fs_verbs_over_dbfs(kernel):
    assert kernel.execute("python", "%fs put /tmp/a.txt hello", {})[0] == "Finished"
    status, result = kernel.execute("python", "%fs ls /tmp", {})
    assert status == "Finished" and result["resultType"] == "table"
    assert result["data"][0][:3] == ["dbfs:/tmp/a.txt", "a.txt", 5]
    assert kernel.execute("python", "%fs head /tmp/a.txt", {}) == ("Finished", {"resultType": "text", "data": "hello"})
    assert kernel.execute("python", "%fs rm /tmp/a.txt", {})[0] == "Finished"
    assert kernel.execute("python", "%fs frobnicate /", {})[0] == "Error"


def test_pip_goes_into_the_contexts_own_directory(kernel, tmp_path):
    status, result = kernel.execute("python", "%pip list", {})
    assert status == "Finished" and "pip" in result["data"].lower()
    status, result = kernel.execute("python", "%pip uninstall -y not-installed-here", {})
    assert status == "Finished" and "not installed in this notebook" in result["data"]
    # a package placed in the context's directory is importable, and restartPython forgets it
    target = tmp_path / "home" / ".kiln-pip"
    (target / "kiln_magic_probe").mkdir(parents=True)
    (target / "kiln_magic_probe" / "__init__.py").write_text("VALUE = 1\n")
    assert kernel.execute("python", "import kiln_magic_probe\nkiln_magic_probe.VALUE", {})[1]["data"] == "1"
    (target / "kiln_magic_probe" / "__init__.py").write_text("VALUE = 2\n")
    assert kernel.execute("python", "x = 5\ndbutils.library.restartPython()", {})[0] == "Finished"
    assert kernel.execute("python", "x", {})[0] == "Error"  # the namespace is fresh
    assert kernel.execute("python", "import kiln_magic_probe\nkiln_magic_probe.VALUE", {})[1]["data"] == "2"


def test_notebook_cells_and_paths():
    source = "# Databricks notebook source\nx = 1\n\n# COMMAND ----------\n\n# MAGIC %sql\n# MAGIC SELECT 1\n"
    assert magics.notebook_cells(source) == [("python", "x = 1"), ("python", "%sql\nSELECT 1")]
    sql = "-- Databricks notebook source\nSELECT 1\n-- COMMAND ----------\nSELECT 2"
    assert magics.notebook_cells(sql) == [("sql", "SELECT 1"), ("sql", "SELECT 2")]
    assert magics.resolve_notebook("./lib", "/Users/a/nb") == "/Users/a/lib"
    assert magics.resolve_notebook("../x/y", "/Users/a/nb") == "/Users/x/y"
    with pytest.raises(magics.MagicError):
        magics.resolve_notebook("./lib", "")


def test_run_brings_another_notebooks_definitions(kernel):
    notebooks = {
        "/Users/a/lib": "# Databricks notebook source\ndef double(x):\n    return 2 * x\n\n# COMMAND ----------\n\n# MAGIC %run ./more\n",
        "/Users/a/more": "# Databricks notebook source\nanswer = double(21)\n",
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            from urllib.parse import parse_qs, urlparse

            path = parse_qs(urlparse(self.path).query)["path"][0]
            ok = path in notebooks and self.headers["Authorization"] == "Bearer t"
            self.send_response(200 if ok else 404)
            self.end_headers()
            if ok:
                self.wfile.write(json.dumps({"content": base64.b64encode(notebooks[path].encode()).decode()}).encode())

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kernel.api.update({"url": f"http://127.0.0.1:{server.server_port}", "credential": "t"})
        status, result = kernel.execute("python", "%run ./lib", {"notebookPath": "/Users/a/main"})
        assert status == "Finished", result
        assert kernel.execute("python", "answer", {}) == ("Finished", {"resultType": "text", "data": "42"})
        status, result = kernel.execute("python", "%run ./missing", {"notebookPath": "/Users/a/main"})
        assert status == "Error" and "not found" in result["summary"]
    finally:
        server.shutdown()


def test_widgets_read_arguments_then_defaults(kernel):
    kernel.execute("python", "dbutils.widgets.text('n', '1')", {})
    assert kernel.execute("python", "dbutils.widgets.get('n')", {})[1]["data"] == "'1'"
    assert kernel.execute("python", "dbutils.widgets.get('n')", {"widgets": {"n": "7"}})[1]["data"] == "'7'"
    assert kernel.execute("python", "dbutils.widgets.getArgument('m', 'd')", {})[1]["data"] == "'d'"
    assert "InputWidgetNotDefined" in kernel.execute("python", "dbutils.widgets.get('zz')", {})[1]["summary"]


def test_notebook_run_uses_a_context_of_its_own(kernel, tmp_path, monkeypatch):
    """A fake REST API whose contexts are kernels of their own: run() creates one, runs the
    notebook's cells there with the arguments as widgets, returns its exit value, destroys it."""
    monkeypatch.setenv("KILN_CLUSTER_ID", "c1")
    notebooks = {"/Users/a/child": "# Databricks notebook source\nx = int(dbutils.widgets.get('x'))\n\n# COMMAND ----------\n\ndbutils.notebook.exit(str(x * 2))\n",
                 "/Users/a/broken": "# Databricks notebook source\n1 / 0\n"}
    contexts, destroyed, results = {}, [], {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, body, code=200):
            self.send_response(code)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def do_GET(self):
            from urllib.parse import parse_qs, urlparse

            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/api/2.0/workspace/export":
                if q["path"] not in notebooks:
                    return self.reply({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}, 404)
                return self.reply({"content": base64.b64encode(notebooks[q["path"]].encode()).decode()})
            if url.path == "/api/1.2/contexts/status":
                return self.reply({"id": q["contextId"], "status": "Running"})
            if url.path == "/api/1.2/commands/status":
                status, result = results[q["commandId"]]
                return self.reply({"id": q["commandId"], "status": status, "results": result})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/1.2/contexts/create":
                contexts[str(len(contexts))] = Kernel(None, str(tmp_path / "dbfs2"), None)
                return self.reply({"id": str(len(contexts) - 1)})
            if self.path == "/api/1.2/commands/execute":
                command = str(len(results))
                results[command] = contexts[body["contextId"]].execute(body["language"], body["command"], body["options"])
                return self.reply({"id": command})
            if self.path == "/api/1.2/contexts/destroy":
                destroyed.append(body["contextId"])
                return self.reply({})

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kernel.api.update({"url": f"http://127.0.0.1:{server.server_port}", "credential": "t"})
        run = "dbutils.notebook.run('./child', 60, {'x': 21})"
        assert kernel.execute("python", run, {"notebookPath": "/Users/a/main"}) == ("Finished", {"resultType": "text", "data": "'42'"})
        assert destroyed == ["0"]
        assert kernel.execute("python", "x", {})[0] == "Error"  # its definitions stayed in its own context
        status, result = kernel.execute("python", "dbutils.notebook.run('/Users/a/broken', 60)", {})
        assert status == "Error" and "ZeroDivisionError" in result["summary"] and destroyed == ["0", "1"]
    finally:
        server.shutdown()


def test_job_task_values_pass_between_tasks(kernel):
    # a task sets values: they come back with its command's results
    status, result = kernel.execute("python", "dbutils.jobs.taskValues.set('rows', 3)\nprint('set')", {})
    assert status == "Finished" and result["taskValues"] == {"rows": 3}, result
    # a later task reads them (Kiln passes the upstream values with its command)
    upstream = {"taskValues": {"ingest": {"rows": 3}}}
    assert kernel.execute("python", "print(dbutils.jobs.taskValues.get('ingest', 'rows'))", upstream) == (
        "Finished", {"resultType": "text", "data": "3"})
    assert kernel.execute("python", "print(dbutils.jobs.taskValues.get('ingest', 'nope', default=7))", upstream)[1]["data"] == "7"
    status, result = kernel.execute("python", "dbutils.jobs.taskValues.get('other', 'rows')", upstream)
    assert status == "Error" and "not an upstream task" in result["cause"], result
    # a value must be JSON; a command that sets nothing reports nothing
    status, result = kernel.execute("python", "dbutils.jobs.taskValues.set('x', object())", {})
    assert status == "Error" and "taskValues" not in result
    assert "taskValues" not in kernel.execute("python", "print(1)", {})[1]
