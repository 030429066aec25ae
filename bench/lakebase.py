"""Lakebase benchmarks: prints measured figures (nothing is asserted).

  cold start   suspended endpoint -> first query result at a psycopg client, through the TLS proxy
  branching    create_branch time against database size (pgbench data), parent running (online
               backup) and suspended (offline copy); the clone strategy (reflink or copy) is reported
  pgbench -S   select-only throughput through the proxy (TLS) vs directly on the endpoint's socket

Usage:  python bench/lakebase.py [--sizes-mb 100,1000] [--cold-runs 10] [--pgbench-seconds 10]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests, psycopg (tests/conformance/requirements.txt), pgbench on PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import requests

from bench import default_bin, free_port  # the shared helpers of bench/bench.py


class Server:
    def __init__(self):
        self.work = Path(tempfile.mkdtemp(prefix="kiln-bench-lb-"))
        self.work.chmod(0o711)  # reachable by the unprivileged users user code runs as (when root)
        self.lb_root = Path(f"/tmp/kiln-bench-lakebase-{uuid.uuid4().hex[:8]}")
        self.lb_root.mkdir(mode=0o755)
        os.chmod(self.lb_root, 0o755)
        self.port, self.pg_port = free_port(), free_port()
        (self.work / "kiln.toml").write_text(
            f'[lakebase]\ndir = "{self.lb_root}/lakebase"\nproxy_port = {self.pg_port}\n'
            "min_suspend_seconds = 1\nmin_credential_seconds = 1\n"
        )
        self.proc = subprocess.Popen(
            [str(default_bin()), "serve", "--port", str(self.port), "--data-dir", str(self.work / "data"),
             "--config", str(self.work / "kiln.toml")],
            stdout=open(self.work / "kiln.log", "wb"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        self.token = (self.work / "data" / "admin.token").read_text().strip()
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {self.token}"

    def api(self, method, path, **kw):
        r = self.s.request(method, f"{self.url}/api/2.0/postgres/{path}", timeout=600, **kw)
        if not r.ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json()

    def endpoint(self, project, branch="production", ep="primary"):
        return self.api("GET", f"projects/{project}/branches/{branch}/endpoints/{ep}")

    def credential(self, name):
        return self.api("POST", "credentials", json={"endpoint": name})["token"]

    def connect(self, ep):
        return psycopg.connect(host="127.0.0.1", port=self.pg_port, user="admin", dbname="databricks_postgres",
                               password=self.credential(ep["name"]), sslmode="require",
                               options=f"endpoint={ep['uid']}", autocommit=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        shutil.rmtree(self.lb_root, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def wait_state(srv, project, branch, state):
    deadline = time.time() + 60
    while srv.endpoint(project, branch)["status"]["current_state"] != state:
        if time.time() > deadline:
            raise RuntimeError(f"endpoint did not reach {state}")
        time.sleep(0.05)


def suspend_quickly(srv, project, branch="production"):
    srv.api("PATCH", f"projects/{project}/branches/{branch}/endpoints/primary?update_mask=spec.suspend_timeout_duration",
            json={"spec": {"endpoint_type": "ENDPOINT_TYPE_READ_WRITE", "suspend_timeout_duration": "1s"}})


def cold_start(srv, runs):
    project = "cold"
    srv.api("POST", f"projects?project_id={project}", json={"spec": {}})
    suspend_quickly(srv, project)
    ep = srv.endpoint(project)
    times = []
    for _ in range(runs):
        wait_state(srv, project, "production", "IDLE")
        token = srv.credential(ep["name"])
        t0 = time.perf_counter()
        with psycopg.connect(host="127.0.0.1", port=srv.pg_port, user="admin", dbname="databricks_postgres",
                             password=token, sslmode="require", options=f"endpoint={ep['uid']}") as c:
            c.execute("SELECT 1").fetchone()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def pgbench_env(srv, ep):
    env = dict(os.environ, PGPASSWORD=srv.credential(ep["name"]), PGSSLMODE="require", PGOPTIONS=f"endpoint={ep['uid']}")
    return ["-h", "127.0.0.1", "-p", str(srv.pg_port), "-U", "admin"], env


def fill(srv, project, size_mb):
    ep = srv.endpoint(project)
    args, env = pgbench_env(srv, ep)
    scale = max(1, round(size_mb / 15))
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), *args, "databricks_postgres"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with srv.connect(ep) as c:
        return c.execute("SELECT pg_database_size('databricks_postgres')").fetchone()[0] / 1e6


def branching(srv, sizes):
    out = []
    for size in sizes:
        project = f"size-{size}"
        srv.api("POST", f"projects?project_id={project}", json={"spec": {}})
        actual = fill(srv, project, size)
        t0 = time.perf_counter()
        srv.api("POST", f"projects/{project}/branches?branch_id=online", json={"spec": {"no_expiry": True}})
        online = time.perf_counter() - t0
        suspend_quickly(srv, project)
        wait_state(srv, project, "production", "IDLE")
        t0 = time.perf_counter()
        srv.api("POST", f"projects/{project}/branches?branch_id=offline", json={"spec": {"no_expiry": True}})
        offline = time.perf_counter() - t0
        out.append((actual, online, offline))
        srv.api("DELETE", f"projects/{project}")
    return out


def reflink_supported(root: Path) -> bool:
    a, b = root / "probe-a", root / "probe-b"
    a.write_text("x")
    ok = subprocess.run(["cp", "--reflink=always", str(a), str(b)], capture_output=True).returncode == 0
    a.unlink(missing_ok=True)
    b.unlink(missing_ok=True)
    return ok


def tps(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    return float(m.group(1)) if m else float("nan")


def pgbench_compare(srv, seconds):
    project = "pgb"
    srv.api("POST", f"projects?project_id={project}", json={"spec": {}})
    fill(srv, project, 15)
    ep = srv.endpoint(project)
    args, env = pgbench_env(srv, ep)
    common = ["pgbench", "-S", "-n", "-c", "8", "-j", "2", "-T", str(seconds)]
    proxy = tps([*common, *args, "databricks_postgres"], env)
    socket_dir = srv.lb_root / "lakebase" / "e" / ep["uid"] / "s"
    direct_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    direct = tps([*common, "-h", str(socket_dir), "-U", "admin", "databricks_postgres"], direct_env)
    return proxy, direct


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="100,1000")
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    a = ap.parse_args()
    if not shutil.which("pgbench"):
        print("pgbench not found (apt-get install postgresql)", file=sys.stderr)
        return 2
    srv = Server()
    try:
        cold = cold_start(srv, a.cold_runs)
        print(f"cold start (IDLE -> first SELECT 1 result, {len(cold)} runs): median {statistics.median(cold):.0f} ms, "
              f"min {min(cold):.0f} ms, max {max(cold):.0f} ms  (target <= 300 ms)")
        strategy = "reflink" if reflink_supported(srv.lb_root) else "full copy (no reflink on this filesystem)"
        print(f"branch clone strategy: {strategy}")
        for actual, online, offline in branching(srv, [int(s) for s in a.sizes_mb.split(",") if s]):
            print(f"branch of a {actual:.0f} MB database: parent running (online backup) {online:.2f} s, "
                  f"parent suspended (offline copy) {offline:.2f} s")
        proxy, direct = pgbench_compare(srv, a.pgbench_seconds)
        overhead = (1 - proxy / direct) * 100
        print(f"pgbench -S, 8 clients: through the proxy (TLS) {proxy:.0f} tps, direct on the socket {direct:.0f} tps "
              f"-> proxy overhead {overhead:.1f} % (target <= 10 %)")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
