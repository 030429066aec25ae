"""The kernel's execution semantics, results and dbutils, without Spark.

The protocol tests start the real kernel process (`python -m kiln_kernel.kernel`)
and talk to it over its pipes, as Kiln does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kiln_kernel import results
from kiln_kernel.dbutils import DBUtils
from kiln_kernel.kernel import Kernel, split_sql

PYTHON_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "kiln-compute", "python")


@pytest.fixture
def kernel(tmp_path):
    return Kernel(None, str(tmp_path / "dbfs"), None)


def test_last_expression_and_stdout(kernel):
    status, result = kernel.execute("python", "x = 20\nprint('hi')\nx + 22", {})
    assert status == "Finished"
    assert result == {"resultType": "text", "data": "hi\n42"}


def test_namespace_persists(kernel):
    kernel.execute("python", "counter = [1]", {})
    kernel.execute("python", "counter.append(2)", {})
    assert kernel.execute("python", "counter", {})[1]["data"] == "[1, 2]"


def test_error_has_traceback_from_user_code(kernel):
    status, result = kernel.execute("python", "def f():\n    return 1/0\nf()", {})
    assert status == "Error"
    assert result["resultType"] == "error"
    assert "ZeroDivisionError: division by zero" in result["summary"]
    assert result["cause"].startswith("Traceback (most recent call last):\n  File \"<command>\"")
    assert "kernel.py" not in result["cause"]
    assert isinstance(result["summary"], str) and isinstance(result["cause"], str)


def test_syntax_error_is_an_error_result(kernel):
    status, result = kernel.execute("python", "def (", {})
    assert status == "Error" and "SyntaxError" in result["summary"]


def test_notebook_exit(kernel):
    status, result = kernel.execute("python", "import json\ndbutils.notebook.exit(json.dumps({'a': 1}))\nprint('not reached')", {})
    assert (status, result) == ("Finished", {"resultType": "text", "data": '{"a": 1}', "notebookExitValue": '{"a": 1}'})


def test_sql_without_spark_is_a_clear_error(kernel):
    status, result = kernel.execute("sql", "SELECT 1", {})
    assert status == "Error" and "Spark session" in result["cause"]


def test_display_needs_a_dataframe(kernel):
    status, result = kernel.execute("python", "display(42)", {})
    assert status == "Error" and "TypeError" in result["summary"]


def test_oversized_output_is_truncated(kernel):
    status, result = kernel.execute("python", "print('x' * (results.MAX_TEXT + 10))".replace("results.MAX_TEXT", str(results.MAX_TEXT)), {})
    assert status == "Finished"
    assert result["truncated"] is True
    assert result["data"].endswith(results.TRUNCATION_NOTE)
    assert len(result["data"]) < results.MAX_TEXT + 200


def test_matplotlib_figures_become_images(kernel, tmp_path):
    pytest.importorskip("matplotlib")
    code = "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.figure()\nplt.plot([3, 2])"
    status, result = kernel.execute("python", code, {})
    assert status == "Finished"
    assert result["resultType"] == "images" and len(result["fileNames"]) == 2
    for name in result["fileNames"]:
        path = tmp_path / "dbfs" / "FileStore" / name.lstrip("/")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "code, expected",
    [
        ("SELECT 1", ["SELECT 1"]),
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';' AS s; SELECT 2", ["SELECT ';' AS s", "SELECT 2"]),
        ("-- a comment; here\nSELECT 1", ["SELECT 1"]),
        ("  ;  ", []),
    ],
)
def test_split_sql(code, expected):
    assert split_sql(code) == expected


def test_dbutils_fs_round_trip(tmp_path):
    dbutils = DBUtils(str(tmp_path / "dbfs"))
    dbutils.fs.mkdirs("dbfs:/data")
    dbutils.fs.put("dbfs:/data/a.txt", "hello")
    assert dbutils.fs.head("/data/a.txt") == "hello"
    dbutils.fs.cp("dbfs:/data/a.txt", "dbfs:/data/b.txt")
    dbutils.fs.mv("dbfs:/data/b.txt", "dbfs:/data/c.txt")
    names = [f.name for f in dbutils.fs.ls("dbfs:/data")]
    assert names == ["a.txt", "c.txt"]
    info = dbutils.fs.ls("dbfs:/data/a.txt")[0]
    assert (info.path, info.size) == ("dbfs:/data/a.txt", 5)
    with pytest.raises(FileExistsError):
        dbutils.fs.put("dbfs:/data/a.txt", "again")
    assert dbutils.fs.rm("dbfs:/data", recurse=True)
    assert not (tmp_path / "dbfs" / "data").exists()


@pytest.mark.parametrize("path", ["dbfs:/../outside", "/../../etc/passwd", "dbfs:/a/../../x"])
def test_dbutils_refuses_to_escape_dbfs(tmp_path, path):
    dbutils = DBUtils(str(tmp_path / "dbfs"))
    with pytest.raises(PermissionError):
        dbutils.fs.ls(path)


def test_dbutils_refuses_symlink_escape(tmp_path):
    dbutils = DBUtils(str(tmp_path / "dbfs"))
    os.symlink("/etc", tmp_path / "dbfs" / "link")
    with pytest.raises(PermissionError):
        dbutils.fs.head("dbfs:/link/hostname")


def test_schema_of_uses_json_spark_types():
    types = pytest.importorskip("pyspark.sql.types")
    schema = types.StructType([types.StructField("id", types.LongType()), types.StructField("s", types.StringType())])
    assert results.schema_of(schema) == [
        {"name": "id", "type": '"long"', "metadata": "{}"},
        {"name": "s", "type": '"string"', "metadata": "{}"},
    ]


# ---- the kernel process and its protocol ----------------------------------------------


class KernelProcess:
    def __init__(self, tmp_path):
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR, KILN_DBFS_ROOT=str(tmp_path / "dbfs"))
        env.pop("KILN_SPARK_URL", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "kiln_kernel.kernel"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        assert self.read()["event"] == "ready"

    def send(self, **message):
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def read(self):
        line = self.proc.stdout.readline()
        assert line, "kernel closed its output"
        return json.loads(line)

    def run(self, command_id, code):
        self.send(op="execute", id=command_id, language="python", code=code)
        assert self.read() == {"event": "started", "id": command_id}
        return self.read()

    def close(self):
        self.send(op="exit")
        self.proc.wait(timeout=10)


def test_protocol_runs_commands_in_order(tmp_path):
    k = KernelProcess(tmp_path)
    try:
        assert k.run("1", "x = 1")["status"] == "Finished"
        done = k.run("2", "print('native', flush=True)\nx + 1")
        assert done == {"event": "done", "id": "2", "status": "Finished", "results": {"resultType": "text", "data": "native\n2"}}
    finally:
        k.close()


def test_sigint_cancels_the_running_command_only(tmp_path):
    k = KernelProcess(tmp_path)
    try:
        k.run("1", "kept = 'yes'")
        k.send(op="execute", id="2", language="python", code="import time\ntime.sleep(600)")
        assert k.read()["event"] == "started"
        time.sleep(0.2)
        started = time.monotonic()
        k.proc.send_signal(signal.SIGINT)
        done = k.read()
        assert done["status"] == "Cancelled" and done["id"] == "2"
        assert time.monotonic() - started < 2
        assert k.run("3", "kept")["results"]["data"] == "'yes'"
        k.proc.send_signal(signal.SIGINT)  # idle: ignored, the kernel stays up and answers
        deadline = time.monotonic() + 10
        while sigint_pending(k.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # until the signal is delivered (its handler runs before the next read)
        assert not sigint_pending(k.proc.pid)
        assert k.run("4", "kept")["results"]["data"] == "'yes'"
        assert k.proc.poll() is None
    finally:
        k.close()


def sigint_pending(pid):
    """Whether SIGINT is still pending for the process (not yet delivered)."""
    with open(f"/proc/{pid}/status") as f:
        masks = [int(line.split()[1], 16) for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signal.SIGINT - 1)) for mask in masks)


def test_user_prints_never_corrupt_the_protocol(tmp_path):
    k = KernelProcess(tmp_path)
    try:
        done = k.run("1", "import os\nos.write(1, b'raw fd write\\n')\n'ok'")
        assert done["status"] == "Finished" and done["results"]["data"] == "'ok'"
    finally:
        k.close()


def test_redaction_of_secret_values(kernel):
    kernel.redacted.add("s3cr3t-value")
    status, result = kernel.execute("python", "v = 's3cr3t' + '-value'\nprint('the value is', v)\n[v, v.upper()]", {})
    assert status == "Finished"
    assert "s3cr3t-value" not in result["data"]
    assert result["data"].count("[REDACTED]") == 2
    status, result = kernel.execute("python", "raise ValueError('bad ' + v)", {})
    assert "s3cr3t-value" not in result["summary"] + result["cause"]


def test_redact_reaches_table_cells():
    payload = results.table([["a-secret", 1], ["x", "my a-secret!"]], [], False)
    assert results.redact(payload, {"a-secret"})["data"] == [["[REDACTED]", 1], ["x", "my [REDACTED]!"]]


def test_secrets_without_api_is_a_clear_error(kernel):
    status, result = kernel.execute("python", "dbutils.secrets.get('s', 'k')", {})
    assert status == "Error" and "not available" in result["summary"]


def test_dbfs_paths_map_into_the_dbfs_root(tmp_path):
    from kiln_kernel.kernel import dbfs_to_local

    root = tmp_path / "dbfs"
    root.mkdir()
    assert dbfs_to_local("dbfs:/data/x.csv", str(root)) == "file://" + str(root.resolve() / "data" / "x.csv")
    # A bare absolute path is a DBFS path, as Databricks resolves it.
    assert dbfs_to_local("/FileStore/x.json", str(root)) == "file://" + str(root.resolve() / "FileStore" / "x.json")
    assert dbfs_to_local("file:///local/path", str(root)) == "file:///local/path"
    from kiln_kernel.kernel import map_sql_paths
    assert map_sql_paths("SELECT * FROM json.`/mnt/x` JOIN t", str(root)) == (
        "SELECT * FROM json.`file://" + str(root.resolve() / "mnt" / "x") + "` JOIN t")
    assert map_sql_paths("SELECT '/mnt/x' FROM t", str(root)) == "SELECT '/mnt/x' FROM t"
    with pytest.raises(PermissionError):
        dbfs_to_local("dbfs:/../etc/passwd", str(root))


def test_external_volume_links_resolve_only_into_external_locations(tmp_path, monkeypatch):
    from kiln_kernel.kernel import dbfs_to_local, local_path, map_sql_paths

    root, ext = tmp_path / "dbfs", tmp_path / "ext"
    (root / "Volumes" / "main" / "default").mkdir(parents=True)
    (ext / "landing").mkdir(parents=True)
    (root / "Volumes" / "main" / "default" / "landing").symlink_to(ext / "landing")
    (root / "planted").symlink_to("/etc")
    with pytest.raises(PermissionError):  # no external location configured: the link leads outside
        local_path("/Volumes/main/default/landing/x", str(root))
    monkeypatch.setenv("KILN_EXTERNAL_LOCATIONS", f"{tmp_path / 'other'}{os.pathsep}{ext}")
    assert local_path("/Volumes/main/default/landing/x", str(root)) == str(ext / "landing" / "x")
    assert dbfs_to_local("/Volumes/main/default/landing", str(root)) == f"file://{ext / 'landing'}"
    assert map_sql_paths("CREATE TABLE t USING json LOCATION '/Volumes/main/default/landing'", str(root)) == (
        f"CREATE TABLE t USING json LOCATION 'file://{ext / 'landing'}'")
    assert map_sql_paths("SELECT 'LOCATION x' FROM t", str(root)) == "SELECT 'LOCATION x' FROM t"
    with pytest.raises(PermissionError):
        local_path("/dbfs/planted/hostname", str(root))
    listed = DBUtils(str(root)).fs.ls("/Volumes/main/default/landing")
    assert listed == []
    (ext / "landing" / "a.txt").write_text("x")
    assert [(f.path, f.name) for f in DBUtils(str(root)).fs.ls("dbfs:/Volumes/main/default/landing/")] == [
        ("dbfs:/Volumes/main/default/landing/a.txt", "a.txt")]


def test_volumes_and_dbfs_fuse_paths_reach_local_python(kernel, tmp_path):
    volume = tmp_path / "dbfs" / "Volumes" / "main" / "default" / "landing"
    volume.mkdir(parents=True)
    (volume / "in.csv").write_text("a,b\n1,2\n")
    code = (
        "import os, pandas\n"
        "df = pandas.read_csv('/Volumes/main/default/landing/in.csv')\n"
        "os.makedirs('/Volumes/main/default/landing/out', exist_ok=True)\n"
        "with open('/Volumes/main/default/landing/out/x.txt', 'w') as f: f.write(str(int(df.b.sum())))\n"
        "(sorted(os.listdir('/Volumes/main/default/landing')), open('/dbfs/Volumes/main/default/landing/out/x.txt').read())"
    )
    status, result = kernel.execute("python", code, {})
    assert (status, result["data"]) == ("Finished", "(['in.csv', 'out'], '2')"), result
    assert (volume / "out" / "x.txt").read_text() == "2"
    status, result = kernel.execute("python", "open('/Volumes/../../etc/passwd').read()", {})
    assert status == "Error" and "PermissionError" in result["cause"], result


def test_dbutils_fs_mounts_and_help(tmp_path, capsys):
    dbutils = DBUtils(str(tmp_path / "dbfs"))
    assert [m.mountPoint for m in dbutils.fs.mounts()] == ["/", "/Volumes", "/databricks-datasets"]
    assert dbutils.fs.refreshMounts() is True
    dbutils.fs.help()
    assert "mounts()" in capsys.readouterr().out
    dbutils.fs.put("/Volumes/main/default/v/a.txt", "abc")
    (info,) = dbutils.fs.ls("/Volumes/main/default/v")
    assert (info.path, info.name, info.size) == ("dbfs:/Volumes/main/default/v/a.txt", "a.txt", 3)
    assert info.modificationTime > 0


def test_only_reading_statements_run_lazily_with_their_rows():
    from kiln_kernel.kernel import is_query

    for query in ["SELECT 1", "  -- note\n select * from updates", "(SELECT 1) UNION (SELECT 2)",
                  "WITH a AS (SELECT 1) SELECT * FROM a", "/* x */ VALUES (1)", "FROM t SELECT a", "TABLE t"]:
        assert is_query(query), query
    for statement in ["INSERT INTO t VALUES (1)", "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
                      "CREATE TABLE t AS SELECT 1", "SHOW TABLES", "DESCRIBE HISTORY t", "SET x = 1",
                      "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", ""]:
        assert not is_query(statement), statement


def test_dbfs_paths_go_to_the_object_store_for_spark(tmp_path, monkeypatch):
    from kiln_kernel.kernel import dbfs_to_local, local_to_url, map_sql_paths

    monkeypatch.delenv("KILN_DBFS_URL", raising=False)
    root = tmp_path.resolve()
    assert dbfs_to_local("/Volumes/main/default/v/x.json", str(tmp_path)) == f"file://{root}/Volumes/main/default/v/x.json"
    assert local_to_url(str(root / "pipelines" / "p"), str(tmp_path)) == f"file://{root}/pipelines/p"
    monkeypatch.setenv("KILN_DBFS_URL", "s3://bucket/root/dbfs")
    assert dbfs_to_local("/Volumes/main/default/v/x.json", str(tmp_path)) == "s3://bucket/root/dbfs/Volumes/main/default/v/x.json"
    assert dbfs_to_local("dbfs:/tmp/d/", str(tmp_path)) == "s3://bucket/root/dbfs/tmp/d"
    assert dbfs_to_local("/tmp/a", str(tmp_path)) == "s3://bucket/root/dbfs/tmp/a"
    assert dbfs_to_local("s3://elsewhere/x", str(tmp_path)) == "s3://elsewhere/x"
    assert local_to_url(str(root / "pipelines" / "p" / "system" / "events"), str(tmp_path)) == "s3://bucket/root/dbfs/pipelines/p/system/events"
    assert local_to_url("/elsewhere/x", str(tmp_path)) == "file:///elsewhere/x"
    for bad in ("/Volumes/main/default/v/../../other/v/x", "/Volumes/main/default/v/%2e%2e/%2E./x", "dbfs:/../x"):
        with pytest.raises(PermissionError):
            dbfs_to_local(bad, str(tmp_path))
    # names are literal: '#', '?' and '%' do not end or escape the path
    assert dbfs_to_local("/Volumes/main/default/v/out#1", str(tmp_path)) == "s3://bucket/root/dbfs/Volumes/main/default/v/out%231"
    assert dbfs_to_local("/tmp/a b?.csv", str(tmp_path)) == "s3://bucket/root/dbfs/tmp/a%20b%3F.csv"
    sql = map_sql_paths("SELECT * FROM delta.`/Volumes/main/default/v/t`", str(tmp_path))
    assert sql == "SELECT * FROM delta.`s3://bucket/root/dbfs/Volumes/main/default/v/t`"
