#!/usr/bin/env python3
"""Kiln under crashes, fuzzed input and load: starts its own `kiln serve` and prints

    (a) crashes: kill -9 of Kiln at --kills random instants during --calls mutating calls across
        families (secrets, DBFS, workspace, tokens, clusters); after each restart every
        acknowledged write is checked -> writes lost, orphan engine/kernel processes, clusters
        left in a transitional state once Kiln settled
    (b) auth matrix: every route of /api/openapi.json x {no token, wrong token, expired token,
        revoked token, deleted user's token} -> share answered 401
    (c) fuzz: every route x --fuzz random and ill-typed bodies and query parameters
        -> 5xx answers other than 501, and connections dropped (panics)
    (d) load: --load-seconds of mixed list/get/create/delete calls and Python commands from
        4 threads -> errors, requests served, Kiln's RSS before and after

Usage: python3 bench/faults.py [--kills 20] [--calls 1100] [--fuzz 20] [--load-seconds 60] [--only PART]
Env:   KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import string
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import Server, default_bin, engine_pids, vm_rss_mb  # noqa: E402

SPARK_VERSION = "16.4.x-scala2.12"
TRANSITIONAL = {"PENDING", "RESTARTING", "RESIZING", "TERMINATING"}


class Ledger:
    """Acknowledged writes: what must exist (or be gone) after any crash."""

    def __init__(self):
        self.secrets: dict[str, str] = {}
        self.files: dict[str, bytes] = {}
        self.notebooks: set[str] = set()
        self.tokens: set[str] = set()
        self.clusters: set[str] = set()
        self.deleted_files: set[str] = set()


def mutate(srv: Server, ledger: Ledger, i: int, scope: str) -> None:
    """One mutating call; recorded in the ledger only once acknowledged (2xx)."""
    kind = i % 10
    s, h = srv.session, srv.host
    if kind in (0, 1, 2):
        key, value = f"k{i}", f"v{i}-" + "".join(random.choices(string.ascii_letters, k=12))
        r = s.post(h + "/api/2.0/secrets/put", json={"scope": scope, "key": key, "string_value": value}, timeout=30)
        if r.ok:
            ledger.secrets[key] = value
    elif kind in (3, 4, 5):
        path = f"/faults/f{i}.bin"
        data = os.urandom(random.randint(1, 4096))
        r = s.post(h + "/api/2.0/dbfs/put", json={"path": path, "contents": base64.b64encode(data).decode(), "overwrite": True}, timeout=30)
        if r.ok:
            ledger.files[path] = data
    elif kind == 6 and ledger.files:
        path = random.choice(sorted(ledger.files))
        r = s.post(h + "/api/2.0/dbfs/delete", json={"path": path}, timeout=30)
        if r.ok:
            ledger.files.pop(path, None)
            ledger.deleted_files.add(path)
    elif kind in (6, 7, 8):
        path = f"/Shared/faults/n{i}"
        src = base64.b64encode(f"# Databricks notebook source\nx = {i}\n".encode()).decode()
        r = s.post(h + "/api/2.0/workspace/import", json={"path": path, "format": "SOURCE", "language": "PYTHON", "content": src}, timeout=30)
        if r.ok:
            ledger.notebooks.add(path)
    elif kind == 9 and i % 100 == 9:
        r = s.post(h + "/api/2.1/clusters/create", json={"cluster_name": f"faults-{i}", "spark_version": SPARK_VERSION, "num_workers": 0, "autotermination_minutes": 0}, timeout=30)
        if r.ok:
            ledger.clusters.add(r.json()["cluster_id"])
            srv.cluster_ids.add(r.json()["cluster_id"])
    else:
        r = s.post(h + "/api/2.0/token/create", json={"comment": f"faults {i}", "lifetime_seconds": 3600}, timeout=30)
        if r.ok:
            ledger.tokens.add(r.json()["token_info"]["token_id"])


def verify(srv: Server, ledger: Ledger, scope: str, lost_examples: list) -> int:
    """Acknowledged writes missing after a restart (or deletes undone)."""
    lost = []
    s, h = srv.session, srv.host
    keys = {k["key"] for k in s.get(h + "/api/2.0/secrets/list", params={"scope": scope}, timeout=30).json().get("secrets", [])}
    for key, value in ledger.secrets.items():
        got = s.get(h + "/api/2.0/secrets/get", params={"scope": scope, "key": key}, timeout=30)
        if not (key in keys and got.ok and base64.b64decode(got.json().get("value", "")).decode() == value):
            lost.append(f"secret {key}")
    for path, data in ledger.files.items():
        got = s.get(h + "/api/2.0/dbfs/read", params={"path": path, "length": 1 << 20}, timeout=30)
        if not (got.ok and base64.b64decode(got.json().get("data", "")) == data):
            lost.append(f"file {path} {got.status_code}")
    for path in ledger.deleted_files - set(ledger.files):
        if s.get(h + "/api/2.0/dbfs/get-status", params={"path": path}, timeout=30).ok:
            lost.append(f"deleted file back {path}")
    for path in ledger.notebooks:
        if not s.get(h + "/api/2.0/workspace/get-status", params={"path": path}, timeout=30).ok:
            lost.append(f"notebook {path}")
    tokens = {t["token_id"] for t in s.get(h + "/api/2.0/token/list", timeout=30).json().get("token_infos", [])}
    lost += [f"token {t}" for t in ledger.tokens - tokens]
    listed = {c["cluster_id"] for c in s.get(h + "/api/2.1/clusters/list", timeout=30).json().get("clusters", [])}
    lost += [f"cluster {c}" for c in ledger.clusters - listed]
    lost_examples.extend(lost)
    return len(lost)


def orphans(srv: Server) -> int:
    """Engine or kernel processes of ours whose parent is not the live Kiln."""
    count = 0
    for pid in engine_pids(srv.cluster_ids):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        count += ppid != srv.proc.pid
    return count


def crashes(srv: Server, kills: int, calls: int) -> dict:
    ledger, scope = Ledger(), "faults"
    srv.api("POST", "/api/2.0/secrets/scopes/create", json={"scope": scope})
    s = srv.session
    s.post(srv.host + "/api/2.0/workspace/mkdirs", json={"path": "/Shared/faults"}, timeout=30)
    per_kill = max(1, calls // kills)
    lost = orphaned = done = 0
    examples: list = []
    for k in range(kills):
        stop = threading.Event()

        def worker(start: int):
            nonlocal done
            for i in range(start, start + per_kill):
                if stop.is_set():
                    return
                try:
                    mutate(srv, ledger, i, scope)
                except requests.RequestException:
                    return  # Kiln died mid-call: not acknowledged
                done += 1

        t = threading.Thread(target=worker, args=(k * per_kill,))
        t.start()
        time.sleep(random.uniform(0.05, 1.5))
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        stop.set()
        t.join()
        srv.start()
        lost += verify(srv, ledger, scope, examples)
        time.sleep(0.5)
        orphaned += orphans(srv)
    deadline = time.monotonic() + 120
    while True:
        states = [c["state"] for c in s.get(srv.host + "/api/2.1/clusters/list", timeout=30).json().get("clusters", [])]
        stuck = sum(st in TRANSITIONAL for st in states)
        if not stuck or time.monotonic() > deadline:
            break
        time.sleep(1)
    for cid in ledger.clusters:
        s.post(srv.host + "/api/2.1/clusters/permanent-delete", json={"cluster_id": cid}, timeout=60)
    return {"kills": kills, "mutating_calls": done, "acknowledged_writes_lost": lost,
            "orphan_processes": orphaned, "transitional_after_settle": stuck, "lost_examples": sorted(set(examples))[:5]}


def routes(srv: Server) -> list[tuple[str, str]]:
    spec = srv.session.get(srv.host + "/api/openapi.json", timeout=30).json()
    out = []
    for path, methods in spec.get("paths", {}).items():
        concrete = path
        while "{" in concrete:
            a, b = concrete.index("{"), concrete.index("}")
            concrete = concrete[:a] + "fuzz-" + "".join(random.choices(string.ascii_lowercase, k=6)) + concrete[b + 1:]
        for method in methods:
            out.append((method.upper(), concrete))
    return out


def auth_matrix(srv: Server, all_routes) -> dict:
    s, h = srv.session, srv.host
    expired = s.post(h + "/api/2.0/token/create", json={"lifetime_seconds": 1}).json()["token_value"]
    revoked = s.post(h + "/api/2.0/token/create", json={}).json()
    s.post(h + "/api/2.0/token/delete", json={"token_id": revoked["token_info"]["token_id"]})
    user = s.post(h + "/api/2.0/preview/scim/v2/Users", json={"userName": "gone@example.com", "password": "pw-gone-123"}).json()
    gone = requests.post(h + "/api/2.0/token/create", json={}, auth=("gone@example.com", "pw-gone-123")).json()["token_value"]
    s.delete(h + f"/api/2.0/preview/scim/v2/Users/{user['id']}")
    time.sleep(1.2)
    creds = {"none": None, "wrong": "dapi" + "0" * 32, "expired": expired, "revoked": revoked["token_value"], "deleted_user": gone}
    total = ok = 0
    failures = []
    for method, path in all_routes:
        for name, token in creds.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = requests.request(method, h + path, headers=headers, json={}, timeout=30)
            total += 1
            public = path.startswith(("/health", "/.well-known", "/oidc"))
            if r.status_code == 401 or public:
                ok += 1
            else:
                failures.append(f"{name} {method} {path} -> {r.status_code}")
    return {"requests": total, "share_401": round(ok / total, 4), "failures": failures[:5]}


def random_value(depth: int = 0):
    choice = random.randint(0, 8 if depth < 2 else 5)
    return [lambda: None, lambda: random.randint(-2**63, 2**63), lambda: random.random() * 1e300,
            lambda: "".join(random.choices(string.printable, k=random.randint(0, 40))), lambda: True,
            lambda: "\u0000\ud7ff" * random.randint(0, 3),
            lambda: [random_value(depth + 1) for _ in range(random.randint(0, 3))],
            lambda: {random.choice(["cluster_id", "name", "path", "scope", "id", "spec", "x"]): random_value(depth + 1) for _ in range(random.randint(0, 4))},
            lambda: {"cluster_id": random_value(depth + 1), "contents": random_value(depth + 1), "libraries": random_value(depth + 1)}][choice]()


def fuzz(srv: Server, all_routes, per_route: int) -> dict:
    errors, dropped, sent = [], 0, 0
    for method, path in all_routes:
        for _ in range(per_route):
            body = random_value()
            params = {random.choice(["cluster_id", "path", "page_token", "max_results", "filter"]): str(random_value())}
            raw = random.random() < 0.2
            kw = {"data": os.urandom(random.randint(0, 64))} if raw else {"json": body}
            # A fresh connection per request: a server may close a keep-alive
            # connection after answering without reading a body, which a reused
            # connection would report as a reset on the *next* request.
            try:
                r = requests.request(method, srv.host + path, params=params, timeout=30,
                                     headers=srv.session.headers, **kw)
                sent += 1
                if r.status_code >= 500 and r.status_code != 501:
                    errors.append(f"{method} {path} -> {r.status_code} {r.text[:120]}")
            except requests.ConnectionError as e:
                dropped += 1
                errors.append(f"dropped: {method} {path} {params} {str(kw)[:80]} {e}")
    alive = srv.proc.poll() is None
    return {"requests": sent, "5xx_not_501": len(errors) - dropped, "dropped_connections": dropped, "kiln_alive": alive, "examples": errors[:5]}


def load(srv: Server, seconds: float) -> dict:
    s, h = srv.session, srv.host
    cid = srv.api("POST", "/api/2.1/clusters/create", json={"cluster_name": "faults-load", "spark_version": SPARK_VERSION, "num_workers": 0})["cluster_id"]
    srv.cluster_ids.add(cid)
    while srv.api("GET", "/api/2.1/clusters/get", params={"cluster_id": cid})["state"] != "RUNNING":
        time.sleep(0.2)
    ctx = srv.api("POST", "/api/1.2/contexts/create", json={"clusterId": cid, "language": "python"})["id"]
    rss_before = vm_rss_mb(srv.proc.pid)
    counts = {"requests": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def call(session, method, path, **kw):
        r = session.request(method, h + path, timeout=60, **kw)
        with lock:
            counts["requests"] += 1
            counts["errors"] += not r.ok
        return r

    def crud(n: int):
        session = requests.Session()
        session.headers.update(s.headers)
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            call(session, "GET", "/api/2.1/clusters/list")
            call(session, "GET", "/api/2.1/clusters/get", params={"cluster_id": cid})
            scope = f"load-{n}-{i}"
            call(session, "POST", "/api/2.0/secrets/scopes/create", json={"scope": scope})
            call(session, "POST", "/api/2.0/secrets/put", json={"scope": scope, "key": "k", "string_value": "v"})
            call(session, "POST", "/api/2.0/secrets/scopes/delete", json={"scope": scope})
            call(session, "POST", "/api/2.0/dbfs/put", json={"path": f"/load/{n}-{i}", "contents": "aGk=", "overwrite": True})
            call(session, "POST", "/api/2.0/dbfs/delete", json={"path": f"/load/{n}-{i}"})

    def commands():
        session = requests.Session()
        session.headers.update(s.headers)
        while time.monotonic() < stop_at:
            cmd = call(session, "POST", "/api/1.2/commands/execute", json={"clusterId": cid, "contextId": ctx, "language": "python", "command": "sum(range(1000))"}).json()["id"]
            while True:
                st = call(session, "GET", "/api/1.2/commands/status", params={"clusterId": cid, "contextId": ctx, "commandId": cmd}).json()
                if st["status"] in ("Finished", "Error", "Cancelled"):
                    with lock:
                        counts["errors"] += st["status"] != "Finished"
                    break
                time.sleep(0.005)

    threads = [threading.Thread(target=crud, args=(n,)) for n in range(3)] + [threading.Thread(target=commands)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rss_after = vm_rss_mb(srv.proc.pid)
    s.post(h + "/api/2.1/clusters/permanent-delete", json={"cluster_id": cid}, timeout=60)
    return {"seconds": seconds, **counts, "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--calls", type=int, default=1100)
    ap.add_argument("--fuzz", type=int, default=20)
    ap.add_argument("--load-seconds", type=float, default=60)
    ap.add_argument("--only", choices=["crashes", "auth", "fuzz", "load"], help="run one part")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kiln-bench-faults-"))
    workdir.chmod(0o711)  # reachable by the unprivileged users user code runs as (when root)
    srv = Server(default_bin(), workdir)
    srv.start()
    results = {}
    try:
        want = lambda part: args.only in (None, part)  # noqa: E731
        if want("crashes"):
            results["crashes"] = crashes(srv, args.kills, args.calls)
            print("crashes:", json.dumps(results["crashes"]), flush=True)
        all_routes = routes(srv)
        if want("auth"):
            results["auth"] = auth_matrix(srv, all_routes)
            print("auth matrix:", json.dumps(results["auth"]), flush=True)
        if want("fuzz"):
            results["fuzz"] = fuzz(srv, all_routes, args.fuzz)
            print("fuzz:", json.dumps(results["fuzz"]), flush=True)
        if want("load"):
            results["load"] = load(srv, args.load_seconds)
            print("load:", json.dumps(results["load"]), flush=True)
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
