#!/usr/bin/env python3
"""Kiln benchmark: starts its own `kiln serve` on a temp data dir and prints a few figures.

    (c) idle RSS of the server process with no engines (VmRSS after 2 s idle, MB)
    (b) cluster create -> RUNNING latency (GET polled every 5 ms), median of N runs,
        and the time to the first Spark Connect `SELECT 1` answer on the new cluster
    (a) GET /api/2.1/clusters/list under wrk: 50 keep-alive connections for 10 s (req/s, p99)
    (d) REST 1.2 commands over one keep-alive requests.Session, command status polled every 1 ms:
        Python `1+1` round trip (execute -> status Finished), median of 50 after 5 warm-ups;
        SQL `SELECT 1` in a SQL context, median of 50 after 5 warm-ups;
        context create -> status Running (polled every 1 ms) with a warm kernel available
        (3 s pause between creates so the pool refills), median of 10

Usage: bench/run.sh [--runs N] [--duration S] [--connections C] [--cmd-runs N] [--ctx-runs N]
                    [--json PATH] [--keep]
Env:   KILN_BIN (default target/release/kiln if present, else target/debug/kiln)

Everything it starts (server, engines, wrk) is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
SPARK_VERSION = "15.4.x-scala2.12"


def default_bin() -> Path:
    if os.environ.get("KILN_BIN"):
        return Path(os.environ["KILN_BIN"])
    release = REPO / "target" / "release" / "kiln"
    return release if release.is_file() else REPO / "target" / "debug" / "kiln"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, proc, log_path: Path, timeout: float = 600) -> None:
    """Waits for a `kiln serve` started by a bench to answer /health; exits (stopping it) if it
    ends or stays silent for `timeout` seconds."""
    import requests

    deadline = time.time() + timeout
    while True:
        try:
            if requests.get(base + "/health", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.terminate()
            sys.exit(f"kiln did not start; see {log_path}")
        time.sleep(0.2)


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def engine_pids(cluster_ids: set[str]) -> list[int]:
    """Live processes whose environment carries KILN_CLUSTER_ID=<one of ours>."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
            state = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state in ("Z", "X"):
            continue
        for item in env.split(b"\0"):
            if item.startswith(b"KILN_CLUSTER_ID=") and item[16:].decode(errors="replace") in cluster_ids:
                out.append(int(name))
    return out


class Server:
    def __init__(self, binary: Path, workdir: Path, config_text: str = ""):
        self.binary = binary
        self.config_text = config_text
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "kiln.log", "ab")
        self.proc = None
        self.token = None
        self.cluster_ids: set[str] = set()
        self.session = requests.Session()
        self.session.trust_env = False

    def start(self, timeout: float = 600.0):
        config = self.workdir / "kiln.toml"
        config.write_text(self.config_text)  # defaults unless a bench needs a section
        env = {k: v for k, v in os.environ.items() if k not in ("KILN_HOST", "KILN_PORT", "KILN_DATA_DIR")}
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kiln serve exited with {self.proc.returncode}; see {self.workdir / 'kiln.log'}")
            try:
                if self.session.get(self.host + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("kiln serve did not become healthy")
            time.sleep(0.05)
        # /health may have come from another process that took the port while
        # this one was down (a restart after kill -9): ours must still be alive.
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise RuntimeError(f"kiln serve exited after start (port {self.port} taken?); see {self.workdir / 'kiln.log'}")
        self.token = (self.data_dir / "admin.token").read_text().strip()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def api(self, method: str, path: str, **kw):
        r = self.session.request(method, self.host + path, timeout=60, **kw)
        if r.status_code != 200:
            raise RuntimeError(f"{method} {path} -> {r.status_code} {r.text[:300]}")
        return r.json()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # belt and braces: nothing we caused may outlive the bench
        leftovers = engine_pids(self.cluster_ids)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if leftovers:
            print(f"warning: killed {len(leftovers)} engine process(es) that outlived kiln serve", file=sys.stderr)
        self.log.close()


def wait_state(srv: Server, cid: str, target: str, interval: float, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = srv.api("GET", "/api/2.1/clusters/get", params={"cluster_id": cid})["state"]
        if state == target:
            return
        if state in ("ERROR",) or (target == "RUNNING" and state == "TERMINATED"):
            raise RuntimeError(f"cluster {cid} went {state} while waiting for {target}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {cid} stuck in {state}")
        time.sleep(interval)


def bench_create(srv: Server, runs: int) -> dict:
    from pyspark.sql import SparkSession  # imported up front so import time is not measured

    to_running, to_select, running_to_select = [], [], []
    for i in range(runs):
        t0 = time.perf_counter()
        cid = srv.api("POST", "/api/2.1/clusters/create", json={
            "cluster_name": f"bench-{i}", "spark_version": SPARK_VERSION, "num_workers": 0,
            "autotermination_minutes": 0})["cluster_id"]  # fmt: skip
        srv.cluster_ids.add(cid)
        wait_state(srv, cid, "RUNNING", interval=0.005)
        t1 = time.perf_counter()
        url = srv.api("GET", "/api/2.1/clusters/get", params={"cluster_id": cid})["default_tags"]["KilnSparkConnectUrl"]
        spark = SparkSession.builder.remote(url).create()
        try:
            assert spark.sql("SELECT 1 AS one").collect()[0].one == 1
        finally:
            t2 = time.perf_counter()
            spark.stop()
        to_running.append(t1 - t0)
        running_to_select.append(t2 - t1)
        to_select.append(t2 - t0)
        srv.api("POST", "/api/2.1/clusters/delete", json={"cluster_id": cid})
        wait_state(srv, cid, "TERMINATED", interval=0.02)
    return {"create_to_running_s": to_running, "running_to_select1_s": running_to_select, "create_to_select1_s": to_select}


def poll_until(srv: Server, path: str, params: dict, done: tuple, interval: float = 0.001, timeout: float = 120.0) -> dict:
    """GET `path` every `interval` s until its `status` is in `done`; returns the last body."""
    deadline = time.monotonic() + timeout
    while True:
        body = srv.api("GET", path, params=params)
        if body["status"] in done:
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} {params} stuck in {body['status']}")
        time.sleep(interval)


def bench_commands(srv: Server, runs: int, warmups: int, ctx_runs: int, ctx_pause: float) -> dict:
    """REST 1.2 round trips on one RUNNING cluster, over srv.session (keep-alive)."""
    cid = srv.api("POST", "/api/2.1/clusters/create", json={
        "cluster_name": "bench-commands", "spark_version": SPARK_VERSION, "num_workers": 0,
        "autotermination_minutes": 0})["cluster_id"]  # fmt: skip
    srv.cluster_ids.add(cid)
    wait_state(srv, cid, "RUNNING", interval=0.02)

    def create(language: str) -> str:
        ctx = srv.api("POST", "/api/1.2/contexts/create", json={"clusterId": cid, "language": language})["id"]
        poll_until(srv, "/api/1.2/contexts/status", {"clusterId": cid, "contextId": ctx}, ("Running", "Error"))
        return ctx

    def round_trips(ctx: str, language: str, command: str, expect) -> list[float]:
        out = []
        for i in range(warmups + runs):
            t0 = time.perf_counter()
            cmd = srv.api("POST", "/api/1.2/commands/execute", json={
                "clusterId": cid, "contextId": ctx, "language": language, "command": command})["id"]  # fmt: skip
            body = poll_until(srv, "/api/1.2/commands/status", {"clusterId": cid, "contextId": ctx, "commandId": cmd},
                              ("Finished", "Error", "Cancelled"))  # fmt: skip
            t1 = time.perf_counter()
            if body["status"] != "Finished" or body["results"]["data"] != expect:
                raise RuntimeError(f"{command!r} -> {body}")
            if i >= warmups:
                out.append(t1 - t0)
        return out

    try:
        time.sleep(ctx_pause)  # let the cluster's warm kernel come up
        py = create("python")
        python_1p1 = round_trips(py, "python", "1+1", "2")
        sql = create("sql")
        sql_select1 = round_trips(sql, "sql", "SELECT 1", [[1]])
        for ctx in (py, sql):
            srv.api("POST", "/api/1.2/contexts/destroy", json={"clusterId": cid, "contextId": ctx})
        ctx_create, warm_hits = [], 0
        for _ in range(ctx_runs):
            time.sleep(ctx_pause)  # the pool refills its one warm kernel
            t0 = time.perf_counter()
            ctx = srv.api("POST", "/api/1.2/contexts/create", json={"clusterId": cid, "language": "python"})["id"]
            body = srv.api("GET", "/api/1.2/contexts/status", params={"clusterId": cid, "contextId": ctx})
            warm_hits += body["status"] == "Running"  # a warm kernel was taken: Running at the first poll
            if body["status"] == "Pending":
                time.sleep(0.001)
                body = poll_until(srv, "/api/1.2/contexts/status", {"clusterId": cid, "contextId": ctx}, ("Running", "Error"))
            t1 = time.perf_counter()
            if body["status"] != "Running":
                raise RuntimeError(f"context {ctx} -> {body}")
            ctx_create.append(t1 - t0)
            srv.api("POST", "/api/1.2/contexts/destroy", json={"clusterId": cid, "contextId": ctx})
    finally:
        srv.api("POST", "/api/2.1/clusters/delete", json={"cluster_id": cid})
        wait_state(srv, cid, "TERMINATED", interval=0.02)
    return {"python_1plus1_s": python_1p1, "sql_select1_s": sql_select1, "context_create_to_running_s": ctx_create,
            "context_create_warm_hits": warm_hits}  # fmt: skip


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def bench_wrk(srv: Server, connections: int, duration: int, threads: int) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found (apt-get install -y wrk)")
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "-H", f"Authorization: Bearer {srv.token}", srv.host + "/api/2.1/clusters/list"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(0) if errors else "",
            "raw": out}  # fmt: skip


def fmt_s(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"


def fmt_ms(xs: list[float]) -> str:
    """Like fmt_s, with a decimal: command round trips are a few ms."""
    return f"{statistics.median(xs) * 1000:.1f} ms (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 2))
    ap.add_argument("--cmd-runs", type=int, default=50, help="measured command round trips per language")
    ap.add_argument("--cmd-warmups", type=int, default=5)
    ap.add_argument("--ctx-runs", type=int, default=10, help="measured context creates")
    ap.add_argument("--ctx-pause", type=float, default=3.0, help="seconds between context creates (pool refill)")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "results.json")
    ap.add_argument("--keep", action="store_true", help="keep the temp data dir and log")
    ap.add_argument("--skip-setup", action="store_true")
    args = ap.parse_args()

    binary = default_bin()
    if not binary.is_file():
        print(f"kiln binary not found at {binary} (cargo build --release, or set KILN_BIN)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    workdir.chmod(0o711)  # reachable by the unprivileged users user code runs as (when root)
    if not args.skip_setup:
        with open(workdir / "setup.log", "wb") as log:
            subprocess.run([str(binary), "setup"], stdout=log, stderr=subprocess.STDOUT, check=True, timeout=1800)

    srv = Server(binary, workdir)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict = {"binary": str(binary), "cpus": os.cpu_count()}
    try:
        srv.start()
        time.sleep(2.0)  # idle
        results["idle_rss_mb"] = vm_rss_mb(srv.proc.pid)
        results.update(bench_create(srv, args.runs))
        results.update(bench_commands(srv, args.cmd_runs, args.cmd_warmups, args.ctx_runs, args.ctx_pause))
        wrk = bench_wrk(srv, args.connections, args.duration, args.threads)
        results["wrk"] = {k: v for k, v in wrk.items() if k != "raw"}
        time.sleep(2.0)
        results["idle_rss_after_load_mb"] = vm_rss_mb(srv.proc.pid)
    finally:
        srv.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    w = results["wrk"]
    rows = [
        (f"GET /api/2.1/clusters/list, wrk -c{args.connections} -t{args.threads} {args.duration}s",
         f"{w['rps']:.0f} req/s ({w['requests']} requests, {w['non_2xx']} non-2xx)"),
        ("  latency p50 / p99", f"{w['p50_ms']:.2f} ms / {w['p99_ms']:.2f} ms"),
        (f"cluster create -> RUNNING (5 ms polls, median of {args.runs})", fmt_s(results["create_to_running_s"])),
        ("RUNNING -> first Spark Connect SELECT 1 answered", fmt_s(results["running_to_select1_s"])),
        ("create -> first SELECT 1 answered", fmt_s(results["create_to_select1_s"])),
        (f"1.2 Python `1+1` execute -> Finished (1 ms polls, median of {args.cmd_runs})",
         fmt_ms(results["python_1plus1_s"])),
        (f"1.2 SQL `SELECT 1` execute -> Finished (1 ms polls, median of {args.cmd_runs})",
         fmt_ms(results["sql_select1_s"])),
        (f"1.2 context create -> Running, warm kernel (1 ms polls, median of {args.ctx_runs})",
         f"{fmt_ms(results['context_create_to_running_s'])}, Running at once {results['context_create_warm_hits']}/{args.ctx_runs}"),
        ("idle RSS of kiln serve, no engines (after 2 s idle)", f"{results['idle_rss_mb']:.1f} MB"),
        ("idle RSS after the runs above (engines stopped)", f"{results['idle_rss_after_load_mb']:.1f} MB"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"\nKiln benchmark  binary={binary}  cpus={os.cpu_count()}  (wrk shares the machine)")
    print(f"{'metric'.ljust(width)}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    if w["socket_errors"]:
        print(f"note: wrk {w['socket_errors']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nraw figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
