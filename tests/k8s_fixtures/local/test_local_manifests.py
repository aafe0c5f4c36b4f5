"""Manifest loading and checking: one-line errors naming kind, name and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_fixtures.cluster import ManifestError
from k8s_fixtures.manifests import (
    config_data,
    cpu_millis,
    load,
    memory_bytes,
    parse_pod_spec,
    template_meta,
)


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "server", "namespace": "x"}, "spec": spec}


def test_multi_document_yaml_and_lists(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\n"
                 "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n"
                 "  metadata: {name: c, namespace: a}\n  data: {k: v}\n")
    objs = load(f)
    assert [o["kind"] for o in objs] == ["Namespace", "ConfigMap"]


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("kind: Pod\nmetadata: {name: [x\n")
    with pytest.raises(ManifestError, match=r"bad\.yaml: line \d+: not valid YAML"):
        load(f)


@pytest.mark.parametrize(("obj", "message"), [
    ({"kind": "Pod", "metadata": {"name": "p"}}, "Pod default/p: apiVersion: required"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"}},
     "metadata.name: 'Bad_Name' is not a valid name"),
    ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": 1}}},
     "Pod default/p: metadata.labels: must map strings to strings"),
])
def test_metadata_errors(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        load(obj)


@pytest.mark.parametrize(("spec", "message"), [
    ({"containers": [{"name": "c", "command": ["a", 1]}]},
     r"^Pod x/server: spec\.containers\[0\]\.command: must be a list of strings"),
    ({"containers": [{"name": "c", "command": ["a"], "resources": {"limits": {"cpu": "lots"}}}]},
     r"spec\.containers\[0\]\.resources\.limits\.cpu: 'lots' is not a CPU quantity"),
    ({"containers": [{"name": "c", "command": ["a"], "ports": [{"containerPort": 70000}]}]},
     r"spec\.containers\[0\]\.ports\[0\]\.containerPort: 70000 is not a port number"),
    ({"containers": [{"name": "c", "command": ["a"], "volumeMounts": [
        {"name": "v", "mountPath": "/etc/x"}]}]},
     r"spec\.containers\[0\]\.volumeMounts\[0\]\.name: no volume named 'v'"),
    ({"containers": [{"name": "c", "command": ["a"], "livenessProbe": {}}]},
     r"spec\.containers\[0\]\.livenessProbe: not supported"),
    ({"containers": [{"name": "c", "command": ["a"]}], "initContainers": {}},
     r"spec\.initContainers: must be a list"),
    ({"containers": [{"name": "c", "command": ["a"]}], "initContainers": [
        {"name": "i", "command": ["a"], "readinessProbe": {"exec": {"command": ["t"]}}}]},
     r"spec\.initContainers\[0\]\.readinessProbe: must not be set for init containers"),
    ({"containers": [{"name": "c", "command": ["a"]}], "initContainers": [
        {"name": "c", "command": ["a"]}]},
     r"spec\.containers: container name 'c' is not unique"),
    ({"containers": [{"name": "c", "command": ["a"]}], "initContainers": [
        {"name": "i", "command": ["a"], "volumeMounts": [{"name": "v", "mountPath": "/etc/x"}]}]},
     r"spec\.initContainers\[0\]\.volumeMounts\[0\]\.name: no volume named 'v'"),
    ({"containers": [{"name": "c", "command": ["a"],
                      "securityContext": {"capabilities": {"add": "NET_ADMIN"}}}]},
     r"spec\.containers\[0\]\.securityContext\.capabilities\.add: must be a list"),
    ({"containers": [{"name": "c", "command": ["a"], "env": [
        {"name": "A", "valueFrom": {"fieldRef": {}}}]}]},
     r"spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef: not supported"),
    ({"containers": []}, r"spec\.containers: required"),
])
def test_pod_spec_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    obj = pod(**spec)
    with pytest.raises(ManifestError, match=message):
        parse_pod_spec(obj, obj["spec"])


def test_named_ports_limits_and_probe_are_kept() -> None:
    obj = pod(containers=[{
        "name": "c", "command": ["srv"], "args": ["--port", "8080"],
        "ports": [{"name": "grpc", "containerPort": 8080}],
        "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
        "readinessProbe": {"tcpSocket": {"port": "grpc"}},
    }])
    c = parse_pod_spec(obj, obj["spec"]).containers[0]
    assert c.argv == ("srv", "--port", "8080")
    assert (c.ports[0].name, c.ports[0].port, c.ports[0].protocol) == ("grpc", 8080, "TCP")
    assert (c.cpu_millis, c.memory_bytes) == (250, 64 * 2**20)
    assert c.readiness is not None and c.readiness.tcp_port == "grpc"


def test_init_containers_and_capabilities_are_parsed() -> None:
    obj = pod(initContainers=[
        {"name": "a", "image": "ignored:1", "command": ["nft", "-f", "/x"],
         "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
        {"name": "b", "command": ["true"]}],
        containers=[{"name": "c", "command": ["srv"]}])
    spec = parse_pod_spec(obj, obj["spec"])
    assert [c.name for c in spec.init_containers] == ["a", "b"]
    assert spec.init_containers[0].argv == ("nft", "-f", "/x")
    assert [c.name for c in spec.containers] == ["c"]


def test_template_annotations_are_kept_and_checked() -> None:
    dep: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"template": {"metadata": {"labels": {"a": "b"},
                                              "annotations": {"ztfl.io/net-profile": "wan"}},
                                 "spec": {}}}}
    assert template_meta(dep)[:2] == ({"a": "b"}, {"ztfl.io/net-profile": "wan"})
    dep["spec"]["template"]["metadata"]["annotations"] = {"n": 1}
    with pytest.raises(ManifestError, match=r"spec\.template\.metadata\.annotations: must map"):
        template_meta(dep)


def test_secret_data_and_string_data() -> None:
    s = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
         "data": {"a": "aGVsbG8="}, "stringData": {"b": "plain"}}
    assert config_data(s) == {"a": b"hello", "b": b"plain"}
    s["data"] = {"a": "not base64!"}
    with pytest.raises(ManifestError, match=r"Secret default/s: data\.a: is not valid base64"):
        config_data(s)


@pytest.mark.parametrize(("q", "millis"), [("500m", 500), ("1", 1000), ("0.25", 250), (2, 2000)])
def test_cpu_quantities(q: object, millis: int) -> None:
    assert cpu_millis(q) == millis


@settings(deadline=None)  # shared CI machine: a slow example is not a failure
@given(st.integers(min_value=1, max_value=2**20), st.sampled_from(["Ki", "Mi", "Gi", "k", "M"]))
def test_memory_quantities(n: int, suffix: str) -> None:
    factor = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6}[suffix]
    if n * factor >= 4096:
        assert memory_bytes(f"{n}{suffix}") == n * factor
