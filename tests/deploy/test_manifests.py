"""Kiln's Kubernetes manifests and images (deploy/): every manifest is valid against the
Kubernetes API schema (strict: no unknown field), the StatefulSet runs a command line `kiln serve`
accepts with a configuration Kiln loads, and services, probes and ports agree with each other.
No cluster is needed; the schema checks are kubernetes-validate's bundled OpenAPI schemas."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
DOCKER = REPO / "deploy" / "docker"
# The oldest Kubernetes release still supported upstream when this was written, and the newest bundled.
VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]


def documents() -> list[dict]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def one(kind: str, name: str) -> dict:
    [found] = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def kiln_bin() -> Path:
    return Path(os.environ.get("KILN_BIN", REPO / "target" / "debug" / "kiln"))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schema(version):
    docs = documents()
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
                                          "StatefulSet", "Service"}  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "kiln", doc["metadata"]


def test_the_validation_refuses_a_broken_manifest():
    broken = copy.deepcopy(one("StatefulSet", "kiln"))
    broken["spec"]["template"]["spec"]["containers"][0]["containerPorts"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    broken = copy.deepcopy(one("Service", "kiln"))
    broken["spec"]["ports"][0]["port"] = "https"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_statefulset_runs_a_command_line_and_configuration_kiln_accepts():
    sts = one("StatefulSet", "kiln")
    [container] = sts["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "serve"
    helptext = subprocess.run([str(kiln_bin()), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in (a for a in args if a.startswith("--")):
        assert re.search(rf"\s{re.escape(flag)}\b", helptext), f"`kiln serve` has no {flag}"
    # the mounted kiln.toml is one Kiln loads (unknown keys are refused), with the ports named here
    config = one("ConfigMap", "kiln-config")["data"]["kiln.toml"]
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert args[args.index("--config") + 1] == f"{mount['config']}/kiln.toml"
    assert args[args.index("--data-dir") + 1] == mount["data"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kiln.toml").write_text(config)
        loaded = subprocess.run([str(kiln_bin()), "trust", "--config", f"{tmp}/kiln.toml", "--data-dir", f"{tmp}/data"],
                                capture_output=True, text=True)  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr
        bad = config + "\n[no_such_section]\nnope = 1\n"
        (Path(tmp) / "bad.toml").write_text(bad)
        refused = subprocess.run([str(kiln_bin()), "trust", "--config", f"{tmp}/bad.toml", "--data-dir", f"{tmp}/data"],
                                 capture_output=True, text=True)  # fmt: skip
        assert refused.returncode != 0
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == int(args[args.index("--port") + 1])
    assert ports["https"] == int(args[args.index("--https-port") + 1])
    assert f"proxy_port = {ports['postgres']}" in config
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_services_select_the_pod_and_name_its_ports():
    sts = one("StatefulSet", "kiln")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    named = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    services = [d for d in documents() if d["kind"] == "Service"]
    assert sts["spec"]["serviceName"] in {s["metadata"]["name"] for s in services}
    for service in services:
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, port
    exposed = {p["name"] for p in one("Service", "kiln")["spec"]["ports"]}
    assert exposed == {"https", "postgres"}


def test_kiln_may_manage_pods_in_its_namespace_only():
    role = one("Role", "kiln-pods")
    [rule] = role["rules"]
    assert rule["resources"] == ["pods"] and set(rule["verbs"]) >= {"get", "create", "deletecollection", "list"}
    binding = one("RoleBinding", "kiln-pods")
    assert binding["roleRef"]["name"] == "kiln-pods"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kiln", "namespace": "kiln"}]
    sts = one("StatefulSet", "kiln")
    assert sts["spec"]["template"]["spec"]["serviceAccountName"] == "kiln"
    assert not [d for d in documents() if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_worker_pods_and_kiln_share_the_tree_through_a_read_write_many_claim():
    config = one("ConfigMap", "kiln-config")["data"]["kiln.toml"]
    shared_dir = re.search(r'^shared_dir = "([^"]+)"', config, re.M).group(1)
    claim = re.search(r'^shared_volume_claim = "([^"]+)"', config, re.M).group(1)
    pvc = one("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = one("StatefulSet", "kiln")["spec"]["template"]["spec"]
    volume = next(v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim)
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts[volume] == shared_dir
    # Postgres data stays on the pod's own volume
    lakebase = re.search(r'^dir = "([^"]+)"', config, re.M).group(1)
    assert lakebase.startswith(mounts["data"] + "/")


def test_the_images_copy_what_the_repository_has():
    for dockerfile in DOCKER.glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert text.count("FROM ") >= 1
        for line in text.splitlines():
            parts = line.split()
            if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
                for source in parts[1:-1]:
                    assert source == "." or (REPO / source).exists(), f"{dockerfile.name}: {source} is not in the repository"
    engine = (DOCKER / "engine.Dockerfile").read_text()
    # the engine image installs the very runtime `kiln setup` pins
    assert "crates/kiln-compute/python/requirements-runtime.txt" in engine
    assert "pysail==" in (REPO / "crates/kiln-compute/python/requirements-runtime.txt").read_text()
    image = one("StatefulSet", "kiln")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"-t {image}" in (DOCKER / "kiln.Dockerfile").read_text()
