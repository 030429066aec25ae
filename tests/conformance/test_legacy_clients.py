"""Clients that insist on https on port 443 (issue 11), unmodified, against a Kiln that serves
HTTPS on 443 (and plain HTTP on 80) with its own CA trusted the way README says
(`kiln trust`): the `databricks-api` package of the REST-usage seed, the legacy
`databricks-cli`, and Databricks Connect (its own venv: it ships its own pyspark).

Binding 443 and 80 needs root (or CAP_NET_BIND_SERVICE); CI runs as root."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
import requests
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.compute import State

from kiln_helpers import SDK_TIMEOUT, non_admin, unique

CONNECT_RUNTIME = "16.4.x-scala2.12"  # at least the databricks-connect client's version


def can_bind(port: int) -> bool:
    import socket

    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture(scope="module")
def kiln443(kiln_factory):
    if not (can_bind(443) and can_bind(80)):
        pytest.skip("ports 443 and 80 need root or CAP_NET_BIND_SERVICE (CI runs as root)")
    return kiln_factory(server={"https_port": 443, "extra_http_ports": [80]})


@pytest.fixture(scope="module")
def trusted_env(kiln443, kiln_binary):
    """The environment README's `kiln trust` step produces."""
    out = subprocess.run(
        [str(kiln_binary), "trust", "--data-dir", str(kiln443.data_dir)], capture_output=True, text=True, check=True
    )
    env = dict(os.environ)
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            name, value = line.removeprefix("export ").split("=", 1)
            env[name] = value
    return env


@pytest.fixture(scope="module")
def cluster443(kiln443):
    w = kiln443.client()
    # databricks-connect 16.1 runs on Python 3.11 here; Databricks Runtime 16.4 runs 3.12,
    # so the cluster asks for the client's minor (PYSPARK_PYTHON) for its UDFs to run.
    c = w.clusters.create_and_wait(
        cluster_name=unique("legacy"), spark_version=CONNECT_RUNTIME, num_workers=0, timeout=SDK_TIMEOUT,
        spark_env_vars={"PYSPARK_PYTHON": "python3.11"},
    )
    assert c.state == State.RUNNING
    return kiln443.track(c.cluster_id)


def run_python(env: dict, code: str, *args: str, python: str | None = None, timeout: float = 300):
    import sys

    script = Path(tempfile.mkdtemp()) / "client.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [python or sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=script.parent,
    )


# ---------------------------------------------------------------------------------------------
# databricks-api (the REST-usage seed's package)


DATABRICKS_API = """
    import base64, json, sys
    from databricks_api import DatabricksAPI
    from requests.exceptions import HTTPError

    token, cluster, scope, path = sys.argv[1:5]
    db = DatabricksAPI(host="localhost", token=token)  # as the seed writes it: https, port 443
    out = {}
    out["clusters"] = [c["cluster_id"] for c in db.cluster.list_clusters().get("clusters", [])]
    out["state"] = db.cluster.get_cluster(cluster_id=cluster)["state"]
    out["spark_versions"] = len(db.cluster.list_spark_versions()["versions"])
    db.dbfs.put(path, contents=base64.b64encode(b"seed bytes").decode(), overwrite=True)
    out["dbfs"] = base64.b64decode(db.dbfs.read(path)["data"]).decode()
    db.workspace.mkdirs("/Shared/" + scope)
    out["workspace"] = [o["path"] for o in db.workspace.list("/Shared/" + scope).get("objects", [])]
    db.secret.create_scope(scope)
    db.secret.put_secret(scope, "k", string_value="v")
    out["secrets"] = [s["key"] for s in db.secret.list_secrets(scope)["secrets"]]
    out["tokens"] = len(db.token.list_tokens()["token_infos"]) >= 1
    out["groups"] = "admins" in db.groups.get_groups()["group_names"]
    out["libraries"] = "statuses" in db.managed_library.all_cluster_statuses()
    group = "g-" + scope
    db.groups.create_group(group)
    db.groups.add_to_group(group, user_name="admin")
    out["members"] = db.groups.get_group_members(group)["members"]
    out["pipelines"] = db.delta_pipelines.list().get("statuses", [])
    try:
        out["jobs"] = db.jobs.list_jobs().get("jobs", [])
    except HTTPError as e:
        out["jobs"] = e.response.status_code
    print(json.dumps(out))
"""


def test_databricks_api_over_443(kiln443, trusted_env, cluster443):
    scope = unique("dbapi")
    path = f"/legacy/{scope}.txt"
    r = run_python(trusted_env, DATABRICKS_API, kiln443.token, cluster443, scope, path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert cluster443 in out["clusters"] and out["state"] == "RUNNING", out
    assert out["spark_versions"] > 0
    assert out["dbfs"] == "seed bytes"
    assert out["workspace"] == [] and out["secrets"] == ["k"], out
    assert out["tokens"] and out["groups"] and out["libraries"], out
    assert out["members"] == [{"user_name": "admin"}] and out["pipelines"] == [], out
    assert out["jobs"] == [], out  # the Jobs API 2.0 paths the legacy client calls are served


def test_databricks_api_start_cluster(kiln443, trusted_env):
    w = kiln443.client()
    c = w.clusters.create_and_wait(
        cluster_name=unique("dbapi-start"), spark_version=CONNECT_RUNTIME, num_workers=0, timeout=SDK_TIMEOUT
    )
    cid = kiln443.track(c.cluster_id)
    try:
        w.clusters.delete_and_wait(cid, timeout=SDK_TIMEOUT)
        code = """
            import sys
            from databricks_api import DatabricksAPI
            db = DatabricksAPI(host="localhost", token=sys.argv[1])
            db.cluster.start_cluster(cluster_id=sys.argv[2])
        """
        r = run_python(trusted_env, code, kiln443.token, cid)
        assert r.returncode == 0, r.stderr[-3000:]
        w.clusters.wait_get_cluster_running(cid, timeout=SDK_TIMEOUT)
    finally:
        w.clusters.permanent_delete(cid)


# ---------------------------------------------------------------------------------------------
# legacy databricks-cli


def cli(env: dict, *args: str, host: str = "https://localhost", token: str = "", timeout: float = 180):
    import shutil
    import sys

    exe = shutil.which("databricks", path=os.path.dirname(sys.executable)) or "databricks"
    full = {**env, "DATABRICKS_HOST": host, "DATABRICKS_TOKEN": token}
    full.pop("DATABRICKS_CONFIG_FILE", None)
    full["HOME"] = tempfile.mkdtemp()  # no ~/.databrickscfg of the machine
    return subprocess.run([exe, *args], capture_output=True, text=True, env=full, timeout=timeout)


def test_legacy_cli_clusters_fs_workspace_secrets(kiln443, trusted_env, cluster443, tmp_path):
    token = kiln443.token
    listed = cli(trusted_env, "clusters", "list", "--output", "JSON", token=token)
    assert listed.returncode == 0, listed.stderr
    assert cluster443 in {c["cluster_id"] for c in json.loads(listed.stdout)["clusters"]}
    # fs cp round trip: the bytes arrive (the CLI's multipart part is named `file`)
    local = tmp_path / "data.bin"
    payload = os.urandom(300_000)
    local.write_bytes(payload)
    target = f"dbfs:/legacy/{unique('cp')}.bin"
    r = cli(trusted_env, "fs", "cp", str(local), target, token=token)
    assert r.returncode == 0, r.stderr
    back = tmp_path / "back.bin"
    r = cli(trusted_env, "fs", "cp", target, str(back), token=token)
    assert r.returncode == 0, r.stderr
    assert back.read_bytes() == payload
    # workspace import/export
    nb = tmp_path / "nb.py"
    nb.write_text("# Databricks notebook source\nprint('legacy')\n")
    ws_path = f"/Shared/{unique('legacy')}"
    r = cli(trusted_env, "workspace", "import", "--language", "PYTHON", str(nb), ws_path, token=token)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out.py"
    r = cli(trusted_env, "workspace", "export", ws_path, str(out), token=token)
    assert r.returncode == 0, r.stderr
    assert "print('legacy')" in out.read_text()
    # secrets
    scope = unique("cli")
    assert cli(trusted_env, "secrets", "create-scope", "--scope", scope, token=token).returncode == 0
    r = cli(trusted_env, "secrets", "put", "--scope", scope, "--key", "k", "--string-value", "v", token=token)
    assert r.returncode == 0, r.stderr
    r = cli(trusted_env, "secrets", "list", "--scope", scope, "--output", "JSON", token=token)
    assert r.returncode == 0 and [s["key"] for s in json.loads(r.stdout)["secrets"]] == ["k"], r.stdout


def test_legacy_cli_over_plain_http_on_80(kiln443, trusted_env):
    r = cli(trusted_env, "clusters", "list", "--output", "JSON", host="http://localhost", token=kiln443.token)
    assert r.returncode == 0, r.stderr
    r = cli(trusted_env, "clusters", "list", host="https://localhost", token="dapi-wrong")
    said = r.stdout + r.stderr
    assert r.returncode != 0 and ("401" in said or "authentication information may be incorrect" in said), said


# ---------------------------------------------------------------------------------------------
# Databricks Connect


CONNECT = """
    import json, os, sys
    from databricks.connect import DatabricksSession

    mode, host, token, cluster, table = sys.argv[1:6]
    if mode == "remote":
        spark = DatabricksSession.builder.remote(host=host, token=token, cluster_id=cluster).getOrCreate()
    elif mode == "env":
        os.environ.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN=token, DATABRICKS_CLUSTER_ID=cluster)
        spark = DatabricksSession.builder.getOrCreate()
    else:
        port = host.rsplit(":", 1)[1]
        spark = DatabricksSession.builder.remote(
            f"sc://localhost:{port}/;token={token};x-databricks-cluster-id={cluster}"
        ).getOrCreate()
    out = {"sum": spark.range(100).selectExpr("sum(id) AS s").collect()[0]["s"]}
    from pyspark.sql.functions import udf
    out["udf"] = spark.range(4).select(udf(lambda x: x + 1, "long")("id").alias("v")).collect()[-1]["v"]
    if table != "-":
        spark.range(5).write.saveAsTable(table)
        out["rows"] = spark.read.table(table).count()
        # the most common notebook write, twice, and back as pandas
        local = spark.createDataFrame([(1, "a"), (2, "b")], "id INT, k STRING")
        local.write.mode("overwrite").option("overwriteSchema", "true").saveAsTable(table)
        local.where("id > 1").write.mode("overwrite").saveAsTable(table)
        out["pandas"] = spark.read.table(table).toPandas().to_dict("records")
        out["python"] = "%d.%d" % sys.version_info[:2]
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def connect_python():
    venv = os.environ.get("KILN_CONNECT_VENV")
    if not venv:
        if os.environ.get("CI"):
            pytest.fail("KILN_CONNECT_VENV is not set: scripts/test creates the databricks-connect venv")
        pytest.skip("KILN_CONNECT_VENV not set (scripts/test creates the databricks-connect venv)")
    return str(Path(venv) / "bin" / "python")


@pytest.mark.parametrize("mode", ["remote", "env", "sc"])
def test_databricks_connect(kiln443, trusted_env, cluster443, connect_python, mode):
    table = f"main.default.{unique('dbc_' + mode).replace('-', '_')}" if mode == "remote" else "-"
    host = f"https://localhost:{kiln443.https_port}" if mode != "env" else "https://localhost"
    r = run_python(trusted_env, CONNECT, mode, host, kiln443.token, cluster443, table, python=connect_python)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["sum"] == 4950 and out["udf"] == 4, out
    if table != "-":
        assert out["rows"] == 5
        assert out["pandas"] == [{"id": 2, "k": "b"}], out
        assert kiln443.client().tables.get(table).data_source_format.value == "DELTA"


@pytest.fixture(scope="module")
def connect312_python():
    venv = os.environ.get("KILN_CONNECT312_VENV")
    if not venv:
        pytest.skip("KILN_CONNECT312_VENV not set (scripts/test creates it when python3.12 is on this host)")
    return str(Path(venv) / "bin" / "python")


def test_the_newest_databricks_connect_on_python_3_12(kiln443, trusted_env, connect312_python):
    # Databricks Runtime 19.3 runs Python 3.12: the cluster's engine runs on a 3.12 runtime,
    # so UDFs of the newest client (which needs 3.12) run.
    w = kiln443.client()
    c = w.clusters.create_and_wait(cluster_name=unique("dbc19"), spark_version="19.3.x-scala2.13",
                                   num_workers=0, timeout=SDK_TIMEOUT)
    kiln443.track(c.cluster_id)
    try:
        running = [e for e in w.clusters.events(c.cluster_id) if e.type.value == "RUNNING"]
        assert running and running[0].details.as_dict().get("current_num_workers") == 0
        table = f"main.default.{unique('dbc312').replace('-', '_')}"
        host = f"https://localhost:{kiln443.https_port}"
        r = run_python(trusted_env, CONNECT, "remote", host, kiln443.token, c.cluster_id, table, python=connect312_python)
        assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["python"] == "3.12" and out["udf"] == 4 and out["sum"] == 4950, out
        assert out["pandas"] == [{"id": 2, "k": "b"}], out
    finally:
        w.clusters.permanent_delete(c.cluster_id)


def test_databricks_connect_refusals(kiln443, trusted_env, cluster443, connect_python):
    host = f"https://localhost:{kiln443.https_port}"
    r = run_python(trusted_env, CONNECT, "remote", host, "dapi-wrong", cluster443, "-", python=connect_python)
    assert r.returncode != 0
    w = kiln443.client()
    other = non_admin(kiln443, w, "dbc")
    r = run_python(
        trusted_env, CONNECT, "sc", host, other["w"].config.token, cluster443, "-", python=connect_python
    )
    assert r.returncode != 0 and "PERMISSION_DENIED" in r.stderr, r.stderr[-3000:]
