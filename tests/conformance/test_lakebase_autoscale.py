"""Lakebase autoscaling on real PostgreSQL: an endpoint's compute units follow its load between
`autoscaling_limit_min_cu` and `_max_cu` (`status.current_cu`), its processes run in a cgroup whose
CPU and memory limits follow the CU (where Kiln can use cgroups), and `work_mem` /
`effective_cache_size` are reloaded without a restart."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from databricks.sdk.common.types.fieldmask import FieldMask
from databricks.sdk.service.postgres import Endpoint, EndpointSpec, EndpointType

from test_lakebase import connect, create_project, pid, primary

CGROUP_V1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")


def cgroups_usable() -> bool:
    return os.geteuid() == 0 and CGROUP_V1.is_file() and os.access(CGROUP_V1.parent, os.W_OK)


def wait_cu(w, name, check, timeout=60):
    deadline, cu = time.time() + timeout, None
    while time.time() < deadline:
        # a Kiln field the SDK's dataclass does not keep: read the JSON
        cu = w.api_client.do("GET", f"/api/2.0/postgres/{name}")["status"].get("current_cu")
        if cu is not None and check(cu):
            return cu
        time.sleep(0.5)
    raise AssertionError(f"current_cu never satisfied the check (last {cu})")


def test_cu_follows_load_and_limits_follow_the_cu(kiln, w):
    project = pid("scale")
    create_project(w, project)
    name = f"projects/{project}/branches/production/endpoints/primary"
    w.postgres.update_endpoint(name, Endpoint(spec=EndpointSpec(endpoint_type=EndpointType.ENDPOINT_TYPE_READ_WRITE,
                               autoscaling_limit_min_cu=0.5, autoscaling_limit_max_cu=2)),
                               update_mask=FieldMask(field_mask=["spec.autoscaling_limit_min_cu",
                                                                 "spec.autoscaling_limit_max_cu"])).wait()  # fmt: skip
    ep = primary(w, project)
    with connect(kiln, w, ep) as conn:
        assert wait_cu(w, name, lambda cu: cu == 0.5) == 0.5
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert wait_settings(conn, "4MB", "768MB")
        if cgroups_usable():
            groups = Path(f"/proc/{backend}/cgroup").read_text()
            assert f"kiln-lakebase-" in groups and ep.uid in groups, groups
            quota = next(Path("/sys/fs/cgroup/cpu").glob(f"kiln-lakebase-*/{ep.uid}/cpu.cfs_quota_us"))
            # 0.5 CU x 1 core per CU, 100 ms period (a start-up burst may scale it up for a few seconds)
            assert wait_until(lambda: int(quota.read_text()) == 50_000)
        # load: three sessions spinning on the CPU
        stop = threading.Event()

        def spin():
            with connect(kiln, w, ep) as c:
                while not stop.is_set():
                    c.execute("SELECT count(*) FROM generate_series(1, 3000000)")

        workers = [threading.Thread(target=spin) for _ in range(3)]
        for t in workers:
            t.start()
        try:
            assert wait_cu(w, name, lambda cu: cu >= 1.0, timeout=120) >= 1.0
            assert wait_cu(w, name, lambda cu: cu == 2.0, timeout=120) == 2.0
            # checked while the load lasts (once it stops, the CU comes down again)
            assert wait_settings(conn, "8MB", "3072MB")  # reloaded in the running server (same session)
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == backend
            if cgroups_usable():
                assert wait_until(lambda: int(quota.read_text()) == 200_000)
                limit = quota.parent.parent.parent.parent / "memory" / quota.parent.parent.name / ep.uid
                # 2 CU x 2 GiB where reclaim starts; the hard limit is the maximum CU's (2 here)
                assert int((limit / "memory.soft_limit_in_bytes").read_text()) == 2 * 2 * 1024**3
                assert int((limit / "memory.limit_in_bytes").read_text()) == 2 * 2 * 1024**3
        finally:
            stop.set()
            for t in workers:
                t.join()
        # quiet: back to the minimum
        assert wait_cu(w, name, lambda cu: cu == 0.5, timeout=90) == 0.5
    w.postgres.delete_project(f"projects/{project}").wait()


def wait_settings(conn, work_mem, cache, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = (conn.execute("SHOW work_mem").fetchone()[0], conn.execute("SHOW effective_cache_size").fetchone()[0])
        if got == (work_mem, cache.replace("3072MB", "3GB")):
            return True
        time.sleep(0.3)
    raise AssertionError(f"settings are {got}, not {(work_mem, cache)}")


def wait_until(check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.3)
    raise AssertionError("the condition never held")

