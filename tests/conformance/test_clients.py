"""Clients connect unmodified (issue 11): HTTPS on the workspace port with Kiln's CA, repeated
slashes, the Spark Connect gateway (plaintext HTTP/2 and TLS, authenticated, per-cluster
permissions, session ownership, a terminated cluster started on demand), and the fidelity
gaps the SDK's own suite and the REST 1.2 seed found.

The legacy clients (databricks-api, databricks-cli on 443) and Databricks Connect have their
own module (test_legacy_clients.py)."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
import requests
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied
from databricks.sdk.service.compute import CommandStatus, Language, State

from kiln_helpers import SDK_TIMEOUT, SPARK_VERSION, assert_error, http, non_admin, unique, wait_for

WAIT = datetime.timedelta(seconds=180)


@pytest.fixture(scope="module")
def cluster(kiln, w):
    # Spark Connect clients here run the suite's Python: the cluster runs the same minor
    # (PYSPARK_PYTHON), so their Python UDFs run on it.
    c = w.clusters.create_and_wait(
        cluster_name=unique("clients"), spark_version=SPARK_VERSION, num_workers=0, timeout=SDK_TIMEOUT,
        spark_env_vars={"PYSPARK_PYTHON": f"python{sys.version_info[0]}.{sys.version_info[1]}"},
    )
    assert c.state == State.RUNNING
    yield kiln.track(c.cluster_id)
    try:
        w.clusters.permanent_delete(c.cluster_id)
    except DatabricksError:
        pass


def grant(w, cluster_id: str, user: str, level: str) -> None:
    w.api_client.do(
        "PATCH",
        f"/api/2.0/permissions/clusters/{cluster_id}",
        body={"access_control_list": [{"user_name": user, "permission_level": level}]},
    )


def https_session(kiln, token: str | None = "admin") -> requests.Session:
    s = http(kiln.token if token == "admin" else token)
    s.verify = str(kiln.ca_cert)
    return s


# ---------------------------------------------------------------------------------------------
# HTTPS on the workspace port


def test_a_second_kiln_without_an_https_port_takes_a_free_one(kiln_binary, tmp_path):
    """The default HTTPS port (8443) taken, as by another Kiln on the machine: a Kiln whose settings
    name no HTTPS port listens on a free one and prints it; one that asked for a taken port fails."""
    import re

    from conftest import base_config
    from kiln_helpers import KilnServer

    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", 8443))
        blocker.listen()
    except OSError:
        pass  # already taken: the same situation
    try:
        config = base_config()
        config.pop("server")
        server = KilnServer(kiln_binary, tmp_path / "free", config).start()
        try:
            printed = re.findall(r"listening on https://127\.0\.0\.1:(\d+)", server.log_path.read_text())
            assert printed and int(printed[-1]) != 8443, server.log_path.read_text()
            server.config["server"] = {"https_port": int(printed[-1])}
            assert https_session(server).get(f"https://127.0.0.1:{printed[-1]}/health").ok
        finally:
            server.stop()
        asked = KilnServer(kiln_binary, tmp_path / "asked", base_config(server={"https_port": 8443}))
        with pytest.raises(AssertionError, match="8443"):
            asked.start(timeout=60)
    finally:
        blocker.close()


def test_https_serves_the_api_with_kilns_ca(kiln):
    s = https_session(kiln)
    r = s.get(f"{kiln.https_host}/api/2.1/clusters/list")
    assert r.status_code == 200, r.text
    # the same API over 127.0.0.1 (an IP SAN) and without trusting the CA: refused
    assert https_session(kiln).get(f"https://127.0.0.1:{kiln.https_port}/health").ok
    with pytest.raises(requests.exceptions.SSLError):
        http().get(f"{kiln.https_host}/health")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_https_speaks_tls_1_2_and_1_3_with_alpn(kiln, version):
    ctx = ssl.create_default_context(cafile=str(kiln.ca_cert))
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", kiln.https_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            assert tls.selected_alpn_protocol() == "h2"


def test_the_sdk_works_over_https(kiln, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(kiln.ca_bundle))
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    w = WorkspaceClient(config=Config(host=kiln.https_host, token=kiln.token, retry_timeout_seconds=60))
    assert w.current_user.me().user_name == "admin"
    meta = requests.get(f"{kiln.https_host}/.well-known/databricks-config", verify=str(kiln.ca_cert)).json()
    assert meta["oidc_endpoint"] == f"{kiln.https_host}/oidc", meta


def test_kiln_trust_prints_the_client_settings(kiln, kiln_binary):
    out = subprocess.run(
        [str(kiln_binary), "trust", "--data-dir", str(kiln.data_dir)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines() if line.startswith("export ")
    )
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "NODE_EXTRA_CA_CERTS"):
        assert name in exports, out.stdout
    assert exports["NODE_EXTRA_CA_CERTS"] == str(kiln.ca_cert.resolve())
    bundle = open(exports["REQUESTS_CA_BUNDLE"]).read()
    assert open(kiln.ca_cert).read().strip() in bundle
    assert (kiln.data_dir / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_repeated_slashes_are_collapsed(kiln):
    s = kiln.http()
    r = s.get(f"{kiln.host}//api/2.0/clusters/list")
    assert r.status_code == 200, r.text
    r = s.get(f"{kiln.host}/api//2.0///preview/scim/v2/Me")
    assert r.status_code == 200 and r.json()["userName"] == "admin", r.text
    # a host configured with a trailing slash, as the REST seed writes it
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    w = WorkspaceClient(config=Config(host=kiln.host + "/", token=kiln.token))
    assert w.current_user.me().user_name == "admin"


# ---------------------------------------------------------------------------------------------
# fidelity: what the SDK's own integration suite and the REST seeds need


def test_host_metadata_has_an_account_id(kiln):
    meta = http().get(kiln.url("/.well-known/databricks-config")).json()
    assert len(meta["account_id"]) == 36 and meta["account_id"].count("-") == 4, meta
    assert meta == http().get(kiln.url("/.well-known/databricks-config")).json()


def test_node_types_describe_their_instance(w):
    node = w.clusters.select_node_type(local_disk=True)
    types = {t.node_type_id: t for t in w.clusters.list_node_types().node_types}
    instance = types[node].node_instance_type
    assert instance.local_disks >= 1 and instance.local_disk_size_gb > 0, instance


def test_spark_versions_reach_the_newest_databricks_connect(w):
    keys = [v.key for v in w.clusters.spark_versions().versions]
    assert "19.3.x-scala2.13" in keys and "16.4.x-scala2.12" in keys, keys


def test_legacy_cli_multipart_put_keeps_the_file_part(kiln):
    s = kiln.http()
    path = f"/legacy/{unique('put')}.bin"
    data = bytes(range(256)) * 40
    # what databricks-cli's DbfsService.put sends for `databricks fs cp`
    r = s.post(
        kiln.url("/api/2.0/dbfs/put"), files={"file": ("x.bin", data)}, data={"path": path, "overwrite": "true"}
    )
    assert r.status_code == 200, r.text
    got = s.get(kiln.url("/api/2.0/dbfs/read"), params={"path": path, "length": 1 << 20}).json()
    assert base64.b64decode(got["data"]) == data
    # a multipart put without any file part is an error and creates nothing
    missing = f"/legacy/{unique('none')}.bin"
    r = s.post(kiln.url("/api/2.0/dbfs/put"), files={"path": (None, missing), "overwrite": (None, "true")})
    assert_error(r, 400, "INVALID_PARAMETER_VALUE")
    assert_error(s.get(kiln.url("/api/2.0/dbfs/get-status"), params={"path": missing}), 404, "RESOURCE_DOES_NOT_EXIST")


def test_rest_12_errors_have_the_1_2_body(kiln, cluster):
    s = kiln.http()
    r = s.post(kiln.url("/api/1.2/contexts/create"), data={"language": "python"})
    assert r.status_code == 400 and set(r.json()) == {"error"}, r.text
    r = s.get(kiln.url("/api/1.2/commands/status"), params={"clusterId": cluster, "contextId": "nope", "commandId": "x"})
    assert r.status_code == 404 and set(r.json()) == {"error"}, r.text
    # the SDK reads the text as the message and the status as the kind
    from databricks.sdk.errors import NotFound as SdkNotFound

    w = kiln.client()
    with pytest.raises(SdkNotFound) as e:
        w.command_execution.command_status(cluster_id=cluster, context_id="nope", command_id="x")
    assert str(e.value), e.value
    # credentials are still refused with the workspace's body
    assert_error(http("dapi-wrong").get(kiln.url("/api/1.2/contexts/status")), 401, "UNAUTHENTICATED")


def test_rest_12_seed_shapes(kiln, cluster):
    s = kiln.http()
    ctx = s.post(kiln.url("/api/1.2/contexts/create"), data={"clusterId": cluster, "language": "python"}).json()["id"]
    try:
        wait_for(
            lambda: s.get(kiln.url("/api/1.2/contexts/status"), params={"clusterId": cluster, "contextId": ctx}).json()[
                "status"
            ]
            == "Running",
            180,
            "the context",
        )

        def run(**fields):
            r = s.post(kiln.url("/api/1.2/commands/execute"), **fields)
            assert r.status_code == 200, r.text
            cid = r.json()["id"]

            def done():
                body = s.get(
                    kiln.url("/api/1.2/commands/status"),
                    params={"clusterId": cluster, "contextId": ctx, "commandId": cid},
                ).json()
                return body if body["status"] in ("Finished", "Error", "Cancelled") else None

            return wait_for(done, 180, "the command")

        # the seed's execute-command.json, and its text result with no trailing newline
        body = run(
            json={"clusterId": cluster, "contextId": ctx, "language": "python", "command": 'print("Hello, World!")'}
        )
        assert body["results"] == {"resultType": "text", "data": "Hello, World!"}, body
        # commandFile: the source as an uploaded file
        body = run(
            data={"clusterId": cluster, "contextId": ctx, "language": "python"},
            files={"commandFile": ("job.py", b"x = 20\nprint(x + 22)\n")},
        )
        assert body["results"]["data"] == "42", body
        # commandFile: the path of a file holding the command (seed 002), in DBFS, the
        # workspace or a volume; a missing one is an error naming it
        r = s.post(kiln.url("/api/2.0/dbfs/put"), json={
            "path": "/cmdfiles/job.py", "overwrite": True,
            "contents": base64.b64encode(b"print(6 * 7)\n").decode()})
        assert r.status_code == 200, r.text
        r = s.post(kiln.url("/api/2.0/workspace/import"), json={
            "path": "/Users/admin/cmdfile_job.py", "format": "AUTO", "overwrite": True,
            "content": base64.b64encode(b"print('from the workspace')\n").decode()})
        assert r.status_code == 200, r.text
        for path, expected in (("dbfs:/cmdfiles/job.py", "42"), ("/dbfs/cmdfiles/job.py", "42"),
                               ("/Workspace/Users/admin/cmdfile_job.py", "from the workspace")):
            body = run(json={"clusterId": cluster, "contextId": ctx, "language": "python", "commandFile": path})
            assert body["status"] == "Finished" and body["results"]["data"] == expected, (path, body)
        body = run(data={"clusterId": cluster, "contextId": ctx, "language": "python", "commandFile": "dbfs:/cmdfiles/job.py"})
        assert body["results"]["data"] == "42", body
        r = s.post(kiln.url("/api/1.2/commands/execute"),
                   json={"clusterId": cluster, "contextId": ctx, "commandFile": "dbfs:/cmdfiles/nope.py"})
        assert r.status_code == 400 and "dbfs:/cmdfiles/nope.py" in r.json()["error"], r.text
        # Databricks' wording of a missing id (the SDK's integration test compares it)
        r = s.post(kiln.url("/api/1.2/commands/execute"), json={"clusterId": cluster, "command": "1"})
        assert r.status_code == 400 and r.json() == {"error": "requirement failed: missing contextId"}, r.text
        # source indented as a whole, as the SDK's dbutils proxy sends it
        source = "\n        import json\n        print(json.dumps({'a': 1}))\n        "
        body = run(json={"clusterId": cluster, "contextId": ctx, "language": "python", "command": source})
        assert body["status"] == "Finished" and body["results"]["data"] == '{"a": 1}', body
        # cancel and destroy answer the id
        r = s.post(kiln.url("/api/1.2/commands/execute"), data={"clusterId": cluster, "contextId": ctx, "command": "import time; time.sleep(60)"})
        command = r.json()["id"]
        r = s.post(kiln.url("/api/1.2/commands/cancel"), data={"clusterId": cluster, "contextId": ctx, "commandId": command})
        assert r.status_code == 200 and r.json() == {"id": command}, r.text
    finally:
        r = s.post(kiln.url("/api/1.2/contexts/destroy"), data={"clusterId": cluster, "contextId": ctx})
        assert r.status_code == 200 and r.json() == {"id": ctx}, r.text


def test_rest_12_library_upload_keeps_its_name_and_file_uris_are_for_admins(kiln, w, cluster, tmp_path):
    # a real wheel on Kiln's host
    from test_libraries import build_wheel  # noqa: E402  (the suite's wheel builder)

    name = f"kiln_clients_{unique('w').replace('-', '_')}"
    wheel = tmp_path / f"{name}-1.0.0-py3-none-any.whl"
    wheel.write_bytes(build_wheel(name, "1.0.0", 7))
    s = kiln.http()
    r = s.post(
        kiln.url("/api/1.2/libraries/upload"),
        data={"clusterId": cluster, "name": "my-helper", "language": "python", "uri": f"file:{wheel}"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"language": "python", "uri": f"file:{wheel}"}

    def loaded():
        listed = {i["name"]: i["status"] for i in s.get(kiln.url("/api/1.2/libraries/list"), params={"clusterId": cluster}).json()}
        assert listed.get("my-helper") != "LibraryError", listed
        return listed.get("my-helper") == "LibraryLoaded"

    wait_for(loaded, 300, "the uploaded library to load")
    # Kiln's private files are never a library source; others may not name host files at all
    r = s.post(
        kiln.url("/api/1.2/libraries/upload"),
        data={"clusterId": cluster, "language": "python", "uri": f"file:{kiln.data_dir}/x.whl"},
    )
    assert r.status_code == 400 and "error" in r.json(), r.text
    other = non_admin(kiln, w, "libup")
    grant(w, cluster, other["name"], "CAN_MANAGE")
    token = other["w"].config.token
    r = http(token).post(
        kiln.url("/api/1.2/libraries/upload"),
        data={"clusterId": cluster, "language": "python", "uri": f"file:{wheel}"},
    )
    assert r.status_code == 403 and "admins" in r.json()["error"], r.text


def test_rest_12_library_upload_of_an_http_wheel_url(kiln, cluster, tmp_path):
    import functools
    import http.server
    import threading

    from test_libraries import build_wheel  # noqa: E402  (the suite's wheel builder)

    name = f"kiln_url_{unique('w').replace('-', '_')}"
    (tmp_path / f"{name}-1.0.0-py3-none-any.whl").write_bytes(build_wheel(name, "1.0.0", 9))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s = kiln.http()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{name}-1.0.0-py3-none-any.whl"
        r = s.post(kiln.url("/api/1.2/libraries/upload"),
                   data={"clusterId": cluster, "name": "url-helper", "language": "python", "uri": url})
        assert r.status_code == 200, r.text

        def loaded():
            listed = {i["name"]: i["status"] for i in s.get(kiln.url("/api/1.2/libraries/list"), params={"clusterId": cluster}).json()}
            assert listed.get("url-helper") != "LibraryError", listed
            return listed.get("url-helper") == "LibraryLoaded"

        wait_for(loaded, 300, "the wheel from its URL to load")
        # a URL that names no wheel, or smuggles an option, is refused
        for bad in (f"http://127.0.0.1:1/{name}.tar.gz", "https://h/x-1.whl --index-url http://e", "https://u:p@h/x-1.whl"):
            r = s.post(kiln.url("/api/1.2/libraries/upload"),
                       data={"clusterId": cluster, "language": "python", "uri": bad})
            assert r.status_code == 400, (bad, r.text)
    finally:
        server.shutdown()


def test_token_management_for_admins(kiln, w):
    sp = w.service_principals.create(display_name=unique("obo"))
    obo = w.token_management.create_obo_token(application_id=sp.application_id, comment="ci", lifetime_seconds=600)
    assert obo.token_value and obo.token_info.token_id
    # the token acts as the service principal
    me = http(obo.token_value).get(kiln.url("/api/2.0/preview/scim/v2/Me")).json()
    assert me["userName"] == sp.application_id, me
    listed = {t.token_id: t for t in w.token_management.list()}
    assert obo.token_info.token_id in listed
    assert listed[obo.token_info.token_id].created_by_username == sp.application_id
    got = w.token_management.get(obo.token_info.token_id).token_info
    assert got.comment == "ci"
    # non-admins may not
    other = non_admin(kiln, w, "tm")
    with pytest.raises(PermissionDenied):
        list(other["w"].token_management.list())
    w.token_management.delete(obo.token_info.token_id)
    assert http(obo.token_value).get(kiln.url("/api/2.0/preview/scim/v2/Me")).status_code == 401
    with pytest.raises(NotFound):
        w.token_management.get(obo.token_info.token_id)


# ---------------------------------------------------------------------------------------------
# Spark Connect through Kiln's own ports


SPARK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"  # pyspark-client: UDFs are built for Spark Connect
    from pyspark.sql import SparkSession
    url, table = sys.argv[1], sys.argv[2]
    spark = SparkSession.builder.remote(url).getOrCreate()
    out = {"sum": spark.range(10).selectExpr("sum(id) AS s").collect()[0]["s"]}
    if table != "-":
        spark.range(3).write.saveAsTable(table)
        out["rows"] = spark.table(table).count()
    from pyspark.sql.functions import udf
    out["udf"] = spark.range(3).select(udf(lambda x: x * 2, "long")("id").alias("d")).collect()[-1]["d"]
    print(json.dumps(out))
    """
)


def spark_client(url: str, table: str = "-", env: dict | None = None, timeout: float = 240):
    import os

    # a script file, not `-c`: pyspark then looks for a local Spark home
    script = os.path.join(tempfile.gettempdir(), "kiln_spark_client.py")
    with open(script, "w") as f:
        f.write(SPARK_SCRIPT)
    return subprocess.run(
        [sys.executable, script, url, table],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=tempfile.gettempdir(),  # not the repo: pyspark mistakes its `python/` dir for a Spark home
    )


def test_spark_connect_over_tls_and_plaintext_http2(kiln, w, cluster):
    table = f"main.default.{unique('gw').replace('-', '_')}"
    tls = spark_client(
        f"sc://localhost:{kiln.https_port}/;use_ssl=true;token={kiln.token};x-databricks-cluster-id={cluster}",
        table,
        env={"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(kiln.ca_bundle)},
    )
    assert tls.returncode == 0, tls.stderr[-3000:]
    out = json.loads(tls.stdout.strip().splitlines()[-1])
    assert out["sum"] == 45 and out["rows"] == 3 and out["udf"] == 4, out
    # saveAsTable without a format made a Delta table, as on Databricks
    info = w.tables.get(table)
    assert info.data_source_format.value == "DELTA", info
    plain = spark_client(f"sc://127.0.0.1:{kiln.port}/;x-databricks-cluster-id={cluster};authorization=Bearer {kiln.token}")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert json.loads(plain.stdout.strip().splitlines()[-1])["sum"] == 45


def grpc_failure(result) -> str:
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_spark_connect_refusals(kiln, w, cluster):
    base = f"sc://127.0.0.1:{kiln.port}/"
    err = grpc_failure(spark_client(f"{base};x-databricks-cluster-id={cluster};authorization=Bearer dapi-wrong", timeout=120))
    assert "UNAUTHENTICATED" in err, err[-2000:]
    err = grpc_failure(spark_client(f"{base};x-databricks-cluster-id=0000-000000-nosuch;authorization=Bearer {kiln.token}", timeout=120))
    assert "NOT_FOUND" in err, err[-2000:]
    other = non_admin(kiln, w, "gw")
    token = other["w"].config.token
    err = grpc_failure(spark_client(f"{base};x-databricks-cluster-id={cluster};authorization=Bearer {token}", timeout=120))
    assert "PERMISSION_DENIED" in err, err[-2000:]
    # once allowed to attach, the same user connects
    grant(w, cluster, other["name"], "CAN_ATTACH_TO")
    ok = spark_client(f"{base};x-databricks-cluster-id={cluster};authorization=Bearer {token}")
    assert ok.returncode == 0, ok.stderr[-3000:]


def test_a_spark_session_belongs_to_its_user(kiln, w, cluster):
    import grpc

    other = non_admin(kiln, w, "sess")
    grant(w, cluster, other["name"], "CAN_ATTACH_TO")
    session = "6b1d9f3e-5a8c-4d2b-9e7f-0123456789ab"
    # a ConfigRequest {session_id: 1, operation: 3 (get_all)} encoded by hand
    message = b"\x0a" + bytes([len(session)]) + session.encode() + b"\x1a\x04\x2a\x02\x0a\x00"
    channel = grpc.insecure_channel(f"127.0.0.1:{kiln.port}")
    call = channel.unary_unary("/spark.connect.SparkConnectService/Config", request_serializer=None, response_deserializer=None)

    def config(token):
        return call(message, metadata=[("authorization", f"Bearer {token}"), ("x-databricks-cluster-id", cluster)], timeout=60)

    config(kiln.token)
    with pytest.raises(grpc.RpcError) as e:
        config(other["w"].config.token)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value
    channel.close()


def test_a_terminated_cluster_starts_on_connect(kiln, w):
    c = w.clusters.create_and_wait(
        cluster_name=unique("gw-start"), spark_version=SPARK_VERSION, num_workers=0, timeout=SDK_TIMEOUT
    )
    cid = kiln.track(c.cluster_id)
    try:
        w.clusters.delete_and_wait(cid, timeout=SDK_TIMEOUT)
        import grpc

        channel = grpc.insecure_channel(f"127.0.0.1:{kiln.port}")
        call = channel.unary_unary("/spark.connect.SparkConnectService/Config")
        message = b"\x0a\x04abcd\x1a\x04\x2a\x02\x0a\x00"
        with pytest.raises(grpc.RpcError) as e:
            call(message, metadata=[("authorization", f"Bearer {kiln.token}"), ("x-databricks-cluster-id", cid)], timeout=60)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, e.value
        assert "is in unexpected state Pending" in e.value.details(), e.value.details()
        channel.close()
        assert w.clusters.get(cid).state in (State.PENDING, State.RUNNING)
        w.clusters.wait_get_cluster_running(cid, timeout=SDK_TIMEOUT)
        ok = spark_client(f"sc://127.0.0.1:{kiln.port}/;x-databricks-cluster-id={cid};authorization=Bearer {kiln.token}")
        assert ok.returncode == 0, ok.stderr[-3000:]
    finally:
        w.clusters.permanent_delete(cid)


# ---------------------------------------------------------------------------------------------
# Lakebase clients: the proxy's certificates chain to Kiln's CA, and PGHOST=127.0.0.1 just works


@pytest.fixture(scope="module")
def lakebase_endpoint(w):
    from databricks.sdk.service.postgres import Project, ProjectSpec

    project_id = unique("cli").lower()
    w.postgres.create_project(project=Project(spec=ProjectSpec(display_name="clients")), project_id=project_id).wait()
    yield w.postgres.get_endpoint(f"projects/{project_id}/branches/production/endpoints/primary")
    w.postgres.delete_project(f"projects/{project_id}").wait()


def test_lakebase_verify_full_with_kilns_ca_and_plain_127_0_0_1(kiln, w, lakebase_endpoint):
    import psycopg

    ep = lakebase_endpoint
    token = w.postgres.generate_database_credential(endpoint=ep.name).token
    common = dict(port=kiln.pg_port, user="admin", password=token, dbname="databricks_postgres", connect_timeout=30)
    # the endpoint's own host name, verified against Kiln's CA (a leaf for exactly that name)
    with psycopg.connect(
        host=ep.status.hosts.host, hostaddr="127.0.0.1", sslmode="verify-full", sslrootcert=str(kiln.ca_cert), **common
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # PGHOST=127.0.0.1 with nothing naming the endpoint: the credential names it; the IP is in the certificate
    with psycopg.connect(host="127.0.0.1", sslmode="verify-full", sslrootcert=str(kiln.ca_cert), **common) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("admin",)
    # a certificate for a name that is not Kiln's is never presented
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host="ep-other.example.com", hostaddr="127.0.0.1", sslmode="verify-full", sslrootcert=str(kiln.ca_cert), **common
        )


def test_psql_with_pghost_127_0_0_1(kiln, w, lakebase_endpoint):
    import os
    import shutil

    psql = shutil.which("psql")
    assert psql, "psql is installed with PostgreSQL"
    token = w.postgres.generate_database_credential(endpoint=lakebase_endpoint.name).token
    env = {**os.environ, "PGPASSWORD": token}
    dsn = (
        f"host=127.0.0.1 port={kiln.pg_port} dbname=databricks_postgres user=admin "
        f"sslmode=verify-full sslrootcert={kiln.ca_cert}"
    )
    r = subprocess.run([psql, dsn, "-Atc", "SELECT 'psql ' || current_user"], capture_output=True, text=True,
                       env=env, timeout=60)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip() == "psql admin", r.stderr


def test_lakebase_certificate_names_the_endpoint(kiln, lakebase_endpoint):
    host = lakebase_endpoint.status.hosts.host
    ctx = ssl.create_default_context(cafile=str(kiln.ca_cert))
    with socket.create_connection(("127.0.0.1", kiln.pg_port), timeout=10) as raw:
        raw.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest
        assert raw.recv(1) == b"S"
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
    assert names == [host], names  # exactly this endpoint: Node refuses a two-label wildcard


# ---------------------------------------------------------------------------------------------
# The JavaScript clients (Node): @databricks/sdk-experimental and @databricks/lakebase


@pytest.fixture(scope="module")
def node_clients():
    import os
    import shutil
    from pathlib import Path

    where = os.environ.get("KILN_NODE_CLIENTS")
    if not where or not shutil.which("node"):
        if os.environ.get("CI"):
            pytest.fail("KILN_NODE_CLIENTS is not set: scripts/test installs tests/clients with npm")
        pytest.skip("KILN_NODE_CLIENTS not set (scripts/test installs tests/clients with npm)")
    here = Path(__file__).resolve().parent.parent / "clients"
    for script in here.glob("*.mjs"):
        shutil.copy(script, Path(where) / script.name)  # next to its node_modules
    return Path(where)


def node(where, script: str, env: dict, *args: str):
    import os

    return subprocess.run(
        ["node", str(where / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env},
        cwd=where,
    )


def test_js_sdk_lists_clusters_and_runs_a_command(kiln, cluster, node_clients):
    r = node(node_clients, "sdk.mjs", {"DATABRICKS_HOST": kiln.host, "DATABRICKS_TOKEN": kiln.token}, cluster)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"listed": True, "status": "Finished", "data": "42"}


def test_lakebase_npm_package_with_pghost_127_0_0_1(kiln, lakebase_endpoint, node_clients):
    env = {
        # as README shows: the workspace over HTTPS, Kiln's CA for Node, PGHOST an address
        "DATABRICKS_HOST": kiln.https_host,
        "DATABRICKS_TOKEN": kiln.token,
        "NODE_EXTRA_CA_CERTS": str(kiln.ca_cert),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(kiln.pg_port),
        "PGDATABASE": "databricks_postgres",
        "PGUSER": "admin",
        "PGSSLMODE": "require",
        "LAKEBASE_ENDPOINT": lakebase_endpoint.name,
    }
    r = node(node_clients, "lakebase.mjs", env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"who": "admin", "answer": 42}


def test_a_user_supplied_certificate_replaces_kilns(kiln_factory, tmp_path):
    from kiln_helpers import free_port

    cert, key = tmp_path / "own.crt", tmp_path / "own.key"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kiln.test",
         "-addext", "subjectAltName=DNS:kiln.test,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = kiln_factory(server={"https_port": port, "tls_cert": str(cert), "tls_key": str(key)})
    s = http(server.token)
    s.verify = str(cert)
    assert s.get(f"https://127.0.0.1:{port}/api/2.1/clusters/list").status_code == 200
    # Kiln's own CA does not vouch for it
    with pytest.raises(requests.exceptions.SSLError):
        https_session(server).get(f"https://127.0.0.1:{port}/health")
