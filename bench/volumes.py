"""Files API on a volume with a large file: prints measured figures (nothing is asserted).

  upload      a 1 GiB file with the SDK's `w.files.upload` (multipart: parts to signed URLs, joined)
              and with one streamed PUT (single shot): MB/s
  download    the whole file streamed, and 100 ranged reads of 1 MiB at random offsets: MB/s, ms
  memory      Kiln's resident memory before, and its peak (VmHWM) after all of the above:
              the target is growth < 64 MB (bodies stream, never held whole)

Each on a volume on local disk, then on a volume on object storage (`[storage] root = "s3://…"`,
moto on loopback: S3 multipart uploads of 8 MiB parts, ranged GETs), each in a Kiln of its own.

Usage:  python bench/volumes.py [--size-mb 1024] [--only local|s3]
Env:    KILN_BIN (default target/release/kiln if present, else target/debug/kiln)
Needs:  databricks-sdk, requests, moto[server] (tests/conformance/requirements.txt); s3fs for S3.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import default_bin, free_port, wait_healthy  # the shared helpers of bench/bench.py


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.put(f"{endpoint}/kiln-bench", timeout=2).ok:
                return proc, endpoint
        except requests.RequestException:
            pass
        if time.time() > deadline:
            sys.exit("moto did not start")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--only", choices=["local", "s3"])
    args = ap.parse_args()
    if args.only != "s3":
        measure(args, "local disk", "")
    if args.only != "local":
        moto, endpoint = start_moto()
        try:
            storage = (f'[storage]\nroot = "s3://kiln-bench/root"\nendpoint = "{endpoint}"\nallow_http = true\n'
                       'region = "us-east-1"\naccess_key_id = "bench"\nsecret_access_key = "bench-secret"\n')  # fmt: skip
            measure(args, "S3 (moto)", storage)
            moto_floor(args, endpoint)
        finally:
            moto.terminate()
            moto.wait(timeout=30)


def moto_floor(args, endpoint: str) -> None:
    """The same transfers straight to moto with boto3 (its multipart upload of 8 MiB parts, a
    download, ranged GETs): what the S3 service itself takes, beside Kiln's figures."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config as BotoConfig

    # moto's checksums of multipart objects are not what boto3 expects: no checksums.
    quiet = BotoConfig(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench-secret",
                      region_name="us-east-1", config=quiet)  # fmt: skip
    size = args.size_mb * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-moto-"))
    source = work / "blob.bin"
    block = os.urandom(1024 * 1024)
    with open(source, "wb") as f:
        for i in range(args.size_mb):
            f.write(block[i % 997:] + block[: i % 997])
    try:
        mb = size / 1e6
        config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4)
        t = time.perf_counter()
        s3.upload_file(str(source), "kiln-bench", "floor/blob.bin", Config=config)
        upload = time.perf_counter() - t
        t = time.perf_counter()
        body = s3.get_object(Bucket="kiln-bench", Key="floor/blob.bin")["Body"]
        while body.read(1 << 20):
            pass
        download = time.perf_counter() - t
        rng = random.Random(7)
        lat = []
        for _ in range(100):
            start = rng.randrange(0, size - (1 << 20))
            t = time.perf_counter()
            s3.get_object(Bucket="kiln-bench", Key="floor/blob.bin", Range=f"bytes={start}-{start + (1 << 20) - 1}")["Body"].read()
            lat.append(time.perf_counter() - t)
        lat.sort()
        print(f"moto itself with boto3 (the floor), {args.size_mb} MiB file")
        print(f"  upload, multipart 8 MiB x 4  {mb / upload:8.1f} MB/s  ({upload:.1f} s)")
        print(f"  download, streamed           {mb / download:8.1f} MB/s  ({download:.1f} s)")
        print(f"  ranged reads of 1 MiB        p50 {lat[50] * 1000:.1f} ms  p95 {lat[95] * 1000:.1f} ms")
    finally:
        source.unlink(missing_ok=True)


def start_kiln(prefix: str, storage: str) -> tuple[Path, subprocess.Popen, str, str]:
    """A Kiln of its own (no HTTPS, no Lakebase proxy port, `storage` added to its config), once
    /health answers: its work dir, process, base URL and admin token."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o711)
    port = free_port()
    (work / "kiln.toml").write_text("[server]\nhttps_port = 0\n[lakebase]\nproxy_port = 0\n" + storage)
    with open(work / "kiln.log", "wb") as log:
        proc = subprocess.Popen(
            [str(default_bin()), "serve", "--port", str(port), "--data-dir", str(work / "data"),
             "--config", str(work / "kiln.toml")], stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc, work / "kiln.log")
    return work, proc, base, (work / "data" / "admin.token").read_text().strip()


def measure(args, label: str, storage: str) -> None:
    work, proc, base, token = start_kiln("kiln-bench-vol-", storage)
    source = work / "blob.bin"
    try:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config
        from databricks.sdk.service.catalog import VolumeType

        w = WorkspaceClient(config=Config(host=base, token=token))
        w.volumes.create(catalog_name="main", schema_name="default", name="bench", volume_type=VolumeType.MANAGED)
        size = args.size_mb * 1024 * 1024
        block = os.urandom(1024 * 1024)
        digest = hashlib.sha256()
        with open(source, "wb") as f:
            for i in range(args.size_mb):
                chunk = block[i % 997:] + block[: i % 997]
                f.write(chunk)
                digest.update(chunk)
        rss_before = status_kb(proc.pid, "VmRSS") / 1024
        mb = size / 1e6
        path = "/Volumes/main/default/bench/blob.bin"

        t = time.perf_counter()
        with open(source, "rb") as f:
            w.files.upload(path, f, overwrite=True)
        multipart = time.perf_counter() - t

        def chunks():
            with open(source, "rb") as f:
                while data := f.read(1 << 20):
                    yield data

        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token}"
        t = time.perf_counter()
        r = s.put(f"{base}/api/2.0/fs/files{path}.single?overwrite=true", data=chunks())
        r.raise_for_status()
        single = time.perf_counter() - t

        t = time.perf_counter()
        check = hashlib.sha256()
        with s.get(f"{base}/api/2.0/fs/files{path}", stream=True) as r:
            r.raise_for_status()
            for data in r.iter_content(1 << 20):
                check.update(data)
        download = time.perf_counter() - t
        assert check.digest() == digest.digest(), "the downloaded bytes differ"

        rng = random.Random(7)
        lat = []
        for _ in range(100):
            start = rng.randrange(0, size - (1 << 20))
            t = time.perf_counter()
            r = s.get(f"{base}/api/2.0/fs/files{path}", headers={"Range": f"bytes={start}-{start + (1 << 20) - 1}"})
            lat.append(time.perf_counter() - t)
            assert r.status_code == 206 and len(r.content) == 1 << 20
        lat.sort()
        peak = status_kb(proc.pid, "VmHWM") / 1024
        print(f"Files API on a volume on {label}, {args.size_mb} MiB file (Kiln {default_bin().parent.name} build)")
        print(f"  upload, SDK multipart        {mb / multipart:8.1f} MB/s  ({multipart:.1f} s)")
        print(f"  upload, one streamed PUT     {mb / single:8.1f} MB/s  ({single:.1f} s)")
        print(f"  download, streamed           {mb / download:8.1f} MB/s  ({download:.1f} s)")
        print(f"  ranged reads of 1 MiB        p50 {lat[50] * 1000:.1f} ms  p95 {lat[95] * 1000:.1f} ms")
        print(f"  Kiln RSS before {rss_before:.1f} MB, peak {peak:.1f} MB: growth {peak - rss_before:.1f} MB (target < 64)")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        source.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
