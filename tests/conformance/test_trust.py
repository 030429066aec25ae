"""The trust model (ARCHITECTURE.md, "Trust boundary"), line by line, as a
non-admin identity with CAN_ATTACH_TO through the real server and engines:
user code cannot reach Kiln's private state, other users' kernels or other
clusters' environments; credentials it can read are scoped; settings that
reach child processes are checked."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests
from databricks.sdk.errors import InvalidParameterValue, PermissionDenied
from databricks.sdk.service.compute import ClusterAccessControlRequest, ClusterPermissionLevel, Language

from conftest import base_config
from kiln_helpers import KilnServer, assert_error, non_admin, unique, wait_for

SPARK_VERSION = "16.4.x-scala2.12"
MARKER = "kiln-trust-marker-" + unique("m")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="user isolation needs Kiln to run as root")


@pytest.fixture(scope="module")
def server(kiln_binary, tmp_path_factory):
    """A server whose own environment carries a marker no child may inherit."""
    srv = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-trust"), base_config())
    srv.extra_env = {"KILN_TRUST_MARKER": MARKER, "DATABRICKS_TOKEN": MARKER}
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server):
    return server.client()


@pytest.fixture(scope="module")
def cluster(admin):
    return admin.clusters.create_and_wait(cluster_name=unique("trust"), spark_version=SPARK_VERSION, num_workers=0).cluster_id


def attach(admin, cluster_id, user):
    admin.clusters.update_permissions(cluster_id, access_control_list=[
        ClusterAccessControlRequest(user_name=user["name"], permission_level=ClusterPermissionLevel.CAN_ATTACH_TO)])


@pytest.fixture(scope="module")
def alice(server, admin, cluster):
    user = non_admin(server, admin, "alice")
    attach(admin, cluster, user)
    return user


class Ctx:
    """One execution context of a user; .run(code) -> the command's results."""

    def __init__(self, client, cluster_id):
        self.client, self.cluster_id = client, cluster_id
        self.id = client.command_execution.create_and_wait(cluster_id=cluster_id, language=Language.PYTHON).id

    def run(self, code: str):
        r = self.client.command_execution.execute_and_wait(cluster_id=self.cluster_id, context_id=self.id, language=Language.PYTHON, command=code)
        return r.results

    def value(self, code: str) -> str:
        results = self.run(code)
        assert results.result_type.value == "text", results
        return results.data

    def destroy(self):
        self.client.command_execution.destroy(cluster_id=self.cluster_id, context_id=self.id)


@pytest.fixture(scope="module")
def ctx(alice, cluster):
    return Ctx(alice["w"], cluster)


PROBE = """
import json
def probe(fn):
    try:
        fn()
        return "READ"
    except PermissionError:
        return "DENIED"
    except Exception as e:
        return type(e).__name__
"""


def test_private_files_are_out_of_reach_of_python(server, ctx):
    private = [server.data_dir / n for n in ("admin.token", "secrets.key", "kiln.db", "kiln.db-wal")]
    paths = [str(p) for p in private] + [str(server.data_dir / "tls" / "ca.key")]
    code = PROBE + f"""
import os
out = {{p: probe(lambda p=p: open(p, 'rb').read(1)) for p in {paths!r}}}
out['listdir'] = probe(lambda: os.listdir({str(server.data_dir)!r}))
out['logs'] = probe(lambda: os.listdir({str(server.data_dir / 'logs')!r}))
out['cwd'] = os.getcwd()
print(json.dumps(out))
"""
    out = json.loads(ctx.value(code))
    cwd = out.pop("cwd")
    assert set(out.values()) == {"DENIED"}, out
    assert not cwd.startswith(str(server.data_dir)), cwd
    assert all(p.exists() for p in private), "the files probed are real"


def test_private_files_are_out_of_reach_of_the_engine(server, ctx):
    token_path = server.data_dir / "admin.token"
    results = ctx.run(f"spark.read.text('file://{token_path}').collect()")
    assert results.result_type.value == "error", results
    assert server.token not in (results.cause or "") + (results.summary or "")
    # a Python UDF runs inside the engine process: it cannot open the file either
    code = f"""
from pyspark.sql.functions import udf
@udf('string')
def attempt(_):
    try:
        return open({str(token_path)!r}).read()
    except PermissionError:
        return "DENIED"
print(spark.range(1).select(attempt('id')).first()[0])
"""
    assert ctx.value(code).strip() == "DENIED"


def test_children_inherit_nothing_of_kilns_environment(ctx):
    kernel_env = json.loads(ctx.value("import os, json; print(json.dumps(dict(os.environ)))"))
    assert MARKER not in json.dumps(kernel_env)
    assert not any(k.startswith("DATABRICKS_") or k == "KILN_TRUST_MARKER" for k in kernel_env), kernel_env
    engine_env = ctx.value("""
from pyspark.sql.functions import udf
import json
@udf('string')
def env(_):
    import os, json
    return json.dumps(dict(os.environ))
print(spark.range(1).select(env('id')).first()[0])
""")
    assert MARKER not in engine_env
    assert "SAIL_CATALOG__LIST" in engine_env  # the one credential engines hold, scoped below


def engine_token(ctx) -> str:
    raw = ctx.value("""
from pyspark.sql.functions import udf
@udf('string')
def env(_):
    import os
    return os.environ['SAIL_CATALOG__LIST']
print(spark.range(1).select(env('id')).first()[0])
""")
    token = raw.split('token="', 1)[1].split('"', 1)[0]
    assert token
    return token


def test_the_engines_credential_reaches_only_the_catalog(server, ctx):
    s = server.http(engine_token(ctx))
    assert s.get(server.url("/api/2.1/unity-catalog/catalogs")).status_code == 200
    for method, path, body in [
        ("GET", "/api/2.0/clusters/list", None),
        ("GET", "/api/2.0/preview/scim/v2/Users", None),
        ("POST", "/api/2.0/token/create", {"comment": "escalate"}),
        ("GET", "/api/2.0/secrets/scopes/list", None),
        ("POST", "/api/2.0/preview/scim/v2/Users", {"userName": "mallory@example.com"}),
    ]:
        assert_error(s.request(method, server.url(path), json=body), 403, "PERMISSION_DENIED")
    admin = server.http()
    users = admin.get(server.url("/api/2.0/preview/scim/v2/Users")).json().get("Resources", [])
    assert "mallory@example.com" not in [u["userName"] for u in users]


def test_other_kernels_and_other_clusters_are_out_of_reach(server, admin, alice, cluster, ctx):
    bob = non_admin(server, admin, "bob")
    attach(admin, cluster, bob)
    bobs = Ctx(bob["w"], cluster)
    bob_pid = int(bobs.value("import os; print(os.getpid())"))
    other = admin.clusters.create_and_wait(cluster_name=unique("trust-other"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    try:
        engines = Path(server.shared_dir) / "engines"
        code = PROBE + f"""
import os
out = {{
    'environ': probe(lambda: open('/proc/{bob_pid}/environ', 'rb').read(1)),
    'mem': probe(lambda: open('/proc/{bob_pid}/mem', 'rb').read(1)),
    'cwd': probe(lambda: os.listdir('/proc/{bob_pid}/cwd')),
    'other_env': probe(lambda: os.listdir({str(engines / other)!r})),
    'own_env': probe(lambda: os.listdir({str(engines / cluster)!r})),
}}
print(json.dumps(out))
"""
        out = json.loads(ctx.value(code))
        assert out["environ"] == out["mem"] == out["cwd"] == out["other_env"] == "DENIED", out
        assert out["own_env"] == "READ", out  # its own cluster's environment (libraries) is readable
        uids = {ctx.value("import os; print(os.getuid())").strip(), bobs.value("import os; print(os.getuid())").strip()}
        assert len(uids) == 2 and "0" not in uids, uids
    finally:
        bobs.destroy()
        admin.clusters.permanent_delete(other)


def test_a_context_credential_is_its_users_and_dies_with_the_context(server, alice, cluster):
    c = Ctx(alice["w"], cluster)
    credential = c.value("print(dbutils.secrets._api['credential'])").strip()
    s = server.http(credential)
    me = s.get(server.url("/api/2.0/preview/scim/v2/Me"))
    assert me.status_code == 200 and me.json()["userName"] == alice["name"]
    assert_error(s.post(server.url("/api/2.0/preview/scim/v2/Users"), json={"userName": unique("x") + "@example.com"}), 403)
    c.destroy()
    assert_error(s.get(server.url("/api/2.0/preview/scim/v2/Me")), 401)


def test_a_context_credential_dies_when_its_cluster_stops(server, admin, alice):
    cid = admin.clusters.create_and_wait(cluster_name=unique("trust-stop"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
    try:
        attach(admin, cid, alice)
        c = Ctx(alice["w"], cid)
        credential = c.value("print(dbutils.secrets._api['credential'])").strip()
        s = server.http(credential)
        assert s.get(server.url("/api/2.0/preview/scim/v2/Me")).status_code == 200
        admin.clusters.delete_and_wait(cid)
        wait_for(lambda: s.get(server.url("/api/2.0/preview/scim/v2/Me")).status_code == 401, 30, "the credential to be revoked")
    finally:
        admin.clusters.permanent_delete(cid)


@pytest.mark.parametrize("library", [
    {"pypi": {"package": "--help"}},
    {"pypi": {"package": "-r /etc/passwd"}},
    {"pypi": {"package": "six --index-url http://127.0.0.1:9/simple"}},
    {"pypi": {"package": "/etc/passwd"}},
    {"pypi": {"package": "six", "repo": "--trusted-host evil"}},
    {"pypi": {"package": "six", "repo": "file:///etc"}},
    {"whl": "dbfs:/libs/x.tar.gz"},
])  # fmt: skip
def test_library_values_that_pip_would_read_as_options_are_refused(server, admin, cluster, library):
    r = server.http().post(server.url("/api/2.0/libraries/install"), json={"cluster_id": cluster, "libraries": [library]})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    statuses = admin.libraries.cluster_status(cluster)
    assert not [s for s in statuses if s.library.as_dict() == library]


def test_requirements_files_with_options_fail_and_install_nothing(server, admin, cluster):
    libs = Path(server.shared_dir) / "dbfs" / "trust"
    libs.mkdir(parents=True, exist_ok=True)
    (libs / "reqs.txt").write_text("six\n-r /etc/passwd\n")
    path = "dbfs:/trust/reqs.txt"
    server.http().post(server.url("/api/2.0/libraries/install"), json={"cluster_id": cluster, "libraries": [{"requirements": path}]}).raise_for_status()

    def final():
        for s in admin.libraries.cluster_status(cluster):
            if s.library.requirements == path and s.status.value in ("FAILED", "INSTALLED"):
                return s

    status = wait_for(final, 120, "the requirements install to finish")
    assert status.status.value == "FAILED", status
    assert "line 2" in " ".join(status.messages or []), status.messages


@pytest.mark.parametrize("field,value", [
    ("spark_env_vars", {"SAIL_MODE": "local-cluster"}),
    ("spark_env_vars", {"LD_PRELOAD": "/dbfs/evil.so"}),
    ("spark_env_vars", {"PYTHONPATH": "/tmp"}),
    ("spark_env_vars", {"BAD-NAME": "x"}),
    ("spark_conf", {"spark.x": "a\nb"}),
])  # fmt: skip
def test_cluster_settings_for_child_processes_are_checked(admin, field, value):
    with pytest.raises(InvalidParameterValue, match=field):
        admin.api_client.do("POST", "/api/2.1/clusters/create", body={
            "cluster_name": unique("bad-env"), "spark_version": SPARK_VERSION, "num_workers": 0, field: value})


def test_kiln_as_root_from_a_private_home(kiln_binary):
    """The quick start as root from a 0700 home: the files user code needs go to
    /var/lib/kiln/shared/<name>-<hash> and commands and Lakebase work."""
    home = Path(tempfile.mkdtemp(prefix="kiln-private-home-"))
    assert (home.stat().st_mode & 0o777) == 0o700
    config = base_config()
    config.pop("shared_dir")
    config["lakebase"].pop("dir")
    srv = KilnServer(kiln_binary, home / "work", config)
    srv.start()
    shared = None
    try:
        log = srv.log_path.read_text()
        shared = Path(log.split("shared_dir=", 1)[1].split()[0])
        assert str(shared).startswith("/var/lib/kiln/shared/"), shared
        w = srv.client()
        cid = w.clusters.create_and_wait(cluster_name=unique("home"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
        srv.track(cid)
        c = Ctx(w, cid)
        assert c.value("spark.range(4).write.format('delta').save('/tmp/home'); print(spark.read.format('delta').load('/tmp/home').count())").strip() == "4"
        assert (shared / "dbfs" / "tmp" / "home" / "_delta_log").is_dir()
        from databricks.sdk.service.postgres import Project, ProjectSpec

        pid = unique("home").lower()
        w.postgres.create_project(project=Project(spec=ProjectSpec(pg_version=15)), project_id=pid).wait()
        assert (shared / "lakebase").is_dir()
        w.postgres.delete_project(name=f"projects/{pid}").wait()
        w.clusters.permanent_delete(cid)
    finally:
        srv.stop()
        shutil.rmtree(home, ignore_errors=True)
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def unprivileged_server(kiln_binary, work: Path, env: dict, **overrides) -> KilnServer:
    """Kiln started as `nobody` (uid 65534) on a data dir of its own."""
    work.chmod(0o755)
    os.chown(work, 65534, 65534)
    config = base_config(**overrides)
    config.pop("shared_dir")
    config["lakebase"] = {**config["lakebase"], "proxy_port": 0}
    config["lakebase"].pop("dir")
    srv = KilnServer(kiln_binary, work / "w", config)
    for path in (srv.workdir, srv.config_path):
        os.chown(path, 65534, 65534)
    srv.command_prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    srv.extra_env = {"KILN_CACHE_DIR": os.environ.get("KILN_CACHE_DIR", "/var/cache/kiln"), "HOME": str(work), **env}
    return srv.start()


needs_setpriv = pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) runs Kiln as an unprivileged user")


def _sandbox_works() -> bool:
    """Whether bubblewrap can make a sandbox for an unprivileged user here
    (it needs unprivileged user namespaces, which some hosts disable)."""
    if not (shutil.which("bwrap") and shutil.which("setpriv")):
        return False
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "bwrap", "--unshare-all", "--share-net", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


needs_sandbox = pytest.mark.skipif(not _sandbox_works(), reason="bubblewrap cannot make a sandbox for an unprivileged user on this host")


@needs_setpriv
def test_without_isolation_only_admins_run_code(kiln_binary):
    """Kiln not running as root and without a sandbox cannot keep user code
    from its own files, so only admins may run code."""
    work = Path(tempfile.mkdtemp(prefix="kiln-unprivileged-"))
    srv = unprivileged_server(kiln_binary, work, {"KILN_ISOLATION": "none"})
    try:
        assert 'isolation="none"' in srv.log_path.read_text()
        w = srv.client()
        cid = w.clusters.create_and_wait(cluster_name=unique("noiso"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
        srv.track(cid)
        assert Ctx(w, cid).value("import os; print(os.getuid())").strip() == "65534"  # Kiln's own user: admins only
        carol = non_admin(srv, w, "carol")
        attach(w, cid, carol)
        with pytest.raises(PermissionDenied, match="isolation"):
            carol["w"].command_execution.create(cluster_id=cid, language=Language.PYTHON)
        w.clusters.permanent_delete(cid)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


@needs_sandbox
def test_sandbox_keeps_user_code_from_kilns_state(kiln_binary):
    """Kiln not running as root, with bubblewrap: every user may run code, in a
    sandbox that shows neither Kiln's private files nor its processes."""
    work = Path(tempfile.mkdtemp(prefix="kiln-sandboxed-"))
    srv = unprivileged_server(kiln_binary, work, {})
    try:
        assert 'isolation="sandbox"' in srv.log_path.read_text()
        w = srv.client()
        cid = w.clusters.create_and_wait(cluster_name=unique("sandbox"), spark_version=SPARK_VERSION, num_workers=0).cluster_id
        srv.track(cid)
        carol = non_admin(srv, w, "carol")
        attach(w, cid, carol)
        ctx = Ctx(carol["w"], cid)
        token_path = srv.data_dir / "admin.token"
        out = json.loads(ctx.value(PROBE + f"""
import os
pids = [p for p in os.listdir('/proc') if p.isdigit()]
cmdlines = [open(f'/proc/{{p}}/cmdline', 'rb').read().replace(b'\\0', b' ').decode() for p in pids]
print(json.dumps({{
    'token': probe(lambda: open({str(token_path)!r}).read()),
    'db': probe(lambda: open({str(srv.data_dir / 'kiln.db')!r}, 'rb').read(1)),
    'kiln_visible': any('kiln serve' in c for c in cmdlines),
    'dbfs': probe(lambda: os.listdir({str(srv.data_dir / 'dbfs')!r})),
}}))
"""))
        assert out == {"token": "FileNotFoundError", "db": "FileNotFoundError", "kiln_visible": False, "dbfs": "READ"}, out
        assert ctx.value("spark.range(5).write.format('delta').save('/tmp/sbx'); print(spark.read.format('delta').load('/tmp/sbx').count())").strip() == "5"
        udf = ctx.value(f"""
from pyspark.sql.functions import udf
@udf('string')
def attempt(_):
    try:
        return open({str(token_path)!r}).read()
    except OSError as e:
        return type(e).__name__
print(spark.range(1).select(attempt('id')).first()[0])
""")
        assert udf.strip() == "FileNotFoundError", udf
        cmd = carol["w"].command_execution.execute(cluster_id=cid, context_id=ctx.id, language=Language.PYTHON, command="import time\ntime.sleep(600)").response.id
        wait_for(lambda: carol["w"].command_execution.command_status(cluster_id=cid, context_id=ctx.id, command_id=cmd).status.value == "Running", 30, "the command to run")
        res = carol["w"].command_execution.cancel_and_wait(cluster_id=cid, context_id=ctx.id, command_id=cmd)
        assert res.status.value == "Cancelled"
        assert ctx.value("6*7") == "42", "the sandboxed kernel was interrupted, not killed"
        # a Scala context's REPL (a JVM) runs in the sandbox too, as the same user
        if shutil.which("javac"):
            scala = carol["w"].command_execution.create_and_wait(cluster_id=cid, language=Language.SCALA,
                                                                 timeout=datetime.timedelta(seconds=900))
            def scala_run(code):
                return carol["w"].command_execution.execute_and_wait(
                    cluster_id=cid, context_id=scala.id, language=Language.SCALA, command=code).results
            assert scala_run("spark.range(3).count()").data.endswith("Long = 3L")
            seen = scala_run(f'new java.io.File("{token_path}").exists')
            assert seen.data.endswith("Boolean = false"), seen
        # pip runs sandboxed too, into the cluster's environment only
        from databricks.sdk.service.compute import Library, PythonPyPiLibrary

        w.libraries.install(cid, [Library(pypi=PythonPyPiLibrary(package="simplejson==3.19.3"))])

        def installed():
            states = [s.status.value for s in w.libraries.cluster_status(cid) if s.library.pypi]
            return states if states and states[0] in ("INSTALLED", "FAILED") else None

        assert wait_for(installed, 300, "the library to install") == ["INSTALLED"]
        assert Ctx(carol["w"], cid).value("import simplejson; print(simplejson.dumps([1]))").strip() == "[1]"
        w.clusters.permanent_delete(cid)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


@needs_sandbox
def test_sandboxed_pipeline_update_writes_its_tables(kiln_binary):
    """A pipeline update runs its worker and engine in sandboxes (as on a
    laptop where Kiln is not root) and writes real Delta tables."""
    from test_pipelines import SQL_NOTEBOOK, notebook, put_file, sql, wait_update

    work = Path(tempfile.mkdtemp(prefix="kiln-sandboxed-dlt-"))
    srv = unprivileged_server(kiln_binary, work, {})
    try:
        assert 'isolation="sandbox"' in srv.log_path.read_text()
        w = srv.client()
        src = f"/data/{unique('orders')}"
        put_file(srv, f"{src}/a.json", '{"id":1,"amount":10.0}\n{"id":2,"amount":-5.0}\n')
        path = f"/Users/admin/{unique('dlt')}/orders"
        notebook(w, path, SQL_NOTEBOOK)
        target = unique("sbx").replace("-", "_")
        created = srv.http().post(srv.url("/api/2.0/pipelines"), json={
            "name": unique("sandboxed"), "libraries": [{"notebook": {"path": path}}], "target": target,
            "configuration": {"source": src}, "development": False})
        assert created.status_code == 200, created.text
        pid = created.json()["pipeline_id"]
        update = w.pipelines.start_update(pid).update_id
        assert wait_update(w, pid, update).state.value == "COMPLETED"
        assert sql(w, f"SELECT id, amount FROM main.{target}.totals ORDER BY id") == [[1, 10.0], [2, -5.0]]
        w.pipelines.delete(pid)
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
