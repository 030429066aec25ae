#!/usr/bin/env python3
"""Kiln's hot paths, each beside the floor the machine sets for it, measured in the same run:
interleaved (Kiln, then its floor, round after round) and summarised as medians of the rounds.
Nothing is asserted; the table prints the ratio to each floor and the issue's target.

  api      GET /api/2.1/clusters/list (authenticated), wrk -t2 -c50: requests/s and p99, against a
           bare axum handler on the same runtime answering the same JSON (the floor_http example)
  create   cluster create -> RUNNING (no floor; the target is absolute)
  python   REST 1.2 `1+1`, execute -> the client sees Finished (status polled every 1 ms), against
           the kernel's own round trip (the kernel process driven over its stdin/stdout, no Kiln)
  sql      REST 1.2 SQL `SELECT 1` the same way, against spark.sql("SELECT 1").collect() straight
           on the cluster's engine
  gateway  Spark Connect through Kiln's gateway (h2c on the HTTP port), against the same calls
           straight to the engine: one unary RPC (Config, `spark.conf.get`), and `SELECT 1` collected
           (several RPCs): the milliseconds the gateway adds

  pgbench  Lakebase pgbench -S, 8 clients, through Kiln's proxy, against TLS straight to the same
           Postgres (and its Unix socket)                        (runs bench/lakebase.py)
  branch   a Lakebase branch of a ~1 GB database, against one copy of its data directory
                                                                 (runs bench/lakebase.py)
  pipeline a full-refresh pipeline update (3 datasets, 1 M rows), against the same three steps
           as commands on the pipeline's engine                  (runs bench/pipelines.py)

The create row waits for Kiln's warm engine before each create (`[clusters] warm_engines`, what
a create takes) and reports its resident memory.

Usage:  python bench/floors.py [--rounds 5] [--wrk-seconds 5] [--calls 50] [--only api,create,...]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  requests, pyspark-client (tests/conformance/requirements.txt), wrk, cargo (for the floor).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench as base  # noqa: E402  (bench/bench.py: the server and the REST helpers)

REPO = HERE.parent
SPARK_VERSION = "16.4.x-scala2.12"

CLIENT = r"""
import json, sys, time
from pyspark.sql import SparkSession
url, calls, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spark = SparkSession.builder.remote(url).create()
if mode == "sql":  # spark.sql(...).collect(): several RPCs (ExecutePlan twice, ReleaseExecute)
    call = lambda: spark.sql("SELECT 1").collect()
else:  # one unary RPC (Config)
    call = lambda: spark.conf.get("spark.sql.shuffle.partitions")
for _ in range(5):
    call()
lat = []
for _ in range(calls):
    t0 = time.perf_counter()
    call()
    lat.append(time.perf_counter() - t0)
spark.stop()
print(json.dumps(lat))
"""


def floor_binary() -> Path:
    release = "release" in str(base.default_bin())
    profile = ["--release"] if release else []
    subprocess.run(["cargo", "build", "-q", *profile, "-p", "kiln-server", "--example", "floor_http"],
                   cwd=REPO, check=True)  # fmt: skip
    return REPO / "target" / ("release" if release else "debug") / "examples" / "floor_http"


def wrk(url: str, token: str | None, seconds: int) -> dict:
    cmd = ["wrk", "-t2", "-c50", f"-d{seconds}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx answers")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99_ms": base._ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))}  # fmt: skip


def runtime_python() -> str:
    """The engine runtime's interpreter (the one kernels run on), else this one."""
    roots = [os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")) + "/kiln", "/var/cache/kiln"]
    found = [p for r in roots for p in glob.glob(f"{r}/runtime-*/bin/python3") if "-py3." not in p]
    return max(found, key=os.path.getmtime) if found else sys.executable


class Kernel:
    """The context kernel alone: its line protocol over stdin/stdout, no Kiln in between."""

    def __init__(self, work: Path):
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work),
               "PYTHONPATH": str(REPO / "crates" / "kiln-compute" / "python"), "KILN_DBFS_ROOT": str(work / "dbfs")}  # fmt: skip
        self.proc = subprocess.Popen([runtime_python(), "-m", "kiln_kernel.kernel"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
        self.read_until(lambda m: m.get("event") == "ready")
        self.n = 0

    def read_until(self, done):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the kernel exited")
            message = json.loads(line)
            if done(message):
                return message

    def round_trip(self, code: str) -> float:
        self.n += 1
        ident = f"c{self.n}"
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps({"op": "execute", "id": ident, "language": "python", "code": code,
                                          "options": {}}) + "\n")  # fmt: skip
        self.proc.stdin.flush()
        done = self.read_until(lambda m: m.get("event") == "done" and m.get("id") == ident)
        elapsed = time.perf_counter() - t0
        if done["status"] != "Finished":
            raise RuntimeError(f"kernel: {done}")
        return elapsed

    def close(self):
        self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)


def spark_lat(url: str, calls: int, work: Path, mode: str = "sql") -> list[float]:
    script = work / "client.py"
    script.write_text(CLIENT)
    out = subprocess.run([sys.executable, str(script), url, str(calls), mode], capture_output=True, text=True,
                         cwd=work, timeout=600)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-800:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def rest_round_trips(srv, cid: str, ctx: str, language: str, command: str, expect, calls: int) -> list[float]:
    out = []
    for i in range(calls + 3):
        t0 = time.perf_counter()
        cmd = srv.api("POST", "/api/1.2/commands/execute", json={
            "clusterId": cid, "contextId": ctx, "language": language, "command": command})["id"]  # fmt: skip
        body = base.poll_until(srv, "/api/1.2/commands/status", {"clusterId": cid, "contextId": ctx, "commandId": cmd},
                               ("Finished", "Error", "Cancelled"))  # fmt: skip
        if body["status"] != "Finished" or body["results"]["data"] != expect:
            raise RuntimeError(f"{command!r} -> {body}")
        if i >= 3:
            out.append(time.perf_counter() - t0)
    return out


def warm_engines(srv) -> list[int]:
    """Pids of engines Kiln keeps for creates (KILN_CLUSTER_ID of no cluster)."""
    known = {c["cluster_id"] for c in srv.api("GET", "/api/2.1/clusters/list").get("clusters", [])}
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ids = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"KILN_CLUSTER_ID=")]
        if ids and ids[0] not in known and b"spark" in cmd and b"server" in cmd:
            pids.append(int(pid))
    return pids


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def create_to_running(srv, work: Path, rounds: int) -> tuple[list[float], float]:
    """create -> RUNNING, each create after Kiln's warm engine is ready; and the warm engine's RSS."""
    log = work / "kiln.log"
    out, rss = [], []
    for i in range(rounds):
        deadline = time.monotonic() + 120
        while log.read_text(errors="replace").count("warm engine ready") < i + 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the first one is taken by the cluster the other rows use
        rss += [rss_mib(p) for p in warm_engines(srv)]
        t0 = time.perf_counter()
        cid = srv.api("POST", "/api/2.1/clusters/create", json={
            "cluster_name": f"create-{i}", "spark_version": SPARK_VERSION, "num_workers": 0,
            "autotermination_minutes": 0})["cluster_id"]  # fmt: skip
        srv.cluster_ids.add(cid)
        base.wait_state(srv, cid, "RUNNING", interval=0.002)
        out.append(time.perf_counter() - t0)
        srv.api("POST", "/api/2.1/clusters/delete", json={"cluster_id": cid})
        base.wait_state(srv, cid, "TERMINATED", interval=0.02)
    return out, statistics.median(rss) if rss else float("nan")


def run_script(script: str, args: list[str], work: Path) -> dict:
    out = work / f"{script}.json"
    subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], check=True,
                   stdout=sys.stderr)  # fmt: skip
    return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--only", default="api,create,python,sql,gateway,pgbench,branch,pipeline")
    ap.add_argument("--branch-mb", type=int, default=1000)
    args = ap.parse_args()
    parts = set(args.only.split(","))
    floor_bin = floor_binary()
    work = Path(tempfile.mkdtemp(prefix="kiln-floors-"))
    work.chmod(0o711)
    srv = base.Server(base.default_bin(), work)
    floor = None
    kernel = None
    rows: dict[str, dict[str, list[float]]] = {}

    def note(row: str, key: str, value: float):
        rows.setdefault(row, {}).setdefault(key, []).append(value)

    try:
        srv.start()
        cid = srv.api("POST", "/api/2.1/clusters/create", json={
            "cluster_name": "floors", "spark_version": SPARK_VERSION, "num_workers": 0,
            "autotermination_minutes": 0})["cluster_id"]  # fmt: skip
        srv.cluster_ids.add(cid)
        base.wait_state(srv, cid, "RUNNING", interval=0.02)
        direct = srv.api("GET", "/api/2.1/clusters/get", params={"cluster_id": cid})["default_tags"]["KilnSparkConnectUrl"]
        gateway = f"sc://127.0.0.1:{srv.port}/;x-databricks-cluster-id={cid};authorization=Bearer {srv.token}"
        body = work / "clusters-list.json"
        body.write_bytes(srv.session.get(srv.host + "/api/2.1/clusters/list").content)
        floor_port = base.free_port()
        floor = subprocess.Popen([str(floor_bin), str(floor_port), str(body)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)
        kernel = Kernel(work)
        time.sleep(3)  # the cluster's warm kernel
        ctxs = {}
        for language in ("python", "sql"):
            ctx = srv.api("POST", "/api/1.2/contexts/create", json={"clusterId": cid, "language": language})["id"]
            base.poll_until(srv, "/api/1.2/contexts/status", {"clusterId": cid, "contextId": ctx}, ("Running", "Error"))
            ctxs[language] = ctx
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
            if "api" in parts:
                pair = [("kiln", srv.host, srv.token), ("floor", f"http://127.0.0.1:{floor_port}", None)]
                for who, host, token in pair if r % 2 == 0 else pair[::-1]:
                    got = wrk(host + "/api/2.1/clusters/list", token, args.wrk_seconds)
                    note("api", f"{who}_rps", got["rps"])
                    note("api", f"{who}_p99", got["p99_ms"])
            if "python" in parts:
                note("python", "kiln", statistics.median(rest_round_trips(srv, cid, ctxs["python"], "python", "1+1", "2", args.calls)))
                note("python", "floor", statistics.median([kernel.round_trip("1+1") for _ in range(args.calls)]))
            if parts & {"sql", "gateway"}:
                direct_lat = statistics.median(spark_lat(direct, args.calls, work))
                note("sql", "floor", direct_lat)
                note("gateway", "floor", direct_lat)
            if "sql" in parts:
                note("sql", "kiln", statistics.median(rest_round_trips(srv, cid, ctxs["sql"], "sql", "SELECT 1", [[1]], args.calls)))
            if "gateway" in parts:
                note("gateway", "kiln", statistics.median(spark_lat(gateway, args.calls, work)))
                note("unary", "floor", statistics.median(spark_lat(direct, args.calls, work, "conf")))
                note("unary", "kiln", statistics.median(spark_lat(gateway, args.calls, work, "conf")))
        if "create" in parts:
            create, warm_rss = create_to_running(srv, work, args.rounds)
    finally:
        if kernel is not None:
            kernel.close()
        if floor is not None:
            floor.terminate()
            floor.wait(timeout=30)
        srv.stop()
    lakebase = {}
    if parts & {"pgbench", "branch"}:
        which = ",".join(p for p, q in (("pgbench", "pgbench"), ("branching", "branch")) if q in parts)
        lakebase = run_script("lakebase.py", ["--only", which, "--pgbench-rounds", str(args.rounds),
                                              "--sizes-mb", str(args.branch_mb)], work)  # fmt: skip
    pipeline = run_script("pipelines.py", ["--runs", str(args.rounds)], work) if "pipeline" in parts else None

    med = {row: {k: statistics.median(v) for k, v in keys.items()} for row, keys in rows.items()}
    print(f"\nFloors: {args.rounds} interleaved rounds, medians ({base.default_bin().name} at {base.default_bin()})")
    print(f"{'path':44} {'floor':>14} {'kiln':>14} {'ratio':>10}  target")
    if "api" in med:
        api = med["api"]
        print(f"{'GET clusters/list, wrk -t2 -c50 (req/s)':44} {api['floor_rps']:>14.0f} {api['kiln_rps']:>14.0f} "
              f"{api['kiln_rps'] / api['floor_rps']:>9.0%}  >= 70 %")  # fmt: skip
        print(f"{'  p99 (ms)':44} {api['floor_p99']:>14.2f} {api['kiln_p99']:>14.2f} {'':>10}  <= 1 ms")
    if "create" in parts:
        print(f"{'cluster create -> RUNNING (ms)':44} {'-':>14} {statistics.median(create) * 1000:>14.0f} {'':>10}  "
              f"<= 50 ms  (warm engine: {warm_rss:.0f} MiB resident)")  # fmt: skip
    if "python" in med:
        py = med["python"]
        print(f"{'REST 1.2 python 1+1 (ms)':44} {py['floor'] * 1000:>14.2f} {py['kiln'] * 1000:>14.2f} "
              f"{py['kiln'] / py['floor']:>9.1f}x  <= 2 ms")  # fmt: skip
    if "sql" in parts:
        sql = med["sql"]
        print(f"{'REST 1.2 SQL SELECT 1 (ms)':44} {sql['floor'] * 1000:>14.2f} {sql['kiln'] * 1000:>14.2f} "
              f"{sql['kiln'] / sql['floor']:>9.1f}x  <= 8 ms")  # fmt: skip
    if "gateway" in parts:
        gw = med["gateway"]
        un = med["unary"]
        print(f"{'Spark Connect unary RPC (Config), gateway (ms)':44} {un['floor'] * 1000:>14.2f} {un['kiln'] * 1000:>14.2f} "
              f"{(un['kiln'] - un['floor']) * 1000:>+8.2f}ms  <= +0.2 ms")  # fmt: skip
        print(f"{'  spark.sql(SELECT 1).collect(), several RPCs':44} {gw['floor'] * 1000:>14.2f} {gw['kiln'] * 1000:>14.2f} "
              f"{(gw['kiln'] - gw['floor']) * 1000:>+8.2f}ms")  # fmt: skip
    if "pgbench" in lakebase:
        pg = lakebase["pgbench"]
        print(f"{'Lakebase pgbench -S, 8 clients (tps)':44} {pg['tls']:>14.0f} {pg['proxy']:>14.0f} "
              f"{pg['proxy'] / pg['tls'] - 1:>+9.0%}  >= -10 %")  # fmt: skip
        print(f"{'  vs the Unix socket':44} {pg['socket']:>14.0f} {pg['proxy']:>14.0f} "
              f"{pg['proxy'] / pg['socket'] - 1:>+9.0%}  >= -25 %")  # fmt: skip
    for b in lakebase.get("branching", []):
        label = f"Lakebase branch of {b['mb']:.0f} MB, parent up (s)"
        print(f"{label:44} {b['copy_s']:>14.2f} {b['online_s']:>14.2f} {b['online_s'] / b['copy_s']:>9.1f}x  one copy")
        print(f"{'  parent suspended (s)':44} {b['copy_s']:>14.2f} {b['offline_s']:>14.2f} "
              f"{b['offline_s'] / b['copy_s']:>9.1f}x")  # fmt: skip
    if pipeline:
        full, fl = statistics.median(pipeline["full_s"]), statistics.median(pipeline["floor_s"])
        print(f"{'pipeline full update, 3 datasets, 1 M rows (s)':44} {fl:>14.2f} {full:>14.2f} {full / fl:>9.2f}x  <= 1.1x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
