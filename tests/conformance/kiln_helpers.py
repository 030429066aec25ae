"""Helpers shared by the Kiln conformance tests.

Everything here is plain Python: starting/stopping a `kiln serve` process, scanning /proc for
engine processes, polling helpers with generous deadlines (never timing assertions), a Spark
Connect round trip, and small HTTP conveniences for raw-wire checks.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Optional
from urllib.parse import urlparse

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# Upper bounds only: every wait returns as soon as its condition holds.
SERVER_START_TIMEOUT = float(os.environ.get("KILN_TEST_START_TIMEOUT", "600"))
CLUSTER_TIMEOUT = float(os.environ.get("KILN_TEST_CLUSTER_TIMEOUT", "120"))
SETUP_TIMEOUT = float(os.environ.get("KILN_TEST_SETUP_TIMEOUT", "900"))
SDK_TIMEOUT = datetime.timedelta(seconds=CLUSTER_TIMEOUT)

SPARK_VERSION = "15.4.x-scala2.12"
SERVER_ENV_OVERRIDES = ("KILN_HOST", "KILN_PORT", "KILN_HTTPS_PORT", "KILN_PG_PORT", "KILN_DATA_DIR", "KILN_ADMIN_PASSWORD")
ENGINE_ENV = "KILN_CLUSTER_ID"


def kiln_bin() -> Path:
    env = os.environ.get("KILN_BIN")
    if env:
        return Path(env)
    return REPO_ROOT / "target" / "debug" / "kiln"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# polling


def wait_for(fn: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Call fn until it returns something truthy; return that value.

    Raises AssertionError naming `what` if the deadline passes. The deadline is an upper bound for
    a condition that must eventually hold, not a performance assertion.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


def start_moto(host: str, log_dir: Path, iam_sessions: bool = False) -> tuple[subprocess.Popen, str]:
    """moto's server on `host` (a free port), once it answers; its output in `log_dir/moto.log`.
    `iam_sessions`: the `moto_sts.py` wrapper, which evaluates AssumeRole session policies once
    IAM is enforced. Returns the process and the endpoint URL."""
    import sys

    port = free_port()
    here = Path(__file__).resolve().parent
    command = ([sys.executable, str(here / "moto_sts.py")] if iam_sessions
               else [str(Path(sys.executable).parent / "moto_server")])  # fmt: skip
    with open(log_dir / "moto.log", "ab") as log:
        proc = subprocess.Popen(command + ["-H", host, "-p", str(port)], stdout=log, stderr=log)
    endpoint = f"http://{host}:{port}"

    def up():
        try:
            return requests.get(f"{endpoint}/moto-api/", timeout=5).ok
        except requests.ConnectionError:
            return False

    wait_for(up, 30, "moto to answer", 0.2)
    return proc, endpoint


def wait_cluster_state(
    w,
    cluster_id: str,
    target,
    *,
    fail_on: Iterable = (),
    timeout: float = CLUSTER_TIMEOUT,
    interval: float = 0.1,
    history: Optional[list] = None,
):
    """Poll clusters/get until `state == target`; fail fast on a state in `fail_on`.

    `history` (if given) receives the distinct successive states observed.
    """
    fail_on = tuple(fail_on)
    seen = history if history is not None else []

    def poll():
        c = w.clusters.get(cluster_id)
        if not seen or seen[-1] != c.state:
            seen.append(c.state)
        if c.state in fail_on:
            raise AssertionError(
                f"cluster {cluster_id} reached {c.state} while waiting for {target}: "
                f"{c.state_message!r} reason={c.termination_reason}; states seen {seen}"
            )
        return c if c.state == target else None

    return wait_for(poll, timeout, f"cluster {cluster_id} to reach {target} (states seen {seen})", interval)


# --------------------------------------------------------------------------------------------
# /proc scanning


@dataclasses.dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    starttime: int
    cmdline: str
    cluster_id: Optional[str]

    @property
    def is_engine_cmd(self) -> bool:
        return "sail" in self.cmdline and "spark" in self.cmdline and "server" in self.cmdline


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def proc_info(pid: int) -> Optional[Proc]:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    text = stat.decode("utf-8", "replace")
    rest = text[text.rfind(")") + 2 :].split()
    # rest[0] is field 3 (state); field 4 ppid; field 22 starttime
    state, ppid, starttime = rest[0], int(rest[1]), int(rest[19])
    cmdline = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode("utf-8", "replace").strip()
    cluster_id = None
    env = _read(f"/proc/{pid}/environ")
    if env:
        prefix = (ENGINE_ENV + "=").encode()
        for item in env.split(b"\0"):
            if item.startswith(prefix):
                cluster_id = item[len(prefix) :].decode("utf-8", "replace")
                break
    return Proc(pid, ppid, state, starttime, cmdline, cluster_id)


def all_procs() -> list[Proc]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = proc_info(int(name))
            if p is not None:
                out.append(p)
    return out


def _live(p: Proc) -> bool:
    # zombies (Z) and dead (X) processes no longer run anything; a zombie can linger when PID 1
    # of a container does not reap re-parented orphans.
    return p.state not in ("Z", "X")


def kiln_engine_procs(cluster_id: Optional[str] = None) -> list[Proc]:
    """Live processes carrying KILN_CLUSTER_ID in their environment (optionally a given id)."""
    return [
        p
        for p in all_procs()
        if p.cluster_id is not None and _live(p) and (cluster_id is None or p.cluster_id == cluster_id)
    ]


KERNEL_MODULE = "kiln_kernel"


def kernel_procs(cluster_id: Optional[str] = None) -> list[Proc]:
    """Live execution-context kernels (`python -m kiln_kernel.kernel`), optionally of one cluster.

    Besides one kernel per live context, Kiln keeps one warm kernel per RUNNING cluster.
    """
    return [p for p in kiln_engine_procs(cluster_id) if KERNEL_MODULE in p.cmdline]


def engine_main_proc(cluster_id: str) -> Optional[Proc]:
    """The topmost `sail spark server` process of a cluster, or None."""
    procs = kiln_engine_procs(cluster_id)
    if not procs:
        return None
    engines = [p for p in procs if p.is_engine_cmd] or procs
    pids = {p.pid for p in engines}
    top = [p for p in engines if p.ppid not in pids]
    return (top or engines)[0]


def is_alive(p: Proc) -> bool:
    now = proc_info(p.pid)
    return now is not None and now.starttime == p.starttime and _live(now)


def descends_from(pid: int, ancestor: int) -> bool:
    seen = set()
    while pid > 1 and pid not in seen:
        if pid == ancestor:
            return True
        seen.add(pid)
        info = proc_info(pid)
        if info is None:
            return False
        pid = info.ppid
    return False


# --------------------------------------------------------------------------------------------
# Spark Connect / sockets


def connect_url(cluster) -> str:
    tags = cluster.default_tags or {}
    url = tags.get("KilnSparkConnectUrl")
    assert url, f"cluster {cluster.cluster_id} has no default_tags.KilnSparkConnectUrl: {tags}"
    assert url.startswith("sc://127.0.0.1:"), url
    return url


def url_port(url: str) -> int:
    return urlparse(url.replace("sc://", "http://", 1)).port


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def spark_sql(url: str, query: str):
    """Run one SQL statement on a fresh Spark Connect session and return the collected rows."""
    port = url_port(url)
    assert port_accepts(port), f"Spark Connect endpoint {url} does not accept connections"
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(url).create()
    try:
        return spark.sql(query).collect()
    finally:
        spark.stop()


# --------------------------------------------------------------------------------------------
# HTTP


def http(token: Optional[str] = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxies / netrc from the environment
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def error_body(resp: requests.Response) -> dict:
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error response is not JSON: {resp.status_code} {resp.text[:500]!r}")
    assert isinstance(body, dict), body
    return body


def assert_error(resp: requests.Response, status: int, code: Optional[str] = None) -> dict:
    assert resp.status_code == status, f"expected HTTP {status}, got {resp.status_code}: {resp.text[:500]}"
    body = error_body(resp)
    if "/api/1.2/" in resp.url and status not in (401, 429):
        # REST API 1.2 has its own error body; the status tells the kind.
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
        return body
    if code is not None:
        assert body.get("error_code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


# --------------------------------------------------------------------------------------------
# server process


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"unsupported TOML value {v!r}")


def to_toml(config: dict) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for k, v in config.items():
        if isinstance(v, dict):
            lines.append("")
            lines.append(f"[{k}]")
            lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
    return "\n".join(lines) + "\n"


def run_setup(binary: Path, log_path: Path) -> None:
    """`kiln setup`: installs the engine runtime into the per-user cache; idempotent."""
    with open(log_path, "ab") as log:
        rc = subprocess.run(
            [str(binary), "setup"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=SETUP_TIMEOUT
        ).returncode
    if rc != 0:
        raise AssertionError(f"`kiln setup` exited {rc}; see {log_path}:\n{tail(log_path)}")


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "<no log>"


class KilnServer:
    """One `kiln serve` instance on its own port and data dir."""

    def __init__(self, binary: Path, workdir: Path, config: dict):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config = config
        self.config_path = self.workdir / "kiln.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = self.workdir / "kiln.log"
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.token: Optional[str] = None
        self.admin_password: Optional[str] = config.get("admin_password")
        self.server_pids: list[int] = []
        self.cluster_ids: set[str] = set()  # every cluster id a test told us about
        self._engines_seen: dict[tuple[int, int], Proc] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = SERVER_START_TIMEOUT) -> "KilnServer":
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        cmd = [
            str(self.binary), "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--config", str(self.config_path),
        ]  # fmt: skip
        # settings that kiln would take from the environment over our config file
        env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_OVERRIDES}
        env.update(getattr(self, "extra_env", {}))
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            cmd = list(getattr(self, "command_prefix", [])) + cmd
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.server_pids.append(self.proc.pid)
        self._wait_healthy(timeout)
        token_file = self.data_dir / "admin.token"
        self.token = token_file.read_text().strip()
        assert self.token, f"{token_file} is empty"
        return self

    def _wait_healthy(self, timeout: float) -> None:
        s = http()
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(f"kiln serve exited with {rc} before /health answered:\n{tail(self.log_path)}")
            try:
                if s.get(f"{self.host}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"/health did not answer 200 within {timeout}s:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def kill9(self) -> list[Proc]:
        """SIGKILL the server; return the engine processes it had (for orphan checks)."""
        engines = self.engine_procs()
        self.proc.kill()
        self.proc.wait(timeout=30)
        return engines

    def restart(self, timeout: float = SERVER_START_TIMEOUT) -> list[Proc]:
        """kill -9 the server and start it again on the same port and data dir.

        Returns the engine processes the killed server had.
        """
        old = self.kill9()
        self.start(timeout)
        return old

    def stop(self, check_engines: bool = True) -> None:
        """Graceful stop (SIGTERM); then assert no engine of this server survives."""
        if self.proc is None or self.proc.poll() is not None:
            return
        known = set(self.cluster_ids)
        try:
            r = http(self.token).get(f"{self.host}/api/2.0/clusters/list", timeout=10)
            if r.ok:
                known.update(c["cluster_id"] for c in r.json().get("clusters", []))
        except (requests.RequestException, ValueError, KeyError):
            pass
        before = self.engine_procs()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"kiln serve did not exit within 60s of SIGTERM:\n{tail(self.log_path)}")
        if not check_engines:
            return
        tracked = list({(p.pid, p.starttime): p for p in before + list(self._engines_seen.values())}.values())

        def leftovers():
            alive = [p for p in tracked if is_alive(p)] + [p for p in kiln_engine_procs() if p.cluster_id in known]
            return sorted({p.pid: p for p in alive}.values(), key=lambda p: p.pid)

        # the processes must be gone; allow a moment for SIGKILLed children to be reaped
        try:
            wait_for(lambda: not leftovers(), 10, "engines to exit after server shutdown", 0.1)
        except AssertionError:
            raise AssertionError(f"engine processes survived SIGTERM of kiln serve: {leftovers()}")

    # -- engines ------------------------------------------------------------------------------

    def engine_procs(self) -> list[Proc]:
        """Live engine processes that descend from this server process."""
        if self.proc is None:
            return []
        out = [p for p in kiln_engine_procs() if descends_from(p.pid, self.proc.pid)]
        for p in out:
            self._engines_seen[(p.pid, p.starttime)] = p
        return out

    def track(self, cluster_id: str) -> str:
        self.cluster_ids.add(cluster_id)
        return cluster_id

    # -- clients ------------------------------------------------------------------------------

    def client(self, **kwargs):
        """A WorkspaceClient for this server; defaults to the admin PAT."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        if not {"token", "username", "password", "client_id", "client_secret"} & kwargs.keys():
            kwargs["token"] = self.token
        # a bounded retry budget so a broken server fails a test instead of hanging for 300 s
        kwargs.setdefault("retry_timeout_seconds", 60)
        return WorkspaceClient(config=Config(host=self.host, **kwargs))

    def http(self, token: Optional[str] = "admin") -> requests.Session:
        return http(self.token if token == "admin" else token)

    @property
    def shared_dir(self) -> Path:
        """Where DBFS, the warehouse and cluster environments live (`shared_dir`)."""
        return Path(self.config.get("shared_dir") or self.data_dir)

    @property
    def dbfs_dir(self) -> Path:
        """DBFS's root as user code's file calls see it (on an object-store root: its s3fs mount)."""
        if (self.config.get("storage") or {}).get("root"):
            return self.shared_dir / "object-store" / "dbfs"
        return self.shared_dir / "dbfs"

    @property
    def pg_port(self) -> int:
        """The Lakebase Postgres proxy port."""
        return int(self.config["lakebase"]["proxy_port"])

    def url(self, path: str) -> str:
        return self.host + path

    @property
    def https_port(self) -> int:
        return int(self.config.get("server", {}).get("https_port", 8443))

    @property
    def https_host(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def ca_cert(self) -> Path:
        """Kiln's local CA certificate (what clients trust)."""
        return self.data_dir / "tls" / "ca.crt"

    @property
    def ca_bundle(self) -> Path:
        """The system roots plus Kiln's CA (for settings that replace the roots)."""
        return self.data_dir / "tls" / "bundle.pem"


def non_admin(kiln, w, prefix: str) -> dict:
    """A new non-admin user (created by the admin client `w`) with its own PAT:
    {"name": user name, "w": a WorkspaceClient acting as that user}."""
    name = unique(prefix) + "@example.com"
    password = "pw-" + unique(prefix)
    w.api_client.do("POST", "/api/2.0/preview/scim/v2/Users", body={"userName": name, "password": password})
    token = kiln.client(username=name, password=password).tokens.create(comment=prefix, lifetime_seconds=3600).token_value
    return {"name": name, "w": kiln.client(token=token)}
