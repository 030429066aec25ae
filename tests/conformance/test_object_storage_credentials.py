"""Engine credentials scoped to the object-store root (issue 26): with `[storage] engine_role_arn`,
engines and pipeline workers never hold Kiln's key. Each fetches (and fetches again before expiry) a
session of the role from Kiln's loopback credentials endpoint, with a session policy allowing only the
root's prefix; user code in the engine can read and write tables on the root and nothing else in the
bucket. moto runs with IAM enforced (`moto_sts.py` adds AssumeRole session policies to moto's checks):
Kiln's own key is an IAM user's; the role's own policy allows the whole bucket, so what keeps user code
out of the rest of the bucket is the session policy Kiln attaches."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
import pytest
import requests
from databricks.sdk.service.compute import CommandStatus, Language

from conftest import base_config
from kiln_helpers import SPARK_VERSION, KilnServer, engine_main_proc, start_moto, unique

BUCKET = "kiln-scoped-test"
PREFIX = "tenant-b/root"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/kiln-engines"
ENDPOINT_PATH = "/kiln/engine-credentials"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    proc, endpoint = start_moto("127.0.0.1", tmp_path_factory.mktemp("moto-iam"), iam_sessions=True)
    yield endpoint
    proc.terminate()
    proc.wait(timeout=30)


def client(service, endpoint, keys):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=keys[0],
                        aws_secret_access_key=keys[1])  # fmt: skip


def enforce_iam(endpoint: str, bucket: str) -> tuple[str, str]:
    """On a fresh moto: Kiln's IAM user and its key, the engines' role (whose own policy allows the whole
    bucket), the bucket with an object outside any root; then IAM is enforced for every later request.
    Returns Kiln's key."""
    setup = ("setup", "setup-secret")
    iam, s3 = client("iam", endpoint, setup), client("s3", endpoint, setup)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="outside/secret.txt", Body=b"not for engines")
    iam.create_user(UserName="kiln")
    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="kiln", PolicyName="all", PolicyDocument=json.dumps(allow_all))
    key = iam.create_access_key(UserName="kiln")["AccessKey"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/kiln"}}]}  # fmt: skip
    iam.create_role(RoleName="kiln-engines", AssumeRolePolicyDocument=json.dumps(trust))
    bucket_wide = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",
                   "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}  # fmt: skip
    iam.put_role_policy(RoleName="kiln-engines", PolicyName="bucket", PolicyDocument=json.dumps(bucket_wide))
    assert requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=5).ok
    keys = (key["AccessKeyId"], key["SecretAccessKey"])
    # IAM is enforced now: an unknown key is refused, Kiln's works.
    with pytest.raises(Exception, match="InvalidAccessKeyId|Forbidden|403"):
        client("s3", endpoint, setup).head_object(Bucket=bucket, Key="outside/secret.txt")
    assert client("s3", endpoint, keys).get_object(Bucket=bucket, Key="outside/secret.txt")["Body"].read() == b"not for engines"
    return keys


@pytest.fixture(scope="module")
def keys(moto):
    return enforce_iam(moto, BUCKET)


@pytest.fixture(scope="module")
def kiln(kiln_binary, tmp_path_factory, moto, keys):
    storage = {"root": f"s3://{BUCKET}/{PREFIX}", "endpoint": moto, "allow_http": True, "region": "us-east-1",
               "access_key_id": keys[0], "secret_access_key": keys[1], "engine_role_arn": ROLE,
               "engine_credentials_seconds": 900}  # fmt: skip
    server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-scoped"), base_config(storage=storage))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def w(kiln):
    return kiln.client()


@pytest.fixture(scope="module")
def cluster(kiln, w):
    c = w.clusters.create_and_wait(cluster_name=unique("scoped"), spark_version=SPARK_VERSION, num_workers=0,
                                   timeout=datetime.timedelta(seconds=300))  # fmt: skip
    yield kiln.track(c.cluster_id)
    w.clusters.permanent_delete(c.cluster_id)


def execute(w, cluster, ctx, command, language=Language.PYTHON):
    return w.command_execution.execute_and_wait(cluster_id=cluster, context_id=ctx, language=language, command=command,
                                                timeout=datetime.timedelta(seconds=300))  # fmt: skip


def run(w, cluster, ctx, command, language=Language.PYTHON):
    res = execute(w, cluster, ctx, command, language)
    assert res.status == CommandStatus.FINISHED and res.results.result_type.value != "error", res.results
    return res.results.data


def engine_env(cluster: str) -> dict[str, str]:
    engine = engine_main_proc(cluster)
    assert engine is not None
    raw = Path(f"/proc/{engine.pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_engines_hold_no_key_of_kilns_and_reach_only_the_root(kiln, w, keys, cluster):
    env = engine_env(cluster)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_ACCESS_KEY_ID" not in env, sorted(env)
    assert keys[1] not in json.dumps(env)
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith(ENDPOINT_PATH)
    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    name = "main.default.scoped_events"
    # A managed table in the root: the engine writes and reads its Delta files with its session.
    run(w, cluster, ctx, f"spark.range(0, 500, 1, 4).selectExpr('id', 'id % 5 AS k').write.saveAsTable('{name}')")
    assert run(w, cluster, ctx, f"print(spark.sql('SELECT count(*), sum(k) FROM {name}').collect()[0][:])").strip() == \
        f"(500, {sum(i % 5 for i in range(500))})"
    assert w.tables.get(name).storage_location.startswith(f"s3://{BUCKET}/{PREFIX}/warehouse/")
    # Kiln's own reads of the log (its key) and its commits.
    history = run(w, cluster, ctx, f"print(spark.sql('DESCRIBE HISTORY {name}').count())")
    assert int(history.strip()) >= 1
    # The rest of the bucket is out of reach of user code in the engine.
    res = execute(w, cluster, ctx, f"spark.read.text('s3://{BUCKET}/outside/secret.txt').collect()")
    assert res.results.result_type.value == "error", res.results
    assert "not for engines" not in (res.results.cause or "") + (res.results.summary or "")
    assert any(s in (res.results.cause or "") for s in ("403", "AccessDenied", "Forbidden", "denied")), res.results.cause
    res = execute(w, cluster, ctx, f"spark.range(3).write.mode('overwrite').parquet('s3://{BUCKET}/outside/planted')")
    assert res.results.result_type.value == "error", res.results
    s3 = client("s3", kiln.config["storage"]["endpoint"], keys)
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="outside/planted").get("Contents")
    # The session's name says whose it is; no secret reaches Kiln's log.
    log = kiln.log_path.read_text()
    assert f"session=kiln-{cluster}" in log
    assert keys[1] not in log
    w.command_execution.destroy(cluster_id=cluster, context_id=ctx)


def test_the_endpoint_answers_a_live_lease_only(kiln, w, cluster):
    url = kiln.url(ENDPOINT_PATH)
    plain = requests.Session()
    plain.trust_env = False
    assert plain.get(url, timeout=10).status_code == 401
    denied = plain.get(url, headers={"Authorization": "0" * 64}, timeout=10)
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    token = engine_env(cluster)["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    answer = plain.get(url, headers={"Authorization": token}, timeout=10)
    assert answer.status_code == 200, answer.text
    creds = answer.json()
    assert set(creds) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert creds["Expiration"].endswith("Z")
    # A user's token is not a lease.
    assert plain.get(url, headers={"Authorization": f"Bearer {kiln.token}"}, timeout=10).status_code == 403
    # The lease ends with its engine.
    other = w.clusters.create_and_wait(cluster_name=unique("scoped-end"), spark_version=SPARK_VERSION, num_workers=0,
                                       timeout=datetime.timedelta(seconds=300)).cluster_id  # fmt: skip
    kiln.track(other)
    ended = engine_env(other)["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    assert plain.get(url, headers={"Authorization": ended}, timeout=10).status_code == 200
    w.clusters.delete_and_wait(other, timeout=datetime.timedelta(seconds=300))
    assert plain.get(url, headers={"Authorization": ended}, timeout=10).status_code == 403
    w.clusters.permanent_delete(other)


def test_a_pipeline_worker_reads_table_logs_with_its_lease(kiln, w, cluster):
    from test_object_storage_tables import source_pipeline

    ctx = w.command_execution.create_and_wait(cluster_id=cluster, language=Language.PYTHON,
                                              timeout=datetime.timedelta(seconds=300)).id  # fmt: skip
    source = "main.default.scoped_source"
    run(w, cluster, ctx, f"spark.range(0, 60).selectExpr('id', 'id % 3 AS k').write.saveAsTable('{source}')")
    pid, target, update = source_pipeline(w, source)
    update()
    # The streaming table read the source's log (the worker's pyarrow client, on its lease).
    run(w, cluster, ctx, f"spark.range(60, 90).selectExpr('id', 'id % 3 AS k').write.mode('append').saveAsTable('{source}')")
    update()
    counts = run(w, cluster, ctx, f"print(spark.sql('SELECT count(*) FROM main.{target}.raw').collect()[0][0], "
                                  f"spark.sql('SELECT sum(n) FROM main.{target}.by_k').collect()[0][0])")  # fmt: skip
    assert counts.strip() == "90 90"
    w.pipelines.delete(pid)
    w.command_execution.destroy(cluster_id=cluster, context_id=ctx)
