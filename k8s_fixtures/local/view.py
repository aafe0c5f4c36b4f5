"""What overlays (NetworkPolicy compiler, network emulator) see of a local cluster, and the hook.

An :class:`Overlay` registered with :meth:`LocalCluster.add_overlay` declares the extra object
kinds it realises (e.g. ``{"NetworkPolicy"}``); the backend then accepts and stores those
objects and calls :meth:`Overlay.sync` with a fresh :class:`ClusterView` whenever pods,
namespaces or any of those objects change. New pods are in the view (with their network
namespace and IP, phase ``Pending``) *before* their processes start, so rules are in place
when the workload's first packet leaves (an init container's first packet too: init containers
are processes of the pod like any other). A sync that raises makes the ``apply`` fail and be
rolled back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from k8s_fixtures.cluster import Obj, PodPhase
from k8s_fixtures.manifests import ContainerPort

if TYPE_CHECKING:
    from k8s_fixtures.local.backend import LocalCluster

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class PodInfo:
    """One pod as overlays need it."""

    namespace: str
    name: str
    ip: str
    netns: str  # the pod's network namespace (``ip netns exec <netns> ...``)
    host_if: str  # the pod's veth end inside the node namespace, on the bridge
    labels: Mapping[str, str]
    namespace_labels: Mapping[str, str]  # including kubernetes.io/metadata.name
    ports: tuple[ContainerPort, ...]  # every container's ports, names kept
    phase: PodPhase
    # metadata.annotations (a template's, for Deployment/Job pods), e.g. ztfl.io/net-profile
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ClusterView:
    """A consistent snapshot of the cluster for one overlay sync."""

    node_netns: str  # holds the bridge; the network emulator's hook point
    bridge: str
    gateway: str  # the bridge's address: the pods' node IP (kubelet probes come from here)
    cidr: str
    namespaces: Mapping[str, Mapping[str, str]]  # name -> labels (with the automatic one)
    pods: tuple[PodInfo, ...]
    objects: Mapping[str, tuple[Obj, ...]] = field(default_factory=dict)  # overlay kinds

    def pod(self, namespace: str, name: str) -> PodInfo:
        for p in self.pods:
            if p.namespace == namespace and p.name == name:
                return p
        raise KeyError(f"no pod {namespace}/{name}")


class Overlay(Protocol):
    """Something that realises extra behaviour on the pods' network (SEC and NET overlays)."""

    kinds: Collection[str]  # extra object kinds it handles, e.g. {"NetworkPolicy"}; may be empty

    def validate(self, obj: Obj) -> None:
        """Raise ManifestError (``Kind ns/name: field: problem``) for a bad object."""
        ...

    def sync(self, cluster: LocalCluster, view: ClusterView) -> None:
        """Bring the overlay in line with ``view`` (run commands via ``cluster.command``)."""
        ...

    def close(self, cluster: LocalCluster) -> None:
        """Remove whatever the overlay added outside the pod namespaces (called at teardown)."""
        ...
