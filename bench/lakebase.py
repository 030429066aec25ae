"""Lakebase benchmarks: prints measured figures (nothing is asserted).

  cold start   suspended endpoint -> first query result at a psycopg client, through the TLS proxy
  branching    create_branch time against database size (pgbench data), parent running (online
               backup) and suspended (offline copy); the clone strategy (reflink or copy) is reported
  autoscale    CU over time (status.current_cu) under a pgbench ramp: up when busy, down when quiet
  pgbench -S   select-only throughput through the proxy (TLS) vs TLS directly to Postgres vs the socket,
               and SELECT 1 latency p50/p99

Usage:  python bench/lakebase.py [--sizes-mb 100,1000] [--cold-runs 10] [--pgbench-seconds 10]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests, psycopg (tests/conformance/requirements.txt), pgbench on PATH.
"""

from __future__ import annotations

import argparse
import json
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


class XfsImage:
    """An XFS filesystem with reflinks on a loop image (root only): where branches clone in O(1)."""

    def __init__(self, size_gb: int):
        self.dir = Path(tempfile.mkdtemp(prefix="kiln-bench-xfs-"))
        self.image, self.mount = self.dir / "lakebase.xfs", self.dir / "mnt"
        self.mount.mkdir()
        subprocess.run(["truncate", "-s", f"{size_gb}G", str(self.image)], check=True)
        subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(self.image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount)], check=True)
        self.dir.chmod(0o755)
        self.mount.chmod(0o755)

    def stop(self):
        subprocess.run(["umount", str(self.mount)], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, under: Path = Path("/tmp")):
        self.work = Path(tempfile.mkdtemp(prefix="kiln-bench-lb-"))
        self.work.chmod(0o711)  # reachable by the unprivileged users user code runs as (when root)
        self.lb_root = under / f"kiln-bench-lakebase-{uuid.uuid4().hex[:8]}"
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

    def wait(self, op):
        """Polls a long-running operation until it is done."""
        deadline = time.time() + 600
        while not op.get("done"):
            if time.time() > deadline:
                raise RuntimeError(f"operation {op.get('name')} did not finish")
            time.sleep(0.1)
            op = self.api("GET", op["name"])
        if "error" in op:
            raise RuntimeError(f"operation {op.get('name')} failed: {op['error']}")
        return op

    def create(self, path, **kw):
        return self.wait(self.api("POST", path, **kw))

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
    srv.create(f"projects?project_id={project}", json={"spec": {}})
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
        srv.create(f"projects?project_id={project}", json={"spec": {}})
        actual = fill(srv, project, size)
        t0 = time.perf_counter()
        srv.create(f"projects/{project}/branches?branch_id=online", json={"spec": {"no_expiry": True}})
        online = time.perf_counter() - t0
        suspend_quickly(srv, project)
        wait_state(srv, project, "production", "IDLE")
        t0 = time.perf_counter()
        srv.create(f"projects/{project}/branches?branch_id=offline", json={"spec": {"no_expiry": True}})
        offline = time.perf_counter() - t0
        # The floor: one copy of the parent's data directory, as Kiln copies (cp, copy_file_range).
        uid = srv.api("GET", f"projects/{project}/branches/production")["uid"]
        copy_to = srv.lb_root / "floor-copy"
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", "--reflink=auto", str(srv.lb_root / "lakebase" / "b" / uid / "pgdata"),
                        str(copy_to)], check=True)  # fmt: skip
        copy = time.perf_counter() - t0
        shutil.rmtree(copy_to, ignore_errors=True)
        out.append((actual, online, offline, copy))
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


def postmaster_args(ep_uid: str) -> tuple[Path, list[str]]:
    """The endpoint's postgres binary and its `-c` settings (from /proc), to copy into the baseline."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in argv if a]
        if argv and argv[0].endswith("/postgres") and any(ep_uid in a for a in argv):
            keep, i = [], 1
            while i < len(argv):
                if argv[i] == "-c" and i + 1 < len(argv):
                    key = argv[i + 1].split("=", 1)[0]
                    if key not in {"listen_addresses", "unix_socket_directories", "port", "hba_file", "ident_file",
                                   "config_file", "data_directory", "external_pid_file"}:
                        keep += ["-c", argv[i + 1]]
                    i += 2
                else:
                    i += 1
            return Path(argv[0]), keep
    raise RuntimeError(f"no postmaster of {ep_uid}")


class TlsBaseline:
    """A fair TLS baseline for the proxy: the same Postgres binary and settings as the endpoint and the
    same pgbench data, in a cluster of its own with `ssl = on` on a TCP port (for the bench only)."""

    def __init__(self, srv, ep, scale):
        self.postgres, settings = postmaster_args(ep["uid"])
        bindir = self.postgres.parent
        self.dir = srv.lb_root / "tls-baseline"
        self.dir.mkdir()
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_pg:
            shutil.chown(self.dir, "postgres", "postgres")
        run = lambda cmd: subprocess.run([*as_pg, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run([str(bindir / "initdb"), "-D", str(self.dir / "data"), "-U", "admin", "--auth=trust"])
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(self.dir / "server.key"), "-out", str(self.dir / "server.crt"), "-subj", "/CN=localhost",
             "-days", "1"])
        self.port = free_port()
        self.proc = subprocess.Popen([*as_pg, str(self.postgres), "-D", str(self.dir / "data"), "-p", str(self.port),
                                      "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                                      "-c", "ssl=on", "-c", f"ssl_cert_file={self.dir / 'server.crt'}",
                                      "-c", f"ssl_key_file={self.dir / 'server.key'}", *settings],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while subprocess.run(["pg_isready", "-h", str(self.dir), "-p", str(self.port)], capture_output=True).returncode:
            if time.time() > deadline:
                raise RuntimeError("the TLS baseline postgres did not start")
            time.sleep(0.1)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", str(self.dir), "-p", str(self.port), "-U", "admin",
                        "postgres"], env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "admin", "postgres"]
        self.tls_env = dict(self.env, PGSSLMODE="require")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def latencies(cmd, env, seconds, work: Path) -> tuple[float, float]:
    """p50 and p99 (ms) of `SELECT 1` from one client, from pgbench's per-transaction log."""
    script = work / "select1.sql"
    script.write_text("SELECT 1;\n")
    prefix = work / f"lat-{uuid.uuid4().hex[:6]}"
    subprocess.run([*cmd[:1], "-n", "-c", "1", "-j", "1", "-T", str(seconds), "-f", str(script), "-l",
                    f"--log-prefix={prefix}", *cmd[1:]], env=env, check=True, capture_output=True, cwd=work)
    values = []
    for log in work.glob(f"{prefix.name}*"):
        values += [int(line.split()[2]) / 1000 for line in log.read_text().splitlines() if line.strip()]
        log.unlink()
    values.sort()
    return values[len(values) // 2], values[int(len(values) * 0.99)]


def pgbench_compare(srv, seconds, rounds):
    """Select-only tps (8 clients; the median of `rounds` interleaved runs) and `SELECT 1` latency:
    through the proxy, TLS directly to Postgres, and on the Unix socket."""
    project = "pgb"
    srv.create(f"projects?project_id={project}", json={"spec": {}})
    fill(srv, project, 15)
    ep = srv.endpoint(project)
    args, env = pgbench_env(srv, ep)
    common = ["pgbench", "-S", "-n", "-c", "8", "-j", "2", "-T", str(seconds)]
    socket_dir = srv.lb_root / "lakebase" / "e" / ep["uid"] / "s"
    direct_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    socket_args = ["-h", str(socket_dir), "-U", "admin", "databricks_postgres"]
    baseline = TlsBaseline(srv, ep, 1)
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-lat-"))
    try:
        runs = {"proxy": [], "tls": [], "socket": []}
        for _ in range(rounds):  # interleaved, so drifts of the machine's load hit all three alike
            runs["proxy"].append(tps([*common, *args, "databricks_postgres"], env))
            runs["tls"].append(tps([*common, *baseline.args], baseline.tls_env))
            runs["socket"].append(tps([*common, *socket_args], direct_env))
        out = {
            **{k: statistics.median(v) for k, v in runs.items()},
            "lat_proxy": latencies(["pgbench", *args, "databricks_postgres"], env, seconds, work),
            "lat_tls": latencies(["pgbench", *baseline.args], baseline.tls_env, seconds, work),
            "lat_socket": latencies(["pgbench", *socket_args], direct_env, seconds, work),
        }
    finally:
        baseline.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def autoscale(srv, stage_seconds):
    """CU over time under a pgbench ramp (1, 2, 4, 8 clients, then idle) on an endpoint of 0.5-4 CU."""
    import threading

    project = "auto"
    srv.create(f"projects?project_id={project}", json={"spec": {}})
    name = f"projects/{project}/branches/production/endpoints/primary"
    srv.wait(srv.api("PATCH", f"{name}?update_mask=spec.autoscaling_limit_min_cu,spec.autoscaling_limit_max_cu",
                     json={"spec": {"endpoint_type": "ENDPOINT_TYPE_READ_WRITE", "autoscaling_limit_min_cu": 0.5,
                                    "autoscaling_limit_max_cu": 4}}))
    fill(srv, project, 15)
    ep = srv.endpoint(project)
    args, env = pgbench_env(srv, ep)
    timeline, stage, stop = [], {"clients": 0}, threading.Event()
    t0 = time.perf_counter()

    def sample():
        while not stop.is_set():
            cu = srv.api("GET", name)["status"].get("current_cu")
            timeline.append((time.perf_counter() - t0, stage["clients"], cu))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    rates = []
    try:
        for clients in (1, 2, 4, 8):
            stage["clients"] = clients
            rates.append((clients, tps(["pgbench", "-S", "-n", "-c", str(clients), "-j", str(min(clients, 2)),
                                         "-T", str(stage_seconds), *args, "databricks_postgres"], env)))
        stage["clients"] = 0
        time.sleep(3 * stage_seconds)
    finally:
        stop.set()
        sampler.join()
    return timeline, rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes-mb", default="100,1000")
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--pgbench-rounds", type=int, default=3)
    ap.add_argument("--xfs-gb", type=int, default=0,
                    help="put Lakebase's data on an XFS loop image of this size (root; needs xfsprogs)")
    ap.add_argument("--stage-seconds", type=int, default=8, help="length of each autoscaling ramp stage")
    ap.add_argument("--only", default="cold,branching,autoscale,pgbench", help="comma-separated parts to run")
    ap.add_argument("--json", help="also write the figures to this file (bench/floors.py reads it)")
    a = ap.parse_args()
    results: dict = {}
    if not shutil.which("pgbench"):
        print("pgbench not found (apt-get install postgresql)", file=sys.stderr)
        return 2
    parts = set(a.only.split(","))
    xfs = XfsImage(a.xfs_gb) if a.xfs_gb else None
    srv = Server(xfs.mount if xfs else Path("/tmp"))
    try:
        if xfs:
            print(f"Lakebase data on an XFS loop image ({a.xfs_gb} GB, reflink=1)")
        if "cold" in parts:
            cold = cold_start(srv, a.cold_runs)
            print(f"cold start (IDLE -> first SELECT 1 result, {len(cold)} runs): median {statistics.median(cold):.0f} "
                  f"ms, min {min(cold):.0f} ms, max {max(cold):.0f} ms  (target <= 300 ms)")
        if "branching" in parts:
            strategy = "reflink" if reflink_supported(srv.lb_root) else "full copy (no reflink on this filesystem)"
            print(f"branch clone strategy: {strategy}")
            for actual, online, offline, copy in branching(srv, [int(s) for s in a.sizes_mb.split(",") if s]):
                print(f"branch of a {actual:.0f} MB database: parent running (online backup) {online:.2f} s, "
                      f"parent suspended (woken for the copy) {offline:.2f} s; floor, one copy of its data "
                      f"directory {copy:.2f} s")
                results.setdefault("branching", []).append(
                    {"mb": actual, "online_s": online, "offline_s": offline, "copy_s": copy})
        if "autoscale" in parts:
            timeline, rates = autoscale(srv, a.stage_seconds)
            print("autoscaling (0.5-4 CU), pgbench -S ramp: " + ", ".join(f"{c} clients {r:.0f} tps" for c, r in rates))
            print("  t (s)  clients  current_cu")
            last = None
            for t, clients, cu in timeline:
                if (clients, cu) != last:
                    print(f"  {t:5.1f}  {clients:7d}  {cu}")
                    last = (clients, cu)
        if "pgbench" in parts:
            r = pgbench_compare(srv, a.pgbench_seconds, a.pgbench_rounds)
            results["pgbench"] = r
            print(f"pgbench -S, 8 clients, median of {a.pgbench_rounds} interleaved runs: through the proxy (TLS) {r['proxy']:.0f} tps, TLS directly to Postgres "
                  f"{r['tls']:.0f} tps, Unix socket {r['socket']:.0f} tps -> proxy vs TLS-direct "
                  f"{(1 - r['proxy'] / r['tls']) * 100:+.1f} % lost (target <= 10 %), vs socket "
                  f"{(1 - r['proxy'] / r['socket']) * 100:+.1f} % lost (target <= 25 %)")
            (p50, p99), (t50, t99), (s50, s99) = r["lat_proxy"], r["lat_tls"], r["lat_socket"]
            print(f"SELECT 1 latency, one client (p50 / p99): proxy {p50:.3f} / {p99:.3f} ms, TLS direct "
                  f"{t50:.3f} / {t99:.3f} ms, socket {s50:.3f} / {s99:.3f} ms -> added by the proxy vs TLS direct "
                  f"{p50 - t50:+.3f} / {p99 - t99:+.3f} ms")
    finally:
        srv.stop()
        if xfs:
            xfs.stop()
        if a.json:
            Path(a.json).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
