"""A Kubernetes API test double (never part of Kiln): the pods API subset that
Kiln and Sail's `kubernetes-cluster` mode call, where every pod's command runs
as a process in its OWN network namespace (a veth on a bridge, its own IP) and
its OWN mount namespace (tmpfs over /tmp, /var/tmp, /root, /home, /var/lib/kiln,
/dev/shm), so any hidden assumption of a disk shared with the driver fails.

    python double.py --port P --token T --sail /path/to/sail --state-dir D

Needs root, `ip`, `unshare` and `setpriv`. Pods run the configured `sail` binary in
place of the image's (the image is recorded, not pulled); a pod's PersistentVolumeClaim
volumes are the directories given with `--claim NAME=DIR` (bound at their mountPath with
their subPath, like a ReadWriteMany volume), and `securityContext.runAsUser/runAsGroup/
supplementalGroups` are honoured. Endpoints (bearer token T):
  POST   /api/v1/namespaces/{ns}/pods
  GET    /api/v1/namespaces/{ns}/pods/{name}
  GET    /api/v1/namespaces/{ns}/pods?labelSelector=k=v,...
  DELETE /api/v1/namespaces/{ns}/pods/{name}
  DELETE /api/v1/namespaces/{ns}/pods?labelSelector=k=v,...
  POST   /double/capacity {"pods": N}   (test control: pods beyond N stay Pending, unschedulable)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PRIVATE_DIRS = ["/tmp", "/var/tmp", "/root", "/home", "/var/lib/kiln", "/dev/shm"]
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def matches(labels: dict, selector: str) -> bool:
    for part in filter(None, selector.split(",")):
        key, _, value = part.partition("=")
        if labels.get(key) != value:
            return False
    return True


class Pods:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.pods: dict[str, dict] = {}
        self.procs: dict[str, subprocess.Popen] = {}
        self.slots: dict[str, int] = {}
        self.tag = f"kd{args.port % 10000}"
        self.net = args.subnet  # e.g. 10.77.0
        self.bridge = args.bridge
        self.requests: list[str] = []
        self.spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.capacity = args.capacity
        self.order: list[str] = []

    # ---- network --------------------------------------------------------
    def setup_bridge(self) -> None:
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode != 0:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
        addrs = subprocess.run(["ip", "-4", "addr", "show", self.bridge], capture_output=True, text=True).stdout
        if f"{self.net}.1/" not in addrs:
            sh("ip", "addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")

    def free_slot(self) -> int:
        used = set(self.slots.values())
        for n in range(10, 250):
            if n not in used:
                return n
        raise RuntimeError("no pod addresses left")

    def netns(self, n: int) -> str:
        return f"{self.tag}p{n}"

    def add_netns(self, n: int) -> str:
        ns, host, peer = self.netns(n), f"{self.tag}h{n}", f"{self.tag}c{n}"
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", host, "master", self.bridge, "up")
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "-n", ns, "addr", "add", f"{self.net}.{n}/24", "dev", peer)
        sh("ip", "-n", ns, "link", "set", peer, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", f"{self.net}.1")
        return ns

    def del_netns(self, n: int) -> None:
        subprocess.run(["ip", "netns", "del", self.netns(n)], capture_output=True)
        subprocess.run(["ip", "link", "del", f"{self.tag}h{n}"], capture_output=True)

    # ---- pods -----------------------------------------------------------
    def create(self, ns: str, pod: dict) -> tuple[int, dict]:
        """Admits a pod; it runs at once, or stays Pending (unschedulable) while
        the double's capacity is taken, until a pod is deleted or capacity grows."""
        name = pod.get("metadata", {}).get("name", "")
        meta = pod.setdefault("metadata", {})
        meta.update({"namespace": ns, "uid": str(uuid.uuid4()),
                     "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        with self.lock:
            if name in self.pods:
                return 409, status(409, "AlreadyExists", f'pods "{name}" already exists')
            waiting = [n for n in self.order if n in self.pods and n not in self.slots]
            if waiting or len(self.slots) >= self.capacity:
                pod["status"] = {"phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": f"0/1 nodes are available: 1 Too many pods (capacity {self.capacity})."}]}
            else:  # placed; its container is starting
                pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
            self.pods[name] = pod
            self.order.append(name)
        self.schedule()
        with self.lock:
            return 201, self.view(name)

    def schedule(self) -> None:
        """Starts Pending pods, oldest first, while capacity allows."""
        while True:
            with self.lock:
                waiting = [n for n in self.order if n in self.pods and n not in self.procs and n not in self.slots]
                if not waiting or len(self.slots) >= self.capacity:
                    return
                name = waiting[0]
                n = self.free_slot()
                self.slots[name] = n
                pod = self.pods[name]
                pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
            self.start(name, pod, n)

    def start(self, name: str, pod: dict, n: int) -> None:
        ip = f"{self.net}.{n}"
        netns = self.add_netns(n)
        container = pod["spec"]["containers"][0]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
                env[e["name"]] = ip
        cmd = list(container.get("command") or []) + list(container.get("args") or [])
        if cmd[:1] == ["sail"]:
            cmd[0] = self.args.sail
        inner = self.pod_script(pod, container)
        log = open(os.path.join(self.args.state_dir, f"{name}.log"), "ab")
        # Started from one long-lived thread: a death signal follows the parent *thread*,
        # and request threads end after each request.
        proc = self.spawner.submit(
            subprocess.Popen,
            ["ip", "netns", "exec", netns, "unshare", "-m", "sh", "-c", inner, "sh", *cmd],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        ).result()
        log.close()
        with self.lock:
            if self.pods.get(name) is not pod:  # deleted while it started
                proc.kill()
                proc.wait()
                self.slots.pop(name, None)
                self.del_netns(n)
                return
            pod["metadata"].setdefault("annotations", {})["k8s-double/pid"] = str(proc.pid)
            pod["status"] = {"phase": "Running", "podIP": ip, "hostIP": f"{self.net}.1",
                             "conditions": [{"type": "PodScheduled", "status": "True"}]}
            self.procs[name] = proc

    def set_capacity(self, pods: int) -> None:
        with self.lock:
            self.capacity = pods
        self.schedule()

    def pod_script(self, pod: dict, container: dict) -> str:
        """The shell run inside the pod's namespaces: private directories, the pod's
        volumes (only PersistentVolumeClaims, from --claim), then its user."""
        q = shlex.quote
        steps = ["mount --make-rprivate /", "mount -t tmpfs tmpfs /mnt"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        staged = []
        for i, m in enumerate(container.get("volumeMounts") or []):
            claim = volumes[m["name"]]["persistentVolumeClaim"]["claimName"]
            source = os.path.join(self.args.claims[claim], m.get("subPath", ""))
            steps += [f"mkdir /mnt/v{i}", f"mount --bind {q(source)} /mnt/v{i}"]
            staged.append((f"/mnt/v{i}", m["mountPath"]))
        private = [d for d in PRIVATE_DIRS if not self.args.sail.startswith(d + "/")]
        steps += [f"{{ [ ! -d {d} ] || mount -t tmpfs tmpfs {d}; }}" for d in private]
        for source, target in staged:
            steps += [f"mkdir -p {q(target)}", f"mount --move {source} {q(target)}"]
        steps.append("cd /tmp")
        sc = pod["spec"].get("securityContext") or {}
        run_as = ""
        if "runAsUser" in sc:
            groups = ",".join(str(g) for g in sc.get("supplementalGroups") or [sc.get("runAsGroup", 0)])
            run_as = f"setpriv --reuid={sc['runAsUser']} --regid={sc.get('runAsGroup', 0)} --groups={groups} -- "
        return " && ".join(steps) + f' && exec {run_as}"$@"'

    def view(self, name: str) -> dict:
        pod = json.loads(json.dumps(self.pods[name]))
        if name not in self.procs:
            return pod
        code = self.procs[name].poll()
        if code is not None:
            phase = "Succeeded" if code == 0 else "Failed"
            pod["status"]["phase"] = phase
            pod["status"]["containerStatuses"] = [{"name": "worker", "state": {"terminated": {
                "exitCode": code if code >= 0 else 128 - code,
                "reason": "Completed" if code == 0 else "Error"}}}]
        return pod

    def get(self, name: str) -> tuple[int, dict]:
        with self.lock:
            if name not in self.pods:
                return 404, status(404, "NotFound", f'pods "{name}" not found')
            return 200, self.view(name)

    def list(self, selector: str) -> tuple[int, dict]:
        with self.lock:
            items = [self.view(n) for n, p in self.pods.items()
                     if matches(p["metadata"].get("labels", {}), selector)]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}

    def delete(self, names: list[str]) -> list[dict]:
        gone = []
        with self.lock:
            for name in names:
                if name not in self.pods:
                    continue
                pod = self.view(name)
                proc = self.procs.pop(name, None)
                del self.pods[name]
                n = self.slots.pop(name, None)
                gone.append((pod, proc, n))
        for _, proc, n in gone:
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            if n is not None:
                self.del_netns(n)
        if gone:
            self.schedule()
        return [pod for pod, _, _ in gone]

    def delete_matching(self, selector: str) -> tuple[int, dict]:
        with self.lock:
            names = [n for n, p in self.pods.items() if matches(p["metadata"].get("labels", {}), selector)]
        items = self.delete(names)
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}

    def shutdown(self) -> None:
        self.capacity = 0
        self.delete(list(self.pods))


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reason, "code": code}


def handler(pods: Pods, token: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with pods.lock:
                pods.requests.append(f"{method} {self.path}")
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self.reply(401, status(401, "Unauthorized", "Unauthorized"))
            if url.path == "/double/capacity" and method == "POST":
                pods.set_capacity(int(json.loads(body)["pods"]))
                return self.reply(200, {"capacity": pods.capacity})
            parts = url.path.strip("/").split("/")
            if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5 or parts[4] != "pods":
                return self.reply(404, status(404, "NotFound", "the server could not find the requested resource"))
            ns, name = parts[3], (parts[5] if len(parts) > 5 else None)
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            if method == "POST" and name is None:
                return self.reply(*pods.create(ns, json.loads(body)))
            if method == "GET":
                return self.reply(*(pods.get(name) if name else pods.list(selector)))
            if method == "DELETE" and name:
                gone = pods.delete([name])
                return self.reply(200, gone[0]) if gone else self.reply(404, status(404, "NotFound", f'pods "{name}" not found'))
            if method == "DELETE":
                return self.reply(*pods.delete_matching(selector))
            return self.reply(405, status(405, "MethodNotAllowed", method))

        def do_GET(self):
            self.route("GET")

        def do_POST(self):
            self.route("POST")

        def do_DELETE(self):
            self.route("DELETE")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--sail", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--bridge", default="kilnbr0")
    parser.add_argument("--subnet", default="10.77.0")
    parser.add_argument("--capacity", type=int, default=1000, help="pods that may run at once")
    parser.add_argument("--claim", action="append", default=[],
                        help="NAME=DIR: a PersistentVolumeClaim and the directory it holds")
    args = parser.parse_args()
    args.claims = dict(c.split("=", 1) for c in args.claim)
    die_with_parent()
    pods = Pods(args)
    pods.setup_bridge()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(pods, args.token))
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    try:
        server.serve_forever()
    finally:
        pods.shutdown()


if __name__ == "__main__":
    sys.exit(main())
