"""Clusters whose workers run on Kubernetes (issue 26, part 2), end to end on one machine.

Kiln talks to a Kubernetes API test double (`tests/k8s_double/double.py`, never part of Kiln)
that runs each pod's `sail worker` in its own network namespace (own IP on a bridge) and its
own mount namespace (tmpfs over /tmp and the other private directories), so a worker shares no
disk with the driver. Kiln's engine (the Sail driver) runs in `kubernetes-cluster` mode and asks
Kiln's loopback pods API for worker pods; Kiln builds each pod by its policy and creates it at
the double with its own token, which the engine never sees.

Needs root (namespaces), `ip` and `unshare`; skipped otherwise.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from databricks.sdk.service.compute import AutoScale, Language, State
from databricks.sdk.service.pipelines import NotebookLibrary, PipelineCluster, PipelineLibrary
from databricks.sdk.service.workspace import ImportFormat
from databricks.sdk.service.workspace import Language as NbLanguage

from conftest import base_config, reachable_dir
from kiln_helpers import (
    SPARK_VERSION,
    KilnServer,
    engine_main_proc,
    free_port,
    start_moto,
    unique,
    wait_cluster_state,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"),
    reason="the Kubernetes double needs root, ip and unshare",
)

DOUBLE = Path(__file__).resolve().parents[1] / "k8s_double" / "double.py"
NODE_TYPE = "k8s-2c-2g"
NAMESPACE = "kiln-test"
IMAGE = "kiln-engine:test"
# Sail's driver gives a worker up after this long without its heartbeat and fails its
# tasks: long enough that a busy 2-core CI machine is not mistaken for a lost pod.
HEARTBEAT_TIMEOUT = 20
CMD_WAIT = 180


def sail_binary() -> str:
    roots = [os.environ.get("KILN_CACHE_DIR", ""), "/var/cache/kiln", os.path.expanduser("~/.cache/kiln")]
    for root in filter(None, roots):
        found = sorted(glob.glob(os.path.join(root, "runtime-*", "bin", "sail")))
        if found:
            return found[0]
    pytest.fail("no engine runtime with bin/sail found (run `kiln setup`)")


class Double:
    """The Kubernetes API double, and what an administrator (kubectl) sees through it.
    `claims`: PersistentVolumeClaims (name -> the directory the volume holds)."""

    def __init__(self, workdir: Path, claims: dict[str, str]):
        self.port = free_port()
        self.token = "double-admin-" + os.urandom(8).hex()
        self.dir = workdir
        self.url = f"http://127.0.0.1:{self.port}/api/v1/namespaces/{NAMESPACE}/pods"
        self.log = open(workdir / "double.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(DOUBLE), "--port", str(self.port), "--token", self.token,
             "--sail", sail_binary(), "--state-dir", str(workdir),
             *[f"--claim={name}={path}" for name, path in claims.items()]],
            stdout=subprocess.PIPE, stderr=self.log,
        )
        line = self.proc.stdout.readline().decode().strip()
        assert line == "ready", f"the double did not start: {line!r}; see {workdir / 'double.log'}"
        self.kubeconfig = workdir / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
            "contexts: [{name: t, context: {cluster: d, user: kiln, namespace: " + NAMESPACE + "}}]\n"
            f"clusters: [{{name: d, cluster: {{server: 'http://127.0.0.1:{self.port}'}}}}]\n"
            f"users: [{{name: kiln, user: {{token: '{self.token}'}}}}]\n"
        )

    def pods(self, selector: str = "") -> list[dict]:
        r = requests.get(self.url, params={"labelSelector": selector},
                         headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        r.raise_for_status()
        return r.json()["items"]

    def running(self, cluster_id: str) -> list[dict]:
        return [p for p in self.pods(f"kiln.dev/cluster-id={cluster_id}") if p["status"]["phase"] == "Running"]

    def delete(self, name: str) -> None:
        r = requests.delete(f"{self.url}/{name}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        r.raise_for_status()

    def set_capacity(self, pods: int) -> None:
        r = requests.post(f"http://127.0.0.1:{self.port}/double/capacity", json={"pods": pods},
                          headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        r.raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture(scope="module")
def shared_dir() -> str:
    """Kiln's shared tree: in Kiln's pod and, through the claim, in worker pods."""
    return reachable_dir() + "/shared"


@pytest.fixture(scope="module")
def double(tmp_path_factory, shared_dir):
    d = Double(tmp_path_factory.mktemp("k8s-double"), {"kiln-shared": shared_dir})
    yield d
    d.stop()


BUCKET = "kiln-k8s-test"


@pytest.fixture(scope="module")
def s3(double, tmp_path_factory):
    """moto's S3 on the bridge address, which the driver and the worker pods both reach."""
    proc, endpoint = start_moto("10.77.0.1", tmp_path_factory.mktemp("moto"))
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_REGION": "us-east-1",
    }
    assert requests.put(f"{endpoint}/{BUCKET}", timeout=5).ok
    yield env
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def srv(kiln_binary, tmp_path_factory, double, s3, shared_dir):
    config = base_config(
        shared_dir=shared_dir,
        clusters={"warm_engines": 0},
        kubernetes={
            "kubeconfig": str(double.kubeconfig),
            "image": IMAGE,
            "driver_host": "10.77.0.1",
            "worker_heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT,
            "pod_poll_ms": 300,
            "worker_env": s3,
            "shared_volume_claim": "kiln-shared",
            "node_types": [{"node_type_id": NODE_TYPE, "num_cores": 2, "memory_mb": 2048}],
        },
    )
    server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-k8s"), config)
    server.extra_env = {"KILN_ENGINE_LOG": "info"}  # workers started and stopped, for a failure's report
    server.start()
    yield server
    server.stop()


def create(w, srv, **kw) -> str:
    cid = w.clusters.create(cluster_name=unique("k8s"), spark_version=SPARK_VERSION,
                            node_type_id=NODE_TYPE, autotermination_minutes=0, **kw).cluster_id
    srv.cluster_ids.add(cid)
    wait_cluster_state(w, cid, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    return cid


@pytest.fixture(scope="module")
def cluster(srv):
    w = srv.client()
    cid = create(w, srv, num_workers=2)
    yield cid
    w.clusters.delete(cid)


def engine_log_tail(cid: str, lines: int = 60) -> str:
    """The end of the cluster's engine log (in the shared tree's engines/<cluster_id>)."""
    for path in glob.glob(f"/tmp/kiln-shared-test-*/*/engines/{cid}/engine.log"):
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    return "(no engine log)"


def run(w, cid: str, ctx: str, code: str):
    res = w.command_execution.execute_and_wait(
        cluster_id=cid, context_id=ctx, language=Language.PYTHON, command=code, timeout=__import__("datetime").timedelta(seconds=CMD_WAIT)
    )
    if res.results.result_type.value == "error":
        # Shown with a failing test's captured output: what the engine did with its workers.
        print(f"engine log of {cid}:\n{engine_log_tail(cid)}")
    return res


def context(w, cid: str) -> str:
    return w.command_execution.create_and_wait(
        cluster_id=cid, language=Language.PYTHON, timeout=__import__("datetime").timedelta(seconds=CMD_WAIT)
    ).id


def run_pipeline(w, sql: str, cluster: PipelineCluster) -> tuple[str, str]:
    """A SQL notebook as a pipeline on `cluster`, updated once: (pipeline id, target schema)."""
    path = f"/Users/admin/{unique('k8s-dlt')}/notebook"
    w.workspace.mkdirs(path.rsplit("/", 1)[0])
    w.workspace.import_(path=path, format=ImportFormat.SOURCE, language=NbLanguage.SQL,
                        content=base64.b64encode(sql.encode()).decode(), overwrite=True)
    target = unique("k8s").replace("-", "_")
    pid = w.pipelines.create(name=unique("k8s-pipeline"), target=target, development=False, clusters=[cluster],
                             libraries=[PipelineLibrary(notebook=NotebookLibrary(path=path))]).pipeline_id
    update = w.pipelines.start_update(pid).update_id

    def done():
        u = w.pipelines.get_update(pipeline_id=pid, update_id=update).update
        return u if u.state.value in ("COMPLETED", "FAILED", "CANCELED") else None

    u = wait_for(done, CMD_WAIT, "the pipeline update", 0.5)
    assert u.state.value == "COMPLETED", [e.message for e in w.pipelines.list_pipeline_events(pipeline_id=pid)][:10]
    return pid, target


GROUP_BY = (
    "rows = spark.range(0, 20_000_000, 1, 16).selectExpr('id % 1000 AS k', 'id AS v')"
    ".groupBy('k').sum('v').collect()\n"
    "print(len(rows), sum(r[1] for r in rows))"
)
WORKERS = (
    "cols = spark.sql('SELECT * FROM system.cluster.workers LIMIT 0').columns\n"
    "sid = spark.client._session_id\n"
    "rows = spark.sql('SELECT ' + ', '.join(f'CAST({c} AS STRING) AS {c}' for c in cols) + "
    "' FROM system.cluster.workers').collect()\n"
    "import json; print(json.dumps([r.asDict() for r in rows if r.session_id == sid and r.status == 'RUNNING']))"
)
EXPECTED = f"1000 {sum(range(20_000_000))}"


def session_workers(w, cid, ctx) -> list[dict]:
    res = run(w, cid, ctx, WORKERS)
    assert res.results.result_type.value == "text", res.results
    return json.loads(res.results.data.strip().splitlines()[-1])


def test_kubernetes_node_types_are_listed(srv):
    types = {t.node_type_id: t for t in srv.client().clusters.list_node_types().node_types}
    assert {"kiln-local", NODE_TYPE} <= set(types)
    assert types[NODE_TYPE].memory_mb == 2048 and types[NODE_TYPE].num_cores == 2


def test_two_workers_on_pods_both_run_a_distributed_aggregation(srv, double, cluster):
    w = srv.client()
    ctx = context(w, cluster)
    assert run(w, cluster, ctx, "print(spark.range(10).count())").results.data.strip() == "10"
    workers = session_workers(w, cluster, ctx)
    assert len(workers) == 2, workers
    pods = {p["status"]["podIP"]: p for p in double.running(cluster)}
    mine = [pods[wk["host"]] for wk in workers]  # each worker is a pod at its own address
    assert all(wk["host"].startswith("10.77.0.") for wk in workers)
    before = {p["metadata"]["name"]: cpu_ticks(int(p["metadata"]["annotations"]["k8s-double/pid"])) for p in mine}
    res = run(w, cluster, ctx, GROUP_BY)
    assert res.results.result_type.value == "text", res.results
    assert res.results.data.strip() == EXPECTED
    after = {p["metadata"]["name"]: cpu_ticks(int(p["metadata"]["annotations"]["k8s-double/pid"])) for p in mine}
    worked = {n: after[n] - before[n] for n in before}
    assert all(t >= 3 for t in worked.values()), f"CPU ticks per worker pod during the query: {worked}"

    # The pods are Kiln's, not the engine's wish: image, resources, labels, no token, no privilege.
    for p in mine:
        c = p["spec"]["containers"][0]
        assert c["image"] == IMAGE and c["command"] == ["sail", "worker"]
        assert c["resources"]["limits"] == {"cpu": "2", "memory": "2048Mi"}
        assert p["spec"]["automountServiceAccountToken"] is False
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert p["metadata"]["labels"]["kiln.dev/cluster-id"] == cluster
        assert p["spec"]["volumes"] == [{"name": "shared", "persistentVolumeClaim": {"claimName": "kiln-shared"}}]
        assert sorted(m["subPath"] for m in c["volumeMounts"]) == ["dbfs", "warehouse"]


def test_the_engine_never_holds_kilns_kubernetes_token(srv, double, cluster):
    engine = engine_main_proc(cluster)
    assert engine is not None
    environ = Path(f"/proc/{engine.pid}/environ").read_bytes().decode(errors="replace")
    assert double.token not in environ
    kubeconfig_path = next(e.split("=", 1)[1] for e in environ.split("\0") if e.startswith("KUBECONFIG="))
    kubeconfig = Path(kubeconfig_path).read_text()
    assert double.token not in kubeconfig and f":{double.port}" not in kubeconfig
    server = kubeconfig.split("server: '", 1)[1].split("'", 1)[0]
    token = kubeconfig.split("token: '", 1)[1].split("'", 1)[0]
    pods_url = f"{server}/api/v1/namespaces/{NAMESPACE}/pods"
    hdr = {"Authorization": f"Bearer {token}"}
    evil = {"metadata": {"name": "sail-worker-evil-1", "labels": {"sail.lakesail.com/worker-manager": "evil"}},
            "spec": {"containers": [{"name": "worker", "image": "x", "command": ["sh", "-c", "id"]}]}}
    r = requests.post(pods_url, json=evil, headers=hdr, timeout=10)
    assert r.status_code == 403 and r.json()["kind"] == "Status", r.text
    assert requests.post(pods_url, json=evil, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    r = requests.delete(pods_url, params={"labelSelector": "app.kubernetes.io/name=sail"}, headers=hdr, timeout=10)
    assert r.status_code == 403, r.text
    r = requests.get(f"{server}/api/v1/namespaces/kube-system/pods", headers=hdr, timeout=10)
    assert r.status_code in (403, 405), r.text
    assert not [p for p in double.pods() if "evil" in p["metadata"]["name"]]


def test_a_lost_worker_pod_is_an_event_and_a_clear_error_and_the_next_query_works(srv, double, cluster):
    w = srv.client()
    ctx = context(w, cluster)
    assert run(w, cluster, ctx, GROUP_BY).results.data.strip() == EXPECTED
    workers = session_workers(w, cluster, ctx)
    pods = {p["status"]["podIP"]: p["metadata"]["name"] for p in double.running(cluster)}
    victim = pods[workers[0]["host"]]
    # A long query, and the pod deleted under it (as `kubectl delete pod` would).
    long_query = GROUP_BY.replace("20_000_000", "2_000_000_000")
    cmd = w.command_execution.execute(cluster_id=cluster, context_id=ctx, language=Language.PYTHON,
                                      command=long_query).response.id
    wait_for(lambda: w.command_execution.command_status(cluster_id=cluster, context_id=ctx, command_id=cmd)
             .status.value == "Running", 60, "the long query to run")
    time.sleep(1.5)
    double.delete(victim)
    res = wait_for(lambda: (lambda r: r if r.status.value in ("Finished", "Error", "Cancelled") else None)(
        w.command_execution.command_status(cluster_id=cluster, context_id=ctx, command_id=cmd)),
        CMD_WAIT, "the long query to end")
    assert res.results.result_type.value == "error", res.results
    assert "NODES_LOST" in res.results.cause and victim in res.results.cause, res.results.cause

    def lost_event():
        events = w.clusters.events(cluster_id=cluster)
        return [e for e in events if e.type.value == "NODES_LOST" and e.details.instance_id == victim]

    wait_for(lost_event, 30, "a NODES_LOST event for the deleted pod")

    def works():
        r = run(w, cluster, ctx, GROUP_BY)
        return r if r.results.result_type.value == "text" else None

    res = wait_for(works, HEARTBEAT_TIMEOUT * 6, "a query to work after the engine replaced its lost worker", 1)
    assert res.results.data.strip() == EXPECTED


SPARK_CONNECT_LONG_QUERY = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(sys.argv[1]).create()
spark.range(4).repartition(4).collect()  # the session's workers are up
print("running", flush=True)
try:
    spark.range(0, 2_000_000_000, 1, 16).selectExpr("id % 1000 AS k", "id AS v").groupBy("k").sum("v").collect()
    print("finished")
except Exception as e:
    print("error:", e)
"""


def test_a_spark_connect_query_that_lost_a_worker_pod_says_nodes_lost(srv, double, cluster):
    """The same lost pod, for a query sent straight through Kiln's Spark Connect gateway
    (Databricks Connect, PySpark): its error carries the NODES_LOST note too."""
    w = srv.client()
    wait_cluster_state(w, cluster, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    before = {p["metadata"]["name"] for p in double.running(cluster)}
    url = f"sc://127.0.0.1:{srv.port}/;x-databricks-cluster-id={cluster};authorization=Bearer {srv.token}"
    script = Path(tempfile.gettempdir()) / "kiln_k8s_long_query.py"
    script.write_text(SPARK_CONNECT_LONG_QUERY)
    proc = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=tempfile.gettempdir())  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # past any warnings the client prints first
            seen.append(line)
            if line.strip() == "running":
                break
        assert seen and seen[-1].strip() == "running", "".join(seen)
        new = wait_for(lambda: [p["metadata"]["name"] for p in double.running(cluster)
                                if p["metadata"]["name"] not in before], 60, "the session's worker pods")  # fmt: skip
        time.sleep(1.5)
        victim = new[0]
        double.delete(victim)
        out, _ = proc.communicate(timeout=CMD_WAIT)
        out = "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "error:" in out, out
    assert "NODES_LOST" in out and victim in out, out


def test_a_pod_no_node_can_take_is_an_add_nodes_failed_event_and_runs_once_placed(srv, double, cluster):
    w = srv.client()
    ctx = context(w, cluster)
    double.set_capacity(len([p for p in double.pods() if p["status"]["phase"] == "Running"]))
    try:
        cmd = w.command_execution.execute(cluster_id=cluster, context_id=ctx, language=Language.PYTHON,
                                          command=GROUP_BY).response.id

        def failed_to_add():
            events = w.clusters.events(cluster_id=cluster)
            return [e for e in events if e.type.value == "ADD_NODES_FAILED"]

        [event, *_] = wait_for(failed_to_add, 60, "an ADD_NODES_FAILED event for a pending pod")
        assert event.details.reason.code.value == "POD_SCHEDULING_FAILURE"
        assert "Unschedulable" in event.details.reason.parameters["detail"]
        pending = {p["metadata"]["name"] for p in double.pods(f"kiln.dev/cluster-id={cluster}")
                   if p["status"]["phase"] == "Pending"}
        assert event.details.instance_id in pending
    finally:
        double.set_capacity(1000)
    res = wait_for(lambda: (lambda r: r if r.status.value in ("Finished", "Error", "Cancelled") else None)(
        w.command_execution.command_status(cluster_id=cluster, context_id=ctx, command_id=cmd)),
        CMD_WAIT, "the query to run once its workers are placed")
    assert res.results.result_type.value == "text" and res.results.data.strip() == EXPECTED, res.results


def test_resize_restarts_the_engine_with_new_worker_limits_and_terminate_deletes_the_pods(srv, double):
    w = srv.client()
    cid = create(w, srv, num_workers=2)
    ctx = context(w, cid)
    assert run(w, cid, ctx, GROUP_BY).results.data.strip() == EXPECTED
    before = {p["metadata"]["name"] for p in double.running(cid)}
    assert len(before) >= 2
    w.clusters.resize(cluster_id=cid, num_workers=1)
    wait_for(lambda: w.clusters.get(cid).num_workers == 1 and w.clusters.get(cid).state == State.RUNNING, 120,
             "the resize to finish")
    wait_for(lambda: not before & {p["metadata"]["name"] for p in double.pods(f"kiln.dev/cluster-id={cid}")}, 30,
             "the old engine's pods to be deleted")
    ctx = context(w, cid)
    res = run(w, cid, ctx, GROUP_BY)
    assert res.results.data.strip() == EXPECTED, res.results
    workers = session_workers(w, cid, ctx)
    assert len(workers) == 1, workers
    w.clusters.delete(cid)
    wait_cluster_state(w, cid, State.TERMINATED)
    wait_for(lambda: not double.pods(f"kiln.dev/cluster-id={cid}"), 30, "the terminated cluster's pods to be deleted")


def test_after_kill_9_kiln_deletes_the_pods_its_engines_left(srv, double):
    w = srv.client()
    cid = create(w, srv, autoscale=AutoScale(min_workers=1, max_workers=2))
    ctx = context(w, cid)
    assert run(w, cid, ctx, GROUP_BY).results.data.strip() == EXPECTED
    left = {p["metadata"]["name"] for p in double.running(cid)}
    assert left
    srv.restart()  # kill -9, then start again: the engine died with Kiln, the pods did not
    still = {p["metadata"]["name"] for p in double.pods(f"kiln.dev/cluster-id={cid}")}
    wait_for(lambda: not (left & {p["metadata"]["name"] for p in double.pods(f"kiln.dev/cluster-id={cid}")}),
             30, f"pods left by the killed Kiln to be deleted (had {sorted(left)}, after restart {sorted(still)})")
    w = srv.client()
    wait_cluster_state(w, cid, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    ctx = context(w, cid)
    assert run(w, cid, ctx, GROUP_BY).results.data.strip() == EXPECTED
    w.clusters.delete(cid)


def test_local_node_types_keep_running_on_this_host(srv, double):
    w = srv.client()
    cid = w.clusters.create(cluster_name=unique("local"), spark_version=SPARK_VERSION,
                            node_type_id="kiln-local", num_workers=1, autotermination_minutes=0).cluster_id
    srv.cluster_ids.add(cid)
    wait_cluster_state(w, cid, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    ctx = context(w, cid)
    # 16 partitions on one worker (Sail's default of 8 task slots per worker refused it)
    res = run(w, cid, ctx, GROUP_BY)
    assert res.results.result_type.value == "text", res.results
    assert res.results.data.strip() == EXPECTED
    assert not double.pods(f"kiln.dev/cluster-id={cid}")
    w.clusters.delete(cid)


def test_a_delta_table_on_s3_written_by_pods_is_read_by_another_cluster(srv, s3):
    w = srv.client()
    table = f"s3://{BUCKET}/{unique('t')}"
    cid = create(w, srv, num_workers=2, spark_env_vars=s3)
    ctx = context(w, cid)
    write = (f"spark.range(0, 1_000_000, 1, 16).selectExpr('id', 'id % 7 AS k').write.format('delta').save('{table}')\n"
             f"df = spark.read.format('delta').load('{table}')\n"
             "print(df.count(), df.groupBy().sum('k').collect()[0][0])")
    res = run(w, cid, ctx, write)
    assert res.results.result_type.value == "text", res.results
    expected = f"1000000 {sum(i % 7 for i in range(1_000_000))}"
    assert res.results.data.strip() == expected
    # Another cluster, on this host, reads what the pods wrote.
    other = w.clusters.create(cluster_name=unique("reader"), spark_version=SPARK_VERSION, node_type_id="kiln-local",
                              num_workers=0, autotermination_minutes=0, spark_env_vars=s3).cluster_id
    srv.cluster_ids.add(other)
    wait_cluster_state(w, other, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    res = run(w, other, context(w, other),
              f"df = spark.read.format('delta').load('{table}')\nprint(df.count(), df.groupBy().sum('k').collect()[0][0])")
    assert res.results.result_type.value == "text", res.results
    assert res.results.data.strip() == expected
    w.clusters.delete(cid)
    w.clusters.delete(other)
    # And a pipeline reads it (its cluster gets the object store's settings like any other).
    _, target = run_pipeline(w, f"CREATE MATERIALIZED VIEW by_k AS SELECT k, count(*) AS n FROM delta.`{table}` GROUP BY k",
                             PipelineCluster(label="default", spark_env_vars=s3))
    reader = create(w, srv, num_workers=0)
    res = run(w, reader, context(w, reader), f"print(spark.sql('SELECT sum(n), count(*) FROM main.{target}.by_k').collect()[0][:])")
    assert res.results.data.strip() == "(1000000, 7)", res.results
    w.clusters.delete(reader)


def test_a_managed_table_written_by_pods_is_read_by_a_local_cluster(srv, double, cluster):
    """Worker pods see the shared tree's warehouse through the claim (and nothing else of
    the host), as the cluster's OS user: a managed table is where every engine reads it."""
    w = srv.client()
    wait_cluster_state(w, cluster, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])  # after a restart
    ctx = context(w, cluster)
    name = f"main.default.{unique('pods').replace('-', '_')}"
    res = run(w, cluster, ctx, f"spark.range(0, 200_000, 1, 16).selectExpr('id', 'id % 7 AS k').write.mode('overwrite').saveAsTable('{name}')\n"
                               "print('written')")
    assert res.results.result_type.value == "text", res.results
    engine = engine_main_proc(cluster)
    engine_uid = Path(f"/proc/{engine.pid}/status").read_text().split("Uid:")[1].split()[0]
    for p in double.running(cluster):
        pid = int(p["metadata"]["annotations"]["k8s-double/pid"])
        assert Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0] == engine_uid
        assert p["spec"]["securityContext"]["runAsUser"] == int(engine_uid)
    other = w.clusters.create(cluster_name=unique("reader"), spark_version=SPARK_VERSION, node_type_id="kiln-local",
                              num_workers=0, autotermination_minutes=0).cluster_id
    srv.cluster_ids.add(other)
    wait_cluster_state(w, other, State.RUNNING, fail_on=[State.TERMINATED, State.ERROR])
    res = run(w, other, context(w, other), f"print(spark.sql('SELECT count(*), sum(k) FROM {name}').collect()[0][:])")
    assert res.results.data.strip() == f"({200_000}, {sum(i % 7 for i in range(200_000))})", res.results
    # A pipeline whose cluster runs on pods reads it and writes a materialized view the local cluster reads.
    pid, target = run_pipeline(w, f"CREATE MATERIALIZED VIEW by_k AS SELECT k, count(*) AS n FROM {name} GROUP BY k",
                               PipelineCluster(label="default", node_type_id=NODE_TYPE, num_workers=2))
    pipeline_cluster = w.pipelines.get(pid).cluster_id
    assert f'worker pod create cluster_id="{pipeline_cluster}"' in srv.log_path.read_text(), "the pipeline ran without pods"
    res = run(w, other, context(w, other), f"print(spark.sql('SELECT sum(n), count(*) FROM main.{target}.by_k').collect()[0][:])")
    assert res.results.data.strip() == "(200000, 7)", res.results
    w.clusters.delete(other)
