"""The ``kind`` backend: create or reuse a kind cluster, load the image, then behave exactly as
``kube`` on the cluster's own kubeconfig.

kind >= v0.24 is required: from that release its default CNI, kindnet, enforces NetworkPolicy
(older kind silently ignores policies, which the proofs would catch). ``cni="calico"`` creates
the cluster without kindnet and applies the Calico manifest instead (needs ``kubectl`` and
network access to the manifest URL).

Two drivers, one behaviour. Where ``pytest-kind-ng`` is installed (extra ``kind``), its
``KindCluster`` creates, reuses and deletes the cluster, loads the image and applies Calico,
always with the ``kind`` (and ``kubectl``) found on ``PATH`` passed in: left to itself it would
download kind v0.17, whose kindnet does not enforce NetworkPolicy. Its kubeconfig goes to a
private temporary file, so your own kubeconfig is left alone. Where it is not installed, the
kind CLI is driven directly, as before (``kind create cluster`` then adds a ``kind-<name>``
context to your kubeconfig, as kind always does). Neither driver downloads anything; the
cluster object's :attr:`KindCluster.driver` says which one ran (the backend note shows it).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from k8s_fixtures.cluster import ClusterError, PrivilegeError
from k8s_fixtures.kube.backend import KubeCluster
from k8s_fixtures.kube.factory import create_kube
from k8s_fixtures.workload import DEFAULT_IMAGE

MIN_KIND = (0, 24, 0)
CALICO_MANIFEST = "https://raw.githubusercontent.com/projectcalico/calico/v3.29.1/manifests/calico.yaml"
CALICO_POD_SUBNET = "192.168.0.0/16"
INSTALL_KIND = "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
LIBRARY = "pytest-kind-ng"  # the distribution; its module is ``pytest_kind``
SYSTEM_READY_TIMEOUT = 180.0  # a new cluster's kube-system pods (what `kind --wait 180s` gave)
CNI = Literal["kindnet", "calico"]
T = TypeVar("T")


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


def library_version() -> str | None:
    """The installed pytest-kind-ng's version, or None (then the kind CLI is driven)."""
    try:
        return importlib.metadata.version(LIBRARY)
    except importlib.metadata.PackageNotFoundError:
        return None


def driver() -> str:
    """Which driver makes clusters here, in a few words for the backend note."""
    version = library_version()
    if version is None:
        return f"the kind CLI ({LIBRARY} not installed: pip install 'pytest-ztfl[kind]')"
    return f"{LIBRARY} {version}"


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
    return True, (f"docker daemon reachable, kind {_first(_run(['kind', 'version']).stdout)}, "
                  f"through {driver()}")


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


@contextlib.contextmanager
def _private_dir() -> Iterator[Path]:
    """A temporary directory for a kubeconfig (kind's holds its certificates inline), removed
    with everything in it on the way out: no credentials are left in /tmp."""
    tmp = Path(tempfile.mkdtemp(prefix="ztfl-kind-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class KindCluster(KubeCluster):
    """A :class:`KubeCluster` on a kind cluster; ``delete_cluster`` removes the kind cluster at
    teardown (only if this object created it). ``driver`` names what made the cluster;
    ``library`` is pytest-kind-ng's cluster object where that library did."""

    created = False
    delete_cluster = False
    driver = "the kind CLI"
    library: Any = None

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if self.created and self.delete_cluster and self.kind_cluster:
                self._delete_kind_cluster()

    def _delete_kind_cluster(self) -> None:
        if self.library is None:
            _run(["kind", "delete", "cluster", "--name", str(self.kind_cluster)], timeout=300)
            return
        # `kind delete cluster --kubeconfig=P` edits P (recreating its directory if need be):
        # give it a fresh private file, gone afterwards, as the one the cluster was made with is.
        with _private_dir() as tmp:
            self.library.kubeconfig_path = tmp / "kubeconfig"
            with contextlib.suppress(subprocess.CalledProcessError, OSError):
                self.library.delete()


def _must(argv: list[str], what: str, timeout: float) -> str:
    r = _run(argv, timeout)
    if r.returncode != 0:
        raise ClusterError(f"{what}: `{' '.join(argv)}` failed: {_first(r.stderr)}")
    return r.stdout


def _library_call(call: Callable[[], T], what: str) -> T:
    """A pytest-kind-ng call, its failures as one-line :class:`ClusterError` (the tool's own
    output went to the terminal: the library does not capture it)."""
    try:
        return call()
    except subprocess.CalledProcessError as e:
        argv = e.cmd if isinstance(e.cmd, list) else [str(e.cmd)]
        raise ClusterError(f"{what}: `{' '.join(map(str, argv))}` failed (exit "
                           f"{e.returncode})") from None
    except OSError as e:
        raise ClusterError(f"{what}: {e}") from None


def _library_cluster(name: str, kubeconfig: Path, kind: Path, kubectl: Path | None) -> Any:
    """pytest-kind-ng's ``KindCluster`` for ``name`` on the given binaries: it never downloads
    (its default would be kind v0.17). Its constructor makes ``./.pytest-kind/<name>/`` for the
    binaries it would fetch; nothing is put there, so the directories it made are removed."""
    lib = importlib.import_module("pytest_kind")
    base = Path(".pytest-kind")
    made = [p for p in (base, base / name) if not p.exists()]
    cluster = lib.KindCluster(name, kubeconfig=kubeconfig, kind_path=kind, kubectl_path=kubectl)
    for p in reversed(made):
        with contextlib.suppress(OSError):
            p.rmdir()
    return cluster


def _kubeconfig_of(name: str, path: Path) -> None:
    path.write_text(_must(["kind", "get", "kubeconfig", "--name", name], "kind", 60))
    path.chmod(0o600)


def _with_library(name: str, image: str, cni: CNI, workers: int, created: bool,
                  calico_manifest: str) -> tuple[KubeCluster, Any]:
    """The cluster through pytest-kind-ng: (the connected cluster, the library's object)."""
    kind = Path(shutil.which("kind") or "kind")
    kubectl = shutil.which("kubectl")
    with _private_dir() as tmp:
        kubeconfig = tmp / "kubeconfig"
        if not created:  # the library writes a kubeconfig only for a cluster it creates
            _kubeconfig_of(name, kubeconfig)
        lib = _library_cluster(name, kubeconfig, kind, Path(kubectl) if kubectl else None)
        config = tmp / "kind.yaml"
        config.write_text(render_config(cni, workers))
        _library_call(lambda: lib.create(config_file=config if created else None),
                      f"kind cluster {name}")
        if created and cni == "calico":
            _library_call(lambda: lib.kubectl("apply", "--server-side", "-f", calico_manifest),
                          "Calico")
        _library_call(lambda: lib.load_docker_image(image), f"loading {image}")
        base = create_kube(f"kind-{name}", kubeconfig=kubeconfig, kind_cluster=name)
    if created:  # kind's own --wait is not offered by the library: wait for the system pods
        base.wait_ready("kube-system", timeout=SYSTEM_READY_TIMEOUT)
    return base, lib


def _with_cli(name: str, image: str, cni: CNI, workers: int, created: bool,
              calico_manifest: str) -> KubeCluster:
    """The cluster through the kind CLI (pytest-kind-ng not installed)."""
    if created:
        with _private_dir() as tmp:
            config = tmp / "kind.yaml"
            config.write_text(render_config(cni, workers))
            _must(["kind", "create", "cluster", "--name", name, "--config", str(config),
                   "--wait", "180s"], f"kind cluster {name}", 600)
        if cni == "calico":
            _must(["kubectl", "--context", f"kind-{name}", "apply", "--server-side", "-f",
                   calico_manifest], "Calico", 300)
    _must(["kind", "load", "docker-image", image, "--name", name], f"loading {image}", 600)
    # The client reads the kubeconfig once: the file is removed as soon as it has.
    with _private_dir() as tmp:
        kubeconfig = tmp / "kubeconfig"
        _kubeconfig_of(name, kubeconfig)
        return create_kube(f"kind-{name}", kubeconfig=kubeconfig, kind_cluster=name)


def create_kind(name: str = "ztfl", image: str = DEFAULT_IMAGE, *, cni: CNI = "kindnet",
                workers: int = 0, delete_cluster: bool = False,
                calico_manifest: str = CALICO_MANIFEST) -> KindCluster:
    """Create (or reuse) kind cluster ``name``, load ``image`` into it, connect to it: through
    pytest-kind-ng where it is installed, else the kind CLI (:func:`driver`)."""
    ok, why = available()
    if not ok:
        raise PrivilegeError(f"kind backend: {why}")
    missing = image_problem(image)
    if missing is not None:
        raise ClusterError(missing)
    created = name not in _must(["kind", "get", "clusters"], "kind", 60).split()
    if created and cni == "calico" and not shutil.which("kubectl"):
        raise PrivilegeError("kind with Calico: kubectl not on PATH")
    lib: Any = None
    if library_version() is not None:
        base, lib = _with_library(name, image, cni, workers, created, calico_manifest)
    else:
        base = _with_cli(name, image, cni, workers, created, calico_manifest)
    cluster = KindCluster(base.api, name=f"kind-{name}", kind_cluster=name)
    cluster.version = base.version
    cluster.created, cluster.delete_cluster = created, delete_cluster
    cluster.driver, cluster.library = driver(), lib
    return cluster

