"""Fixtures for the Kiln conformance suite.

The suite drives a real `kiln serve` binary (env KILN_BIN, default <repo>/target/debug/kiln)
with the official clients (databricks-sdk, databricks-cli, pyspark-client) and raw HTTP.

    python3 -m venv .venv && .venv/bin/pip install -r tests/conformance/requirements.txt
    .venv/bin/python -m pytest tests/conformance -q

Useful env: KILN_BIN, KILN_CACHE_DIR (engine runtime cache, passed through to kiln),
KILN_SKIP_SETUP=1 (do not run `kiln setup` first), KILN_TEST_CLUSTER_TIMEOUT (s, default 120).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid

import pytest

# ---- environment hygiene: must happen before any databricks/pyspark client is built ---------
for _k in list(os.environ):
    if _k.startswith("DATABRICKS_") or _k in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):
        del os.environ[_k]
# a config file that does not exist, so a developer's ~/.databrickscfg can never leak in
os.environ["DATABRICKS_CONFIG_FILE"] = os.path.join(tempfile.mkdtemp(prefix="kiln-conf-"), "absent.databrickscfg")
for _k in ("NO_PROXY", "no_proxy"):
    os.environ[_k] = ",".join(filter(None, [os.environ.get(_k), "127.0.0.1", "localhost"]))

from kiln_helpers import (  # noqa: E402
    KilnServer,
    free_port,
    kiln_bin,
    run_setup,
)

ADMIN_PASSWORD = "kiln-admin-" + uuid.uuid4().hex[:12]


_LAKEBASE_DIRS: list[str] = []


def reachable_dir() -> str:
    """A directory unprivileged users can reach (pytest's tmp is 0700): when the
    tests run as root, user code and postgres run as such users."""
    path = f"/tmp/kiln-shared-test-{uuid.uuid4().hex[:10]}"
    os.makedirs(path, mode=0o711)
    os.chmod(path, 0o711)
    _LAKEBASE_DIRS.append(path)
    return path


def lakebase_dir() -> str:
    return reachable_dir() + "/lakebase"


@atexit.register
def _remove_lakebase_dirs() -> None:
    for path in _LAKEBASE_DIRS:
        shutil.rmtree(path, ignore_errors=True)


def base_config(**overrides) -> dict:
    cfg = {
        "admin_password": ADMIN_PASSWORD,
        "shared_dir": reachable_dir() + "/shared",
        "clusters": {"autotermination_minute_seconds": 1},
        "server": {"https_port": free_port()},
        # Lakebase: a dir the unprivileged postgres user can reach (pytest's tmp is 0700),
        # its own proxy port, and short limits so suspend/expiry tests run in seconds.
        "lakebase": {
            "dir": lakebase_dir(),
            "proxy_port": free_port(),
            "min_suspend_seconds": 1,
            "min_credential_seconds": 1,
        },
    }
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def pytest_collection_modifyitems(config, items):
    # per-test safety net against hangs (pytest-timeout), if installed
    if config.pluginmanager.hasplugin("timeout"):
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(1200))  # generous: first-run engine setup


@pytest.fixture(scope="session")
def kiln_binary(tmp_path_factory):
    binary = kiln_bin()
    if not binary.is_file():
        pytest.fail(f"kiln binary not found at {binary}: build it (cargo build) or set KILN_BIN", pytrace=False)
    if os.environ.get("KILN_SKIP_SETUP") != "1":
        run_setup(binary, tmp_path_factory.mktemp("setup") / "setup.log")
    return binary


@pytest.fixture(scope="session")
def kiln_factory(kiln_binary, tmp_path_factory):
    """Start extra servers: kiln_factory(**config_overrides) -> started KilnServer."""
    servers: list[KilnServer] = []

    def make(**overrides) -> KilnServer:
        server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln"), base_config(**overrides))
        servers.append(server)
        return server.start()

    yield make
    errors = []
    for server in reversed(servers):
        try:
            server.stop()
        except AssertionError as e:
            errors.append(f"{server.host}: {e}")
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="session")
def kiln(kiln_binary, tmp_path_factory):
    """The shared server: .host, .token, .data_dir, .proc, .restart(), .client(), .http()."""
    server = KilnServer(kiln_binary, tmp_path_factory.mktemp("kiln-main"), base_config())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def w(kiln):
    """WorkspaceClient authenticated as admin with the admin PAT."""
    return kiln.client()


@pytest.fixture(scope="session")
def node_type_id(w):
    types = w.clusters.list_node_types().node_types
    assert types, "list-node-types returned no node types"
    return types[0].node_type_id
