#!/usr/bin/env python3
"""Web UI figures, printed (never asserted), measured in headless Chromium on loopback.

    cold load      bytes transferred for a first visit of the compute page (HTML, CSS,
                   JS modules, API calls; compressed as sent) and the number of requests
    first paint    first-contentful-paint, and "meaningful": the compute table on screen
                   (from navigation start, median of N cold loads in fresh browser contexts)
    1,000 clusters time until the compute list shows 1,000 rows, and the time of one live
                   refresh of that list (median), with 1,000 clusters created through the API
                   (created, then terminated at once: no engines stay up)

Usage: python bench/ui.py [--clusters 1000] [--loads 5] [--json PATH]
Env:   KILN_BIN (default target/release/kiln if present, else target/debug/kiln),
       KILN_CHROMIUM (default /usr/bin/chromium). Needs `playwright` (the test venv has it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary() -> Path:
    if os.environ.get("KILN_BIN"):
        return Path(os.environ["KILN_BIN"])
    release = REPO / "target" / "release" / "kiln"
    return release if release.exists() else REPO / "target" / "debug" / "kiln"


class Kiln:
    def __init__(self, workdir: Path):
        self.port = free_port()
        self.host = f"http://127.0.0.1:{self.port}"
        config = workdir / "kiln.toml"
        config.write_text(f"[server]\nhttps_port = 0\n[lakebase]\nproxy_port = {free_port()}\ndir = \"{workdir}/lakebase\"\n")
        self.log = open(workdir / "kiln.log", "ab")
        self.proc = subprocess.Popen([str(binary()), "serve", "--port", str(self.port), "--data-dir", str(workdir / "data"),
                                      "--config", str(config)], stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        self.s = requests.Session()
        self.s.trust_env = False
        deadline = time.monotonic() + 600
        while True:
            try:
                if self.s.get(self.host + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kiln did not start:\n" + (workdir / "kiln.log").read_text()[-2000:])
            time.sleep(0.1)
        self.token = (workdir / "data" / "admin.token").read_text().strip()
        self.s.headers["Authorization"] = f"Bearer {self.token}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


LOAD_METRICS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  return {
    bytes: (nav ? nav.transferSize : 0) + res.reduce((a, r) => a + (r.transferSize || 0), 0),
    decoded: (nav ? nav.decodedBodySize : 0) + res.reduce((a, r) => a + (r.decodedBodySize || 0), 0),
    requests: 1 + res.length,
    fcp_ms: fcp ? fcp.startTime : null,
  };
}"""


def signed_in_context(browser, kiln):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    login = requests.Session()
    login.trust_env = False
    r = login.post(kiln.host + "/ui/api/login", json={"token": kiln.token})
    if r.status_code != 200:
        raise RuntimeError(f"sign-in: {r.status_code} {r.text}")
    value = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    ctx.add_cookies([{"name": "kiln_session", "value": value, "url": kiln.host + "/"}])
    return ctx


def cold_loads(browser, kiln, n: int, rows: int) -> dict:
    out = []
    for _ in range(n):
        ctx = signed_in_context(browser, kiln)
        page = ctx.new_page()
        page.goto(kiln.host + "/ui/#/compute")
        page.wait_for_function(f"() => document.querySelectorAll('table.list tbody tr').length >= {rows}", timeout=120_000)
        meaningful = page.evaluate("() => performance.now()")
        metrics = page.evaluate(LOAD_METRICS)
        metrics["meaningful_ms"] = meaningful
        out.append(metrics)
        ctx.close()
    return {
        "cold_load_bytes": out[0]["bytes"],
        "cold_load_decoded_bytes": out[0]["decoded"],
        "cold_load_requests": out[0]["requests"],
        "first_contentful_paint_ms": statistics.median(m["fcp_ms"] for m in out if m["fcp_ms"] is not None),
        "meaningful_paint_ms": statistics.median(m["meaningful_ms"] for m in out),
    }


def refresh_time(browser, kiln, rows: int, samples: int = 5) -> float:
    """One live refresh of the list: fetch every page of clusters/list and update the rows."""
    ctx = signed_in_context(browser, kiln)
    page = ctx.new_page()
    page.goto(kiln.host + "/ui/#/compute")
    page.wait_for_function(f"() => document.querySelectorAll('table.list tbody tr').length >= {rows}", timeout=120_000)
    times = []
    for _ in range(samples):
        times.append(page.evaluate("""async () => {
          const api = await import(document.querySelector('link[href$="js/api.js"]').href);
          const t0 = performance.now();
          await api.all('/api/2.1/clusters/list', 'clusters', { page_size: 1000 });
          return performance.now() - t0;
        }"""))
    ctx.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="kiln-bench-ui-") as tmp:
        os.chmod(tmp, 0o711)  # engines and postgres run as other users when Kiln is root
        kiln = Kiln(Path(tmp))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=os.environ.get("KILN_CHROMIUM", "/usr/bin/chromium"), headless=True)
                figures = {"binary": str(binary())}
                kiln.s.post(kiln.host + "/api/2.1/clusters/create",
                            json={"cluster_name": "c0", "spark_version": "15.4.x-scala2.12", "num_workers": 0})  # fmt: skip
                figures.update({f"empty_{k}": v for k, v in cold_loads(browser, kiln, args.loads, 1).items()})
                t0 = time.monotonic()
                for i in range(1, args.clusters):
                    cid = kiln.s.post(kiln.host + "/api/2.1/clusters/create", json={
                        "cluster_name": f"bench-{i:04d}", "spark_version": "15.4.x-scala2.12", "num_workers": 0}).json()["cluster_id"]
                    kiln.s.post(kiln.host + "/api/2.1/clusters/delete", json={"cluster_id": cid})
                figures["seed_s"] = round(time.monotonic() - t0, 1)
                many = cold_loads(browser, kiln, args.loads, args.clusters)
                figures.update({f"clusters_{args.clusters}_{k}": v for k, v in many.items()})
                figures[f"clusters_{args.clusters}_list_fetch_ms"] = refresh_time(browser, kiln, args.clusters)
                browser.close()
        finally:
            kiln.stop()
    for k, v in figures.items():
        print(f"{k:45s} {v:.1f}" if isinstance(v, float) else f"{k:45s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
