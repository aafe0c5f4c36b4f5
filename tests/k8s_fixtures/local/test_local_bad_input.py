"""Bad input gives one clear line naming the object and field, and leaves nothing behind."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ztlc_support import PY, leaks, netns_named

from k8s_fixtures.cluster import ClusterError, ManifestError, Obj, PrivilegeError
from k8s_fixtures.local import privileges
from k8s_fixtures.local.admission import admit, key_of
from k8s_fixtures.local.backend import LocalCluster


def ns_obj(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def pod(name: str, command: list[str], ns: str = "default", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "command": command}], **spec}}


STORED = {key_of(o): {**o, "metadata": {**o["metadata"], "labels": {
    "kubernetes.io/metadata.name": o["metadata"]["name"]}}} for o in [ns_obj("default")]}


def check(batch: list[Obj], free: int = 100) -> None:
    admit(batch, STORED, {}, set(), free, {})


@pytest.mark.parametrize(("batch", "message"), [
    ([{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
       "metadata": {"name": "x", "namespace": "default"}}],
     r"^Ingress default/x: kind: Ingress is not supported by the local backend \(supported:"),
    ([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
       "metadata": {"name": "np"}, "spec": {}}],
     r"^NetworkPolicy default/np: kind: NetworkPolicy needs a registered overlay"),
    ([{"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "p"}}],
     r"^Pod default/p: apiVersion: 'apps/v1': expected 'v1'"),
    ([pod("p", ["true"], ns="nowhere")],
     r"^Pod nowhere/p: metadata.namespace: namespace 'nowhere' does not exist"),
    ([pod("p", ["true"]), pod("p", ["true"])], r"^Pod default/p: metadata.name: appears twice"),
    ([pod("p", [])], r"spec.containers\[0\].command: required by the local backend"),
    ([pod("p", ["ztlc-no-such-command"])],
     r"^Pod default/p: spec.containers\[0\].command: 'ztlc-no-such-command' not found in PATH"),
    ([pod("p", ["/nonexistent/ztlc"])], r"'/nonexistent/ztlc' does not exist or is not exec"),
    ([pod("p", ["true"], initContainers=[{"name": "i", "command": ["ztlc-no-such-init"]}])],
     r"^Pod default/p: spec.initContainers\[0\].command: 'ztlc-no-such-init' not found"),
    ([pod("p", ["true"], initContainers=[{"name": "i", "command": ["true"], "env": [
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}])],
     r"^Pod default/p: spec.initContainers\[0\].env\[0\].valueFrom.secretKeyRef: no Secret"),
    ([{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
       "spec": {"template": {"spec": {"restartPolicy": "Never",
                                      "initContainers": [{"name": "i", "image": "x"}],
                                      "containers": [{"name": "c", "command": ["true"]}]}}}}],
     r"^Job default/j: spec.template.spec.initContainers\[0\].command: required"),
    ([pod("p", ["true"], volumes=[{"name": "v", "configMap": {"name": "missing"}}])],
     r"^Pod default/p: spec.volumes\[0\].configMap.name: no ConfigMap 'missing'"),
    ([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
       "spec": {"type": "NodePort"}}], r"^Service default/s: spec.type: 'NodePort' is not"),
    ([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
       "spec": {"selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "y"}},
                             "spec": {"containers": [{"name": "c", "command": ["true"]}]}}}}],
     r"^Deployment default/d: spec.selector: does not match spec.template.metadata.labels"),
    ([{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
       "spec": {"template": {"spec": {"containers": [{"name": "c", "command": ["true"]}]}}}}],
     r"^Job default/j: spec.template.spec.restartPolicy: must be Never or OnFailure"),
])
def test_admission_errors(batch: list[Obj], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        check(batch)


def test_admission_counts_free_addresses() -> None:
    with pytest.raises(ManifestError, match=r"Pod default/a: metadata.name: the pod CIDR has "
                                            r"1 free addresses, 2 pods need one"):
        check([pod("a", ["true"]), pod("b", ["true"])], free=1)


def test_missing_tool_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privileges.shutil, "which", lambda *a, **k: None)
    with pytest.raises(PrivilegeError, match=r"^'ip' is not installed \(needed by the local"):
        privileges.detect()


@pytest.mark.privileged
def test_bad_batch_creates_nothing(state_root: Path, tmp_path: Path) -> None:
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        before, pods_before = sorted(netns_named(c.name)), c.view().pods
        batch = [ns_obj("run"), pod("good", [PY, "-c", "pass"], ns="run"),
                 pod("bad", ["ztlc-no-such-command"], ns="run")]
        with pytest.raises(ManifestError, match=r"^Pod run/bad: spec.containers\[0\].command"):
            c.apply(batch)
        bad_yaml = tmp_path / "bad.yaml"
        bad_yaml.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x\n")
        with pytest.raises(ManifestError, match=r"bad.yaml: line 4: not valid YAML"):
            c.apply(bad_yaml)
        assert sorted(netns_named(c.name)) == before
        assert c.view().pods == pods_before and "run" not in c.view().namespaces
        assert not list((c.state_dir / "pods").glob("run.*"))


@pytest.mark.privileged
def test_start_error_is_reported(state_root: Path) -> None:
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        p = pod("wd", [PY, "-c", "pass"])
        p["spec"]["containers"][0]["workingDir"] = "/nonexistent-ztlc"
        c.apply(p)
        with pytest.raises(ClusterError, match=r"default/wd will not become ready: .*StartError"
                                               r".*No such file or directory"):
            c.wait_ready("default", names=["wd"], timeout=20)
        s = c.pod_status("default", "wd")
        assert s.reason == "StartError" and s.restart_count == 0


@pytest.mark.privileged
def test_exhausted_cidr_creates_nothing(state_root: Path) -> None:
    # A /29 has 5 pod addresses; the cluster DNS pod takes one.
    with LocalCluster(prefix="ztlc", state_root=state_root, cidr="10.246.0.0/29") as c:
        before = sorted(netns_named(c.name))
        batch = [pod(f"p{i}", [PY, "-c", "import time; time.sleep(100)"]) for i in range(5)]
        with pytest.raises(ManifestError, match=r"Pod default/p0: metadata.name: the pod CIDR "
                                                r"has 4 free addresses, 5 pods need one"):
            c.apply(batch)
        assert sorted(netns_named(c.name)) == before
        c.apply(batch[:4])
        assert len(c.wait_ready("default", timeout=20)) == 4


def host_route() -> str | None:
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        dest = line.split()[0]
        if dest != "default":
            return str(ipaddress.IPv4Network(dest, strict=False))
    return None


@pytest.mark.privileged
@pytest.mark.parametrize("cidr", ["host-route", "10.247.0.0/30", "not-a-cidr"])
def test_bad_cidr_creates_nothing(state_root: Path, cidr: str) -> None:
    if cidr == "host-route":
        cidr = host_route() or pytest.skip("this machine has no non-default IPv4 route")
    c = LocalCluster("ztlc-badcidr", state_root=state_root, cidr=cidr)
    problem = r"(overlaps the host route|too small|Expected 4 octets)"
    with pytest.raises(ClusterError, match=rf"^cluster ztlc-badcidr: cidr .*{problem}"):
        c.start()
    assert leaks("ztlc-badcidr", state_root) == []


@pytest.mark.privileged
def test_name_clash_never_touches_the_other_cluster(state_root: Path, tmp_path: Path) -> None:
    with LocalCluster("ztlc-clash", state_root=state_root) as first:
        before = sorted(netns_named("ztlc-clash"))
        second = LocalCluster("ztlc-clash", state_root=tmp_path / "other")
        with pytest.raises(ClusterError, match=r"ztlc-clash.* already exists"):
            second.start()
        assert sorted(netns_named("ztlc-clash")) == before
        assert first.pod_status("kube-system", "cluster-dns").ready
    assert leaks("ztlc-clash", state_root) == []
