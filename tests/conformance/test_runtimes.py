"""One Python per Databricks runtime: a cluster's engine, kernels and libraries run the
Python minor its spark_version runs on Databricks (15.x: 3.11, 16.x and newer: 3.12), built
from an interpreter found on this host; a missing minor is said at cluster start, or refused
when the cluster asks for strictness."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from databricks.sdk.service.compute import Language, State

from kiln_helpers import unique, wait_cluster_state

CASES = [("15.4.x-scala2.12", "3.11"), ("16.4.x-scala2.12", "3.12")]


def has_python(minor: str) -> bool:
    """Whether Kiln will find python<minor> here: on PATH (a pyenv shim may refuse) or in pyenv."""
    import glob
    import os

    found = [shutil.which(f"python{minor}")] + glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python{minor}"))
    for python in filter(None, found):
        if subprocess.run([python, "-c", "import venv, ensurepip"], capture_output=True).returncode == 0:
            return True
    return False


def python_of(w, cluster_id: str) -> str:
    ctx = w.command_execution.create_and_wait(cluster_id=cluster_id, language=Language.PYTHON)
    res = w.command_execution.execute_and_wait(
        cluster_id=cluster_id, context_id=ctx.id, language=Language.PYTHON,
        command="import sys\nfrom pyspark.sql.functions import udf\n"
                "n = spark.range(3).select(udf(lambda x: x + 1, 'long')('id')).collect()[-1][0]\n"
                "print('%d.%d %d' % (sys.version_info[0], sys.version_info[1], n))")
    assert res.status.value == "Finished", res.results.as_dict()
    return res.results.data


@pytest.mark.parametrize("spark_version,minor", CASES)
def test_a_cluster_runs_the_python_of_its_runtime(w, kiln, spark_version, minor):
    if not has_python(minor):
        pytest.skip(f"python{minor} is not installed on this host")
    c = w.clusters.create_and_wait(cluster_name=unique("py"), spark_version=spark_version, num_workers=0)
    kiln.track(c.cluster_id)
    try:
        assert c.state == State.RUNNING
        # the kernel and the engine (where the UDF runs) are on the same minor
        assert python_of(w, c.cluster_id) == f"{minor} 3"
        running = [e for e in w.clusters.events(c.cluster_id) if e.type.value == "RUNNING"]
        assert running, "no RUNNING event"
    finally:
        w.clusters.permanent_delete(c.cluster_id)


def test_a_missing_python_is_said_or_refused(w, kiln):
    env = {"PYSPARK_PYTHON": "python3.99"}
    c = w.clusters.create_and_wait(cluster_name=unique("nopy"), spark_version="16.4.x-scala2.12",
                                   num_workers=0, spark_env_vars=env)
    kiln.track(c.cluster_id)
    try:
        running = [e for e in w.clusters.events(c.cluster_id) if e.type.value == "RUNNING"]
        said = running[0].as_dict()["details"]["reason"]["parameters"]["message"]
        assert "Python 3.99" in said and "python3.99" in said, said
    finally:
        w.clusters.permanent_delete(c.cluster_id)
    strict = w.clusters.create(cluster_name=unique("strict"), spark_version="16.4.x-scala2.12", num_workers=0,
                               spark_env_vars=env, spark_conf={"spark.kiln.python.strict": "true"}).cluster_id
    kiln.track(strict)
    try:
        info = wait_cluster_state(w, strict, State.TERMINATED, timeout=180)
        reason = info.termination_reason.as_dict() if info.termination_reason else {}
        assert "spark.kiln.python.strict" in str(reason) and "Python 3.99" in str(reason), reason
    finally:
        w.clusters.permanent_delete(strict)
