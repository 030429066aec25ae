"""A job's `dbt_task`, run in an execution context of the task's cluster as the run's identity.

The project directory is exported from the workspace (through Kiln's REST API with the
context's credential, so the run's own permissions apply) into a scratch directory.

With a `warehouse_id`, a `profiles.yml` is generated for the project's profile: that SQL warehouse
through the Databricks SQL protocol on Kiln's HTTPS port, with the task's `catalog` and `schema`.
Without one, the project's own profiles.yml is read (in `profiles_directory`, else the project's
root); as on Databricks the environment carries DBT_HOST, DBT_ORG_ID, DBT_CLUSTER_ID and
DBT_ACCESS_TOKEN for it, and Kiln adds DBT_PORT (its HTTPS port) and SSL_CERT_FILE (the trust
roots with Kiln's CA).

The `dbt` commands run one after another with the `dbt` that the task's libraries installed in
this cluster's environment; their output is the task's log, and the first that fails fails the
task. The scratch directory (with the credential in the profile) is removed afterwards.
"""

import base64
import json
import os
import posixpath
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import deque

from kiln_kernel import notebook_run

EXTENSIONS = {"PYTHON": ".py", "SQL": ".sql", "SCALA": ".scala", "R": ".r"}
TAIL_LINES = 40


class DbtTaskError(Exception):
    """The dbt task failed; the message's last line says why."""


def workspace_path(path):
    return path[len("/Workspace"):] if path == "/Workspace" or path.startswith("/Workspace/") else path


def export_project(api, directory, dest):
    """Copies the workspace directory `directory` (and what is below it) into `dest`."""
    root = workspace_path(directory).rstrip("/") or "/"
    try:
        status = notebook_run._call(api, "GET", "/api/2.0/workspace/get-status", params={"path": root})
    except notebook_run.NotebookRunError as error:
        raise DbtTaskError(f"The dbt project directory {directory} cannot be read: {error}") from None
    if status.get("object_type") not in ("DIRECTORY", "REPO"):
        raise DbtTaskError(f"The dbt project directory {directory} is not a directory")
    pending = [root]
    while pending:
        folder = pending.pop()
        listing = notebook_run._call(api, "GET", "/api/2.0/workspace/list", params={"path": folder})
        for obj in listing.get("objects", []):
            path = obj.get("path", "")
            relative = posixpath.relpath(path, root)
            if relative.startswith("..") or posixpath.isabs(relative):
                continue
            local = os.path.join(dest, *relative.split("/"))
            kind = obj.get("object_type")
            if kind in ("DIRECTORY", "REPO"):
                os.makedirs(local, exist_ok=True)
                pending.append(path)
                continue
            if kind not in ("FILE", "NOTEBOOK"):
                continue
            exported = notebook_run._call(api, "GET", "/api/2.0/workspace/export",
                                          params={"path": path, "format": "SOURCE"})
            if kind == "NOTEBOOK":
                local += EXTENSIONS.get(obj.get("language", ""), "")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "wb") as f:
                f.write(base64.b64decode(exported.get("content", "")))


def project_profile(project):
    """The `profile:` that dbt_project.yml names (dbt's YAML reader comes with dbt)."""
    path = os.path.join(project, "dbt_project.yml")
    if not os.path.exists(path):
        raise DbtTaskError("The dbt project directory has no dbt_project.yml")
    import yaml  # installed with dbt-core

    with open(path, encoding="utf-8") as f:
        settings = yaml.safe_load(f) or {}
    name = settings.get("profile") or settings.get("name")
    if not isinstance(name, str) or not name:
        raise DbtTaskError("dbt_project.yml names no profile")
    return name


def profile(spec, credential, scratch):
    """The profiles.yml Kiln writes for a task without a profiles_directory (JSON is YAML)."""
    connection = spec["connection"]
    parameters = {"_port": connection["port"], "enable_telemetry": False}
    if connection.get("ca_bundle"):
        parameters["_tls_trusted_ca_file"] = os.path.join(scratch, "ca-bundle.pem")
    target = {
        "type": "databricks",
        "host": connection["hostname"],
        "http_path": f"/sql/1.0/warehouses/{spec['warehouse_id']}",
        "token": credential,
        "catalog": spec.get("catalog") or "main",
        "schema": spec.get("schema") or "default",
        "threads": 4,
        "connect_retries": 2,
        "connection_parameters": parameters,
    }
    return {"target": "kiln", "outputs": {"kiln": target}}


def dbt_executable():
    here = os.path.dirname(sys.executable)
    for candidate in (os.path.join(here, "dbt"), shutil.which("dbt") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DbtTaskError("dbt is not installed on the task's compute: add dbt-databricks to the task's libraries "
                       "(or its environment's dependencies)")


def run_command(argv, project, env):
    """Runs one dbt command, its output printed as it comes; returns (exit code, last lines)."""
    tail = deque(maxlen=TAIL_LINES)
    process = subprocess.Popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", start_new_session=True)
    try:
        for line in process.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            print(line)
        return process.wait(), list(tail)
    finally:
        # a cancelled task (an interrupt while reading) takes its dbt with it
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run(api, redacted, spec):
    """Runs the task's dbt `commands` (as the task settings or run-now's `dbt_commands` give them)."""
    commands = spec.get("commands") or []
    if not commands:
        raise DbtTaskError("The dbt task has no commands")
    argvs = []
    for command in commands:
        words = shlex.split(command) if isinstance(command, str) else []
        if not words or words[0] != "dbt":
            raise DbtTaskError(f"A dbt task's commands start with dbt: {command!r}")
        argvs.append((command, words[1:]))
    credential = api.get("credential", "")
    if credential:
        redacted.add(credential)
    scratch = tempfile.mkdtemp(prefix="kiln-dbt-")
    try:
        project = os.path.join(scratch, "project")
        os.makedirs(project)
        export_project(api, spec["project_directory"], project)
        executable = dbt_executable()
        connection = spec["connection"]
        env = dict(os.environ)
        env.update({
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
            "DBT_USE_COLORS": "false",
            "DBT_HOST": connection["hostname"],
            "DBT_PORT": str(connection["port"]),
            "DBT_ORG_ID": str(connection.get("org_id") or "0"),
            "DBT_CLUSTER_ID": os.environ.get("KILN_CLUSTER_ID", ""),
            "DBT_ACCESS_TOKEN": credential,
        })
        if connection.get("ca_bundle"):
            bundle = os.path.join(scratch, "ca-bundle.pem")
            with open(bundle, "w", encoding="utf-8") as f:
                f.write(connection["ca_bundle"])
            env["SSL_CERT_FILE"] = bundle
        if spec.get("warehouse_id"):
            profiles = os.path.join(scratch, "profiles")
            os.makedirs(profiles)
            with open(os.path.join(profiles, "profiles.yml"), "w", encoding="utf-8") as f:
                json.dump({project_profile(project): profile(spec, credential, scratch)}, f)
        else:
            profiles = os.path.normpath(os.path.join(project, spec.get("profiles_directory") or "."))
            if profiles != project and not profiles.startswith(project + os.sep):
                raise DbtTaskError("profiles_directory must lie inside the project directory")
        env["DBT_PROFILES_DIR"] = profiles
        for command, args in argvs:
            print(f"$ {command}")
            code, tail = run_command([executable, *args], project, env)
            if code != 0:
                raise DbtTaskError("\n".join(tail + [f"dbt command failed: {command} (exit code {code})"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
