"""The ``kind`` backend: create or reuse a kind cluster with the kind CLI, load the image, then
behave exactly as ``kube`` on the cluster's own kubeconfig.

kind >= v0.24 is required: from that release its default CNI, kindnet, enforces NetworkPolicy
(older kind silently ignores policies, which the proofs would catch). ``cni="calico"`` creates
the cluster without kindnet and applies the Calico manifest instead (needs ``kubectl`` and
network access to the manifest URL). The kind CLI is used directly: no binaries are downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import yaml

from k8s_fixtures.cluster import ClusterError, PrivilegeError
from k8s_fixtures.kube.backend import KubeCluster
from k8s_fixtures.kube.factory import create_kube
from k8s_fixtures.workload import DEFAULT_IMAGE

MIN_KIND = (0, 24, 0)
CALICO_MANIFEST = "https://raw.githubusercontent.com/projectcalico/calico/v3.29.1/manifests/calico.yaml"
CALICO_POD_SUBNET = "192.168.0.0/16"
INSTALL_KIND = "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
CNI = Literal["kindnet", "calico"]


def _run(argv: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout:.0f}s")
    except OSError as e:
        return subprocess.CompletedProcess(argv, 127, "", str(e))


def _first(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_kind_version(text: str) -> tuple[int, int, int] | None:
    """``kind v0.24.0 go1.22.6 linux/amd64`` -> (0, 24, 0)."""
    m = re.search(r"\bv?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None."""
    if not shutil.which("docker"):
        return "docker not on PATH (kind needs a Docker engine)"
    r = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
    if r.returncode != 0:
        return f"docker daemon not reachable ({_first(r.stderr) or f'rc {r.returncode}'})"
    return None


def kind_problem() -> str | None:
    """Why the kind CLI cannot be used here, or None."""
    if not shutil.which("kind"):
        return f"kind not on PATH (install kind >= v0.24: {INSTALL_KIND})"
    r = _run(["kind", "version"], timeout=20)
    version = parse_kind_version(r.stdout)
    if r.returncode != 0 or version is None:
        return f"`kind version` failed ({_first(r.stderr) or r.returncode})"
    if version < MIN_KIND:
        v = ".".join(map(str, version))
        return (f"kind v{v} is too old: NetworkPolicy is enforced by kindnet only from "
                f"v0.24 (upgrade: {INSTALL_KIND})")
    return None


def available() -> tuple[bool, str]:
    """(usable, one-line reason) for the kind backend: Docker daemon up, kind >= v0.24."""
    problems = [p for p in (docker_problem(), kind_problem()) if p]
    if problems:
        return False, "; ".join(problems)
    return True, "docker daemon reachable, kind " + _first(_run(["kind", "version"]).stdout)


def image_problem(image: str) -> str | None:
    """Why ``image`` cannot be loaded into a kind cluster (not in the local Docker engine), or
    None."""
    if _run(["docker", "image", "inspect", image]).returncode != 0:
        return (f"image {image} is not in the local Docker engine (build it: docker build -t "
                f"{image} -f docker/Dockerfile .)")
    return None


def render_config(cni: CNI = "kindnet", workers: int = 0) -> str:
    """The kind cluster configuration (``kind create cluster --config``)."""
    cfg: dict[str, object] = {
        "kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
        "nodes": [{"role": "control-plane"}] + [{"role": "worker"} for _ in range(workers)],
    }
    if cni == "calico":
        cfg["networking"] = {"disableDefaultCNI": True, "podSubnet": CALICO_POD_SUBNET}
    return yaml.safe_dump(cfg, sort_keys=False)


class KindCluster(KubeCluster):
    """A :class:`KubeCluster` on a kind cluster; ``delete_cluster`` removes the kind cluster at
    teardown (only if this object created it)."""

    created = False
    delete_cluster = False

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if self.created and self.delete_cluster and self.kind_cluster:
                _run(["kind", "delete", "cluster", "--name", self.kind_cluster], timeout=300)


def _must(argv: list[str], what: str, timeout: float) -> str:
    r = _run(argv, timeout)
    if r.returncode != 0:
        raise ClusterError(f"{what}: `{' '.join(argv)}` failed: {_first(r.stderr)}")
    return r.stdout


def create_kind(name: str = "ztfl", image: str = DEFAULT_IMAGE, *, cni: CNI = "kindnet",
                workers: int = 0, delete_cluster: bool = False,
                calico_manifest: str = CALICO_MANIFEST) -> KindCluster:
    """Create (or reuse) kind cluster ``name``, load ``image`` into it, connect to it."""
    ok, why = available()
    if not ok:
        raise PrivilegeError(f"kind backend: {why}")
    missing = image_problem(image)
    if missing is not None:
        raise ClusterError(missing)
    clusters = _must(["kind", "get", "clusters"], "kind", 60).split()
    created = name not in clusters
    if created:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(render_config(cni, workers))
        try:
            _must(["kind", "create", "cluster", "--name", name, "--config", f.name,
                   "--wait", "180s"], f"kind cluster {name}", 600)
        finally:
            os.unlink(f.name)
        if cni == "calico":
            if not shutil.which("kubectl"):
                raise PrivilegeError("kind with Calico: kubectl not on PATH")
            _must(["kubectl", "--context", f"kind-{name}", "apply", "--server-side", "-f",
                   calico_manifest], "Calico", 300)
    _must(["kind", "load", "docker-image", image, "--name", name], f"loading {image}", 600)
    # The client reads the kubeconfig once (kind's holds its certificates inline): the file is
    # removed as soon as it has, so no credentials are left in /tmp.
    tmp = Path(tempfile.mkdtemp(prefix="ztfl-kind-"))
    try:
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(_must(["kind", "get", "kubeconfig", "--name", name], "kind", 60))
        kubeconfig.chmod(0o600)
        base = create_kube(f"kind-{name}", kubeconfig=kubeconfig, kind_cluster=name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cluster = KindCluster(base.api, name=f"kind-{name}", kind_cluster=name)
    cluster.version = base.version
    cluster.created, cluster.delete_cluster = created, delete_cluster
    return cluster
