"""kiln_kernel.dbt_run without an engine: the project exported from a workspace API (a small fake
HTTP server), the profile Kiln writes, the environment a project's own profile reads, and a fake
`dbt` on PATH that reports what it was given."""

import base64
import json
import os
import stat
import sys
import threading
import http.server
import urllib.parse

import pytest

from kiln_kernel import dbt_run

WORKSPACE = {
    "/Users/a/proj": ("DIRECTORY", None),
    "/Users/a/proj/dbt_project.yml": ("FILE", b"name: shop\nprofile: shop_profile\n"),
    "/Users/a/proj/models": ("DIRECTORY", None),
    "/Users/a/proj/models/m.sql": ("FILE", b"select 1 as x\n"),
    "/Users/a/proj/models/nb": ("NOTEBOOK", b"-- Databricks notebook source\nselect 2\n"),
    "/Users/a/proj/profiles": ("DIRECTORY", None),
    "/Users/a/proj/profiles/profiles.yml": ("FILE", b"shop_profile: {}\n"),
}

FAKE_DBT = """#!{python}
import json, os, sys
args = sys.argv[1:]
profiles = os.environ["DBT_PROFILES_DIR"]
with open(os.path.join(profiles, "profiles.yml")) as f:
    text = f.read()
print("ARGS " + json.dumps(args))
print("FILES " + json.dumps(sorted(os.path.relpath(os.path.join(d, n), os.getcwd()) for d, _, ns in os.walk(os.getcwd()) for n in ns)))
print("PROFILE " + json.dumps(text))
print("ENV " + json.dumps({{k: os.environ.get(k) for k in ("DBT_HOST", "DBT_PORT", "DBT_ORG_ID", "DBT_CLUSTER_ID", "DBT_ACCESS_TOKEN")}}))
print("BUNDLE " + str(os.path.exists(os.environ.get("SSL_CERT_FILE", "/nonexistent"))))
sys.exit(3 if "fail" in args else 0)
"""


class Api(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        path = urllib.parse.parse_qs(url.query)["path"][0]
        if self.headers.get("Authorization") != "Bearer cred-123":
            return self.reply(401, {"error_code": "UNAUTHENTICATED", "message": "no"})
        if path not in WORKSPACE:
            return self.reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"{path} does not exist"})
        kind, content = WORKSPACE[path]
        if url.path.endswith("/get-status"):
            return self.reply(200, {"path": path, "object_type": kind})
        if url.path.endswith("/list"):
            children = [{"path": p, "object_type": k, **({"language": "SQL"} if k == "NOTEBOOK" else {})}
                        for p, (k, _) in WORKSPACE.items() if p.rsplit("/", 1)[0] == path]
            return self.reply(200, {"objects": children})
        return self.reply(200, {"content": base64.b64encode(content).decode()})

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dbt = bin_dir / "dbt"
    dbt.write_text(FAKE_DBT.format(python=sys.executable))
    dbt.chmod(dbt.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("KILN_CLUSTER_ID", "0101-abc")
    yield {"url": f"http://127.0.0.1:{server.server_port}", "credential": "cred-123"}
    server.shutdown()


def spec(**more):
    base = {"commands": ["dbt run --select 'a b'"], "project_directory": "/Workspace/Users/a/proj",
            "connection": {"hostname": "127.0.0.1", "port": 8443, "org_id": "77", "ca_bundle": "PEM"}}
    return base | more


def lines(out, tag):
    return [json.loads(line[len(tag) + 1:]) for line in out.splitlines() if line.startswith(tag + " ")]


def test_a_warehouse_task_gets_a_profile_for_the_projects_profile(api, capsys):
    redacted = set()
    dbt_run.run(api, redacted, spec(warehouse_id="wh1", catalog="main", schema="s"))
    out = capsys.readouterr().out
    assert lines(out, "ARGS") == [["run", "--select", "a b"]]
    assert lines(out, "FILES")[0] == ["dbt_project.yml", "models/m.sql", "models/nb.sql", "profiles/profiles.yml"]
    profile = json.loads(lines(out, "PROFILE")[0])["shop_profile"]["outputs"]["kiln"]
    assert profile["http_path"] == "/sql/1.0/warehouses/wh1" and profile["token"] == "cred-123"
    assert (profile["catalog"], profile["schema"], profile["host"]) == ("main", "s", "127.0.0.1")
    assert profile["connection_parameters"]["_port"] == 8443
    assert "cred-123" in redacted and "BUNDLE True" in out


def test_a_task_without_a_warehouse_reads_its_own_profile_and_stops_at_a_failure(api, capsys):
    with pytest.raises(dbt_run.DbtTaskError) as failed:
        dbt_run.run(api, set(), spec(profiles_directory="profiles", commands=["dbt debug", "dbt fail", "dbt never"]))
    out = capsys.readouterr().out
    assert [a[0] for a in lines(out, "ARGS")] == ["debug", "fail"]
    assert lines(out, "PROFILE")[0] == "shop_profile: {}\n"
    assert lines(out, "ENV")[0] == {"DBT_HOST": "127.0.0.1", "DBT_PORT": "8443", "DBT_ORG_ID": "77",
                                    "DBT_CLUSTER_ID": "0101-abc", "DBT_ACCESS_TOKEN": "cred-123"}
    assert str(failed.value).splitlines()[-1] == "dbt command failed: dbt fail (exit code 3)"


def test_bad_inputs(api):
    with pytest.raises(dbt_run.DbtTaskError, match="start with dbt"):
        dbt_run.run(api, set(), spec(commands=["rm -rf /"], warehouse_id="w"))
    with pytest.raises(dbt_run.DbtTaskError, match="cannot be read"):
        dbt_run.run(api, set(), spec(project_directory="/Users/a/none", warehouse_id="w"))
    with pytest.raises(dbt_run.DbtTaskError, match="not a directory"):
        dbt_run.run(api, set(), spec(project_directory="/Users/a/proj/models/m.sql", warehouse_id="w"))
    with pytest.raises(dbt_run.DbtTaskError, match="inside the project"):
        dbt_run.run(api, set(), spec(profiles_directory="../../etc"))
