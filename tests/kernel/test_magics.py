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
