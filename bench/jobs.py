"""Jobs: prints measured figures (nothing is asserted).

  lateness    N jobs on a Quartz schedule every S seconds for D seconds: from each scheduled instant
              to its run's start_time (as Kiln records it), p50/p99/max in ms, and runs per job
              (each instant should fire once)
  dag         a chain of T trivial notebook tasks on one running cluster: the run's wall time per
              task, against the same cells run as T commands in one context (REST 1.2); the
              difference per task is the Jobs overhead (a context per task, state commits)
  submit      runs/submit of one condition task, R times: requests per second until accepted,
              and until all ended
  list        runs/list (25 per page) with all those runs stored: median latency

Usage:  python bench/jobs.py [--jobs 20] [--every 2] [--seconds 30] [--tasks 20] [--submits 200]
        (the issue's scheduler figure is --jobs 100 --every 10 --seconds 300)
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import Server, default_bin, wait_state  # the shared helpers of bench/bench.py


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wait_run(srv, run_id, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        run = srv.api("GET", "/api/2.2/jobs/runs/get", params={"run_id": run_id})
        if run["state"]["life_cycle_state"] in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
            return run
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end")
        time.sleep(0.05)


def lateness(srv, jobs, every, seconds):
    ids = []
    for i in range(jobs):
        ids.append(srv.api("POST", "/api/2.2/jobs/create", json={
            "name": f"tick-{i}", "max_concurrent_runs": 1000,
            "schedule": {"quartz_cron_expression": f"*/{every} * * * * ?", "timezone_id": "UTC"},
            "tasks": [{"task_key": "t", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]})["job_id"])
    time.sleep(seconds)
    for job_id in ids:
        srv.api("POST", "/api/2.2/jobs/update", json={"job_id": job_id, "new_settings": {"schedule": {
            "quartz_cron_expression": f"*/{every} * * * * ?", "timezone_id": "UTC", "pause_status": "PAUSED"}}})
    late, per_job = [], []
    for job_id in ids:
        runs = srv.api("GET", "/api/2.2/jobs/runs/list", params={"job_id": job_id, "limit": 1000})["runs"]
        per_job.append(len(runs))
        for r in runs:
            start = r["start_time"]
            instant = start - start % (every * 1000)
            late.append(start - instant)
    print(f"lateness: {jobs} jobs every {every}s for {seconds}s: {len(late)} runs, "
          f"{min(per_job)}-{max(per_job)} per job; scheduled instant -> run start: "
          f"p50 {pct(late, 50)} ms, p99 {pct(late, 99)} ms, max {max(late)} ms")


def dag(srv, tasks):
    node = srv.api("GET", "/api/2.1/clusters/list-node-types")["node_types"][0]["node_type_id"]
    cid = srv.api("POST", "/api/2.1/clusters/create", json={
        "cluster_name": "bench-jobs", "spark_version": "16.4.x-scala2.12", "node_type_id": node,
        "num_workers": 0, "autotermination_minutes": 0})["cluster_id"]  # fmt: skip
    srv.cluster_ids.add(cid)
    wait_state(srv, cid, "RUNNING", 0.2, timeout=600)
    cell = "x = 1 + 1"
    srv.api("POST", "/api/2.0/workspace/import", json={
        "path": "/Shared/bench_trivial", "format": "SOURCE", "language": "PYTHON", "overwrite": True,
        "content": base64.b64encode(f"# Databricks notebook source\n{cell}\n".encode()).decode()})
    chain = [{"task_key": f"t{i}", "existing_cluster_id": cid, "notebook_task": {"notebook_path": "/Shared/bench_trivial"},
              **({"depends_on": [{"task_key": f"t{i - 1}"}]} if i else {})} for i in range(tasks)]
    job_id = srv.api("POST", "/api/2.2/jobs/create", json={"name": "chain", "tasks": chain})["job_id"]
    wait_run(srv, srv.api("POST", "/api/2.2/jobs/run-now", json={"job_id": job_id})["run_id"])  # warm
    start = time.perf_counter()
    run = wait_run(srv, srv.api("POST", "/api/2.2/jobs/run-now", json={"job_id": job_id})["run_id"])
    job_ms = (time.perf_counter() - start) * 1000
    assert run["state"]["result_state"] == "SUCCESS", run["state"]
    ctx = srv.api("POST", "/api/1.2/contexts/create", json={"clusterId": cid, "language": "python"})["id"]
    while srv.api("GET", "/api/1.2/contexts/status", params={"clusterId": cid, "contextId": ctx})["status"] != "Running":
        time.sleep(0.02)
    start = time.perf_counter()
    for _ in range(tasks):
        cmd = srv.api("POST", "/api/1.2/commands/execute", json={
            "clusterId": cid, "contextId": ctx, "language": "python", "command": cell})["id"]
        while srv.api("GET", "/api/1.2/commands/status", params={
                "clusterId": cid, "contextId": ctx, "commandId": cmd})["status"] not in ("Finished", "Error"):
            time.sleep(0.005)
    cmd_ms = (time.perf_counter() - start) * 1000
    print(f"dag: {tasks} chained notebook tasks: {job_ms / tasks:.1f} ms per task as a job run, "
          f"{cmd_ms / tasks:.1f} ms per cell as commands: overhead {(job_ms - cmd_ms) / tasks:.1f} ms per task")


def submit(srv, count):
    body = {"run_name": "s", "tasks": [{"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}
    start = time.perf_counter()
    ids = [srv.api("POST", "/api/2.2/jobs/runs/submit", json=body)["run_id"] for _ in range(count)]
    accepted = time.perf_counter() - start
    for run_id in ids:
        wait_run(srv, run_id)
    ended = time.perf_counter() - start
    print(f"submit: {count} one-task runs: {count / accepted:.0f} accepted per second, all ended after {ended:.2f} s "
          f"({count / ended:.0f} runs per second)")
    times = []
    for _ in range(20):
        t = time.perf_counter()
        srv.api("GET", "/api/2.2/jobs/runs/list", params={"limit": 25})
        times.append((time.perf_counter() - t) * 1000)
    stored = len(srv.api("GET", "/api/2.2/jobs/runs/list", params={"limit": 1000})["runs"])
    print(f"list: runs/list of 25 with {stored}+ runs stored: median {statistics.median(times):.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--submits", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-jobs-"))
    work.chmod(0o711)
    srv = Server(default_bin(), work)
    srv.start()
    try:
        lateness(srv, args.jobs, args.every, args.seconds)
        submit(srv, args.submits)
        dag(srv, args.tasks)
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
