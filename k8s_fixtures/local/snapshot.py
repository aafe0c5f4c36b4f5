"""The snapshot overlays get of a local cluster: namespaces with their labels, the live pods
(network namespace, IP, labels, annotations, ports, phase) and the objects of the overlays'
kinds, as a :class:`~k8s_fixtures.local.view.ClusterView`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from k8s_fixtures.cluster import Obj
from k8s_fixtures.local.admission import Key
from k8s_fixtures.local.pods import PodRun
from k8s_fixtures.local.topology import BRIDGE
from k8s_fixtures.local.view import NAMESPACE_NAME_LABEL, ClusterView, Overlay, PodInfo


def snapshot(node_netns: str, gateway: str, cidr: str, objects: Mapping[Key, Obj],
             pods: Mapping[tuple[str, str], PodRun], overlays: Sequence[Overlay]) -> ClusterView:
    """The view of ``objects`` and ``pods`` (pods being deleted left out) for ``overlays``."""
    ns_labels = {k[2]: {**(o["metadata"].get("labels") or {}), NAMESPACE_NAME_LABEL: k[2]}
                 for k, o in objects.items() if k[0] == "Namespace"}
    infos = tuple(
        PodInfo(p.namespace, p.name, p.link.ip, p.link.netns, p.link.host_if,
                dict(p.labels), ns_labels.get(p.namespace, {}),
                tuple(port for c in p.spec.containers for port in c.ports),
                p.phase(), dict(p.annotations))
        for p in pods.values() if not p.deleting
    )
    kinds = {k for o in overlays for k in o.kinds}
    objs = {kind: tuple(o for k, o in objects.items() if k[0] == kind)
            for kind in kinds}
    return ClusterView(node_netns, BRIDGE, gateway, cidr, ns_labels, infos, objs)
