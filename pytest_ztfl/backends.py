"""Choose and create the cluster a matrix runs on (``--ztfl-backend``), with its overlays.

``auto`` picks ``kube`` when a context was asked for (``--ztfl-kube-context``), ``kind`` when
Docker and kind are usable, else ``local``. ``kind``/``kube`` that cannot run here are not
errors: the matrix's tests skip with the reason. The choice and why are returned as a note,
printed and stored with every result row. A :class:`Platform` says how containers start the
workload on that backend (interpreter, data path, image, the tc init container). Some cells
need more than a backend offers (mTLS ``mesh`` needs Linkerd, so a Kubernetes backend):
:func:`cell_unsupported` says why, :func:`matrix_unsupported` turns it into a usage error when
the backend was named explicitly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from k8s_fixtures.cluster import Cluster
from k8s_fixtures.workload import DEFAULT_IMAGE

if TYPE_CHECKING:
    from k8s_fixtures.local.backend import LocalCluster
    from k8s_fixtures.netem.local_overlay import NetemOverlay
    from k8s_fixtures.netem.profiles import Profile
    from k8s_fixtures.netpol.overlay import NetpolOverlay
    from pytest_ztfl.matrix import Cell

IMAGE_DATA_DIR = "/data/mnist"
NETEM_INIT = ("python", "-m", "k8s_fixtures.netem.init")
# a restricted (SEC3) pod's first init container: waits for the ztfl node agent
NODE_AGENT_WAIT = ("python", "-m", "k8s_fixtures.nodeagent.wait")


class BackendError(RuntimeError):
    """The requested backend cannot be created here; the message says why and what to do."""


@dataclass(frozen=True)
class Platform:
    python: tuple[str, ...]
    data_dir: str
    image: str = DEFAULT_IMAGE
    netem_init: tuple[str, ...] | None = None
    node_agent_wait: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CapturePoint:
    """Where the wire proof captures: a network namespace and the interface every pod's
    traffic crosses there (the local node's bridge)."""

    netns: str
    iface: str


@dataclass(frozen=True)
class Backend:
    """The cluster a matrix runs on and what the harness may use of it, created once by
    :func:`create` and handed to whoever needs it. The overlays and the capture point are the
    local backend's (None on kind/kube: there the CNI and the init containers do that work)."""

    name: str  # local | kind | kube
    cluster: Cluster
    platform: Platform
    note: str
    netpol: NetpolOverlay | None = None
    netem: NetemOverlay | None = None
    capture: CapturePoint | None = None
    detach: Callable[[], None] | None = None  # leave the cluster running (--ztfl-keep-cluster)

    def netpol_metadata(self) -> dict[str, str]:
        """How NetworkPolicy is enforced, for the row (empty: by the cluster's CNI)."""
        return self.netpol.metadata() if self.netpol is not None else {}


def choose(name: str, context: str | None, image: str | None = None) -> tuple[str, str]:
    """(backend, why) for ``--ztfl-backend=name``; raises nothing, probes no API. ``auto``
    takes kind only when Docker, kind and the workload ``image`` are all there."""
    if name != "auto":
        return name, "asked for"
    if context:
        return "kube", f"--ztfl-kube-context={context} given"
    from k8s_fixtures.kube import kind
    from k8s_fixtures.workload import DEFAULT_IMAGE

    ok, why = kind.available()
    if not ok:
        return "local", f"no kind: {why}"
    missing = kind.image_problem(image or DEFAULT_IMAGE)
    if missing is not None:
        return "local", f"no kind: {missing}"
    return "kind", "docker, kind and the image are there"


def unavailable(name: str, context: str | None) -> str | None:
    """Why backend ``name`` cannot run on this machine, or None when it can (no API calls)."""
    if name == "local":
        from k8s_fixtures.cluster import ClusterError
        from k8s_fixtures.local.privileges import detect

        try:
            detect()
        except ClusterError as exc:
            return f"local backend: {exc}"
        return None
    if name == "kind":
        from k8s_fixtures.kube import kind

        ok, why = kind.available()
        return None if ok else f"kind backend: {why}"
    from k8s_fixtures.kube import available

    ok, why = available(context)
    return None if ok else f"kube backend: {why}"


MESH_NEEDS_KUBE = (
    "mtls=mesh: needs Linkerd on a Kubernetes cluster (--ztfl-backend=kind|kube); "
    "the local backend supports native|sidecar"
)


def cell_unsupported(backend: str, cell: Cell) -> str | None:
    """Why ``cell`` cannot run on the resolved ``backend`` (``local``/``kind``/``kube``), or
    None. A matrix with such cells on ``--ztfl-backend=local`` is a usage error
    (:func:`matrix_unsupported`); on ``auto`` resolved to local, those cells skip with this
    reason, as cells of an unavailable kind/kube backend do."""
    if backend == "local" and cell.tls and cell.mtls == "mesh":
        return MESH_NEEDS_KUBE
    if backend != "local" and cell.fault is not None:
        from pytest_ztfl import faults

        fault = faults.get(cell.fault)
        if fault is not None and fault.local_only:
            return (
                f"fault {fault.name}: injected through the local backend's node (nft, the delay "
                f"line); on {backend} run it with --ztfl-backend=local"
            )
    return None


def matrix_unsupported(backend_option: str, cells: Iterable[Cell]) -> str | None:
    """The usage error for ``--ztfl-backend=<backend_option>`` when it can never run some of the
    matrix's cells (checked before any cluster exists), or None. ``auto`` is not judged here:
    what it resolves to depends on the machine, so its cells are judged one by one."""
    if backend_option == "auto":
        return None
    for cell in cells:
        why = cell_unsupported(backend_option, cell)
        if why is not None:
            return f"{why} (cell {cell.id})"
    return None


def _local(
    data_dir: str, net_profiles: str | Path | None, profiles: Mapping[str, Profile] | None,
    why: str,
) -> Backend:
    from k8s_fixtures.cluster import ClusterError
    from k8s_fixtures.local.backend import LocalCluster
    from k8s_fixtures.local.nodeagent import NodeAgentOverlay
    from k8s_fixtures.netem import load_profiles
    from k8s_fixtures.netem.local_overlay import NetemOverlay
    from k8s_fixtures.netpol.overlay import NetpolOverlay
    from k8s_fixtures.tls.native import server_env
    from k8s_fixtures.workload import BASE_ENV

    # FL clients and servers are forked from pre-imported zygotes (k8s_fixtures/local/zygote.py),
    # and so are the proofs' probes, run in pods or exec'd into them (the probe pods' environment
    # is the bare one); ZTFL_ZYGOTE=0 starts each as its own interpreter, as before.
    probe = "k8s_fixtures.tls.probe"
    zygotes = [
        (("fl_app.client", probe), BASE_ENV),
        (("fl_app.server", probe), server_env(BASE_ENV)),
        ((probe,), {}),
    ]
    on = os.environ.get("ZTFL_ZYGOTE", "1") != "0"
    cluster = LocalCluster(prefix="ztfl", zygotes=zygotes if on else [])
    try:
        cluster.start()
    except ClusterError as exc:
        raise BackendError(f"--ztfl-backend=local: {exc}") from None
    try:
        netpol = NetpolOverlay()
        cluster.add_overlay(netpol)
        # the session's parsed profiles, else the user's file (if given) or the built-in ones
        netem = NetemOverlay(profiles if profiles is not None else load_profiles(net_profiles))
        cluster.add_overlay(netem)
        cluster.add_overlay(NodeAgentOverlay())  # a restricted pod's sidecar redirect
    except BaseException:
        cluster.teardown()
        raise
    note = f"local ({cluster.mode}, cluster {cluster.name}): {why}"
    return Backend(
        "local",
        cluster,
        Platform(python=(sys.executable,), data_dir=data_dir),
        # e.g. "resources.limits are not enforced": every row's backend note carries it
        "; ".join([note, *cluster.warnings]),
        netpol=netpol,
        netem=netem,
        capture=_capture(cluster),
        detach=cluster.detach,
    )


def _capture(cluster: LocalCluster) -> CapturePoint:
    return CapturePoint(cluster.node_netns, cluster.bridge)


def create(
    name: str,
    *,
    data_dir: str,
    image: str = DEFAULT_IMAGE,
    context: str | None = None,
    net_profiles: str | Path | None = None,
    profiles: Mapping[str, Profile] | None = None,
) -> Backend:
    """Create the cluster and its overlays. ``net_profiles``: a user's profiles file
    (``--ztfl-net-profiles``), which the local backend shapes links with."""
    backend, why = choose(name, context, image)
    if backend == "local":
        return _local(data_dir, net_profiles, profiles, why)
    from k8s_fixtures.cluster import ClusterError

    kube_platform = Platform(
        python=("python",), data_dir=IMAGE_DATA_DIR, image=image, netem_init=NETEM_INIT,
        node_agent_wait=NODE_AGENT_WAIT,
    )
    cluster: Cluster
    try:
        if backend == "kind":
            from k8s_fixtures.kube import kind

            made = kind.create_kind(image=image)
            cluster = made
            how = "created" if made.created else "reused"
            why = f"{why}; cluster {made.kind_cluster} {how} through {made.driver}"
        else:
            from k8s_fixtures.kube import create_kube

            cluster = create_kube(context)
    except ClusterError as exc:
        raise BackendError(f"--ztfl-backend={backend}: {exc}") from None
    return Backend(backend, cluster, kube_platform, f"{backend}: {why}")


def net_mechanism(name: str, probe: bool) -> str:
    """How backend ``name`` emulates shaped links (``probe``: ask the kernel for netem)."""
    if name != "local":
        return "each client pod's tc netem init container"
    if not probe:
        return "kernel netem where this kernel has it, else the userspace delay line"
    from k8s_fixtures.netem.detect import probe_netem

    ok, why = probe_netem()
    return "kernel netem" if ok else f"the userspace delay line (no kernel netem: {why})"
