"""Libraries API 2.0: packages really installed with pip into one cluster's
environment, importable from its contexts, with pip's reason on failure."""

from __future__ import annotations

import base64
import hashlib
import io
import time
import zipfile

import pytest
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service.compute import Language, Library, LibraryInstallStatus, PythonPyPiLibrary, State

from kiln_helpers import unique

SPARK_VERSION = "16.4.x-scala2.12"
DONE = (LibraryInstallStatus.INSTALLED, LibraryInstallStatus.FAILED)


@pytest.fixture(scope="module")
def libs(kiln, w):
    a = w.clusters.create_and_wait(cluster_name=unique("libs-a"), spark_version=SPARK_VERSION, num_workers=0)
    b = w.clusters.create_and_wait(cluster_name=unique("libs-b"), spark_version=SPARK_VERSION, num_workers=0)
    return {"a": a.cluster_id, "b": b.cluster_id}


def statuses(w, cluster_id):
    return {key_of(s.library): s for s in w.libraries.cluster_status(cluster_id)}


def key_of(library: Library) -> str:
    return library.pypi.package if library.pypi else (library.whl or library.requirements)


def wait_done(w, cluster_id, keys, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        current = statuses(w, cluster_id)
        if all(k in current and current[k].status in DONE for k in keys):
            return current
        time.sleep(0.3)
    raise AssertionError(f"libraries not done: {statuses(w, cluster_id)}")


def python(w, cluster_id, code):
    ctx = w.command_execution.create_and_wait(cluster_id=cluster_id, language=Language.PYTHON)
    try:
        r = w.command_execution.execute_and_wait(cluster_id=cluster_id, context_id=ctx.id, language=Language.PYTHON, command=code)
        return r.status.value, r.results.data if r.results.data is not None else r.results.summary
    finally:
        w.command_execution.destroy(cluster_id=cluster_id, context_id=ctx.id)


def test_pypi_package_installs_and_imports_on_its_cluster_only(w, libs):
    w.libraries.install(libs["a"], [Library(pypi=PythonPyPiLibrary(package="simplejson==3.19.3"))])
    first = statuses(w, libs["a"])["simplejson==3.19.3"].status
    assert first in (LibraryInstallStatus.PENDING, LibraryInstallStatus.INSTALLING, LibraryInstallStatus.INSTALLED)
    done = wait_done(w, libs["a"], ["simplejson==3.19.3"])
    assert done["simplejson==3.19.3"].status == LibraryInstallStatus.INSTALLED, done
    assert python(w, libs["a"], "import simplejson\nsimplejson.__version__") == ("Finished", "'3.19.3'")
    status, summary = python(w, libs["b"], "import simplejson")
    assert status == "Error" and "ModuleNotFoundError" in summary
    assert python(w, libs["a"], "import pandas, pyspark\n'runtime still there'") == ("Finished", "'runtime still there'")


def test_missing_package_fails_with_pips_reason(w, libs):
    name = "kiln-no-such-package-" + unique("x")
    w.libraries.install(libs["b"], [Library(pypi=PythonPyPiLibrary(package=name))])
    done = wait_done(w, libs["b"], [name])
    assert done[name].status == LibraryInstallStatus.FAILED
    assert any("No matching distribution" in m for m in done[name].messages), done[name].messages


def build_wheel(name: str, version: str, value: int) -> bytes:
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n".encode(),
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: kiln-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def test_wheel_from_dbfs_then_uninstall_on_restart(kiln, w, libs):
    wheel_dir = kiln.shared_dir / "dbfs" / "libs"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    (wheel_dir / "kiln_demo_pkg-0.1-py3-none-any.whl").write_bytes(build_wheel("kiln_demo_pkg", "0.1", 42))
    path = "dbfs:/libs/kiln_demo_pkg-0.1-py3-none-any.whl"
    w.libraries.install(libs["a"], [Library(whl=path)])
    assert wait_done(w, libs["a"], [path])[path].status == LibraryInstallStatus.INSTALLED
    assert python(w, libs["a"], "import kiln_demo_pkg\nkiln_demo_pkg.VALUE") == ("Finished", "42")

    w.libraries.uninstall(libs["a"], [Library(whl=path)])
    assert statuses(w, libs["a"])[path].status == LibraryInstallStatus.UNINSTALL_ON_RESTART
    w.clusters.restart_and_wait(libs["a"])
    deadline = time.time() + 120
    while path in statuses(w, libs["a"]) and time.time() < deadline:
        time.sleep(0.3)
    assert path not in statuses(w, libs["a"])
    wait_done(w, libs["a"], ["simplejson==3.19.3"])  # the remaining library is reinstalled
    status, summary = python(w, libs["a"], "import kiln_demo_pkg")
    assert status == "Error" and "ModuleNotFoundError" in summary
    assert python(w, libs["a"], "import simplejson\n'kept'") == ("Finished", "'kept'")


def test_libraries_wait_for_a_terminated_cluster(w):
    c = w.clusters.create_and_wait(cluster_name=unique("libs-later"), spark_version=SPARK_VERSION, num_workers=0)
    w.clusters.delete_and_wait(c.cluster_id)
    w.libraries.install(c.cluster_id, [Library(pypi=PythonPyPiLibrary(package="simplejson==3.19.3"))])
    # the install is recorded at once and stays PENDING while the cluster is terminated
    for _ in range(10):
        assert statuses(w, c.cluster_id)["simplejson==3.19.3"].status == LibraryInstallStatus.PENDING
        assert w.clusters.get(c.cluster_id).state == State.TERMINATED
    w.clusters.start_and_wait(c.cluster_id)
    assert wait_done(w, c.cluster_id, ["simplejson==3.19.3"])["simplejson==3.19.3"].status == LibraryInstallStatus.INSTALLED
    all_clusters = {s.cluster_id for s in w.libraries.all_cluster_statuses()}
    assert c.cluster_id in all_clusters
    w.clusters.permanent_delete(c.cluster_id)


def test_jvm_libraries_are_refused_and_change_nothing(w, libs):
    before = statuses(w, libs["b"])
    with pytest.raises(InvalidParameterValue):
        w.libraries.install(libs["b"], [Library(jar="dbfs:/x.jar")])
    assert statuses(w, libs["b"]).keys() == before.keys()


def test_rest_12_library_list(kiln, w, libs):
    wait_done(w, libs["a"], ["simplejson==3.19.3"])
    response = kiln.http().get(kiln.url("/api/1.2/libraries/list"), data={"clusterId": libs["a"]})
    assert response.status_code == 200, response.text
    listed = {item["name"]: item["status"] for item in response.json()}
    assert listed.get("simplejson==3.19.3") == "LibraryLoaded", listed
