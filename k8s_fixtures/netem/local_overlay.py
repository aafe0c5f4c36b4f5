"""The NET overlay of the local backend: shapes every annotated client pod's link to its server.

A client pod carries ``ztfl.io/net-profile: NET2`` (the same annotation that makes a Kubernetes
backend render a ``tc`` init container). When the backend creates such pods — before their
processes start — the overlay applies the profile to each client <-> server link of that
namespace with :func:`k8s_fixtures.netem.apply` (kernel netem where present, else the delay
line), so the first packet of the workload is already shaped. Pods of one namespace may name
different profiles (heterogeneous edge). Deleting the namespace removes the emulation.

Several namespaces may be shaped at once (one FL cell each, same or different profiles), each
by a handle of its own: its own delay line, its own iptables chain and a range of NFQUEUE
numbers no other shaped namespace of the cluster uses (a :class:`~.overlay.QueueSlot` the
overlay reserves per namespace and releases once that namespace's emulation has stopped).
Stopping one namespace's emulation leaves the others' in force.

A client pod added to (or re-created in) a namespace already shaped gets its link too: the
namespace's emulation is rebuilt for the new set of clients. Packets the old delay line held are
released as it stops, so the other clients see one short burst without delay; the FL workload
applies all its clients at once, so a run only meets this when its pods are replaced.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from k8s_fixtures.cluster import ManifestError
from k8s_fixtures.local.view import ClusterView, PodInfo

from .overlay import ALLOCATOR, NetemError, NetemHandle, QueueSlot, apply
from .plan import NetPlan
from .profiles import NET_ANNOTATION, Profile, ProfileError, load_profiles

ANNOTATION = NET_ANNOTATION  # the pod annotation this overlay acts on
SERVER_LABEL = ("app.kubernetes.io/component", "fl-server")


@dataclass
class Link:
    netns: str
    host_if: str
    pod_if: str = "eth0"


class NetemOverlay:
    """Registered with ``LocalCluster.add_overlay``; realises the net-profile annotation."""

    kinds: Collection[str] = ()

    def __init__(
        self, profiles: Mapping[str, Profile] | None = None, mechanism: str = "auto"
    ) -> None:
        self.profiles = dict(profiles) if profiles is not None else load_profiles()
        self.mechanism = mechanism
        self.handles: dict[str, NetemHandle] = {}
        self.slots: dict[str, QueueSlot] = {}  # ns -> its queue numbers and chain
        self.shaped: dict[str, frozenset[tuple[str, str, str]]] = {}  # ns -> client links

    def validate(self, obj: dict[str, Any]) -> None:  # no object kinds of its own
        return None

    def _plan(self, ns: str, clients: list[PodInfo]) -> NetPlan:
        chosen: dict[str, Profile] = {}
        for p in clients:
            name = p.annotations[ANNOTATION]
            if name not in self.profiles:
                raise ManifestError(
                    f"Pod {ns}/{p.name}: metadata.annotations[{ANNOTATION}]: unknown profile "
                    f"{name!r} (known: {', '.join(sorted(self.profiles))})"
                )
            chosen[p.netns] = self.profiles[name]
        first = next(iter(chosen.values()))
        return NetPlan(default=first, clients=chosen)

    def sync(self, cluster: Any, view: ClusterView) -> None:
        by_ns: dict[str, list[PodInfo]] = defaultdict(list)
        for p in view.pods:
            by_ns[p.namespace].append(p)
        self._stop([n for n in self.handles if n not in by_ns])
        for ns, pods in by_ns.items():
            clients = [p for p in pods if ANNOTATION in p.annotations]
            servers = [p for p in pods if p.labels.get(SERVER_LABEL[0]) == SERVER_LABEL[1]]
            links = frozenset(
                (c.netns, c.host_if, c.annotations[ANNOTATION]) for c in clients
            ) | frozenset((s.netns, s.host_if, "server") for s in servers)
            if not clients or self.shaped.get(ns) == links:
                continue
            if ns in self.handles:
                self._stop([ns])  # the clients changed: rebuild for the new set
            if len(servers) != 1:
                raise ManifestError(
                    f"Pod {ns}/{clients[0].name}: metadata.annotations"
                    f"[{ANNOTATION}]: needs exactly one fl-server pod in the "
                    f"namespace, found {len(servers)}"
                )
            try:
                plan = self._plan(ns, clients)
            except ProfileError as exc:
                raise ManifestError(f"Pod {ns}/{clients[0].name}: {exc}") from None
            server = Link(servers[0].netns, servers[0].host_if)
            pairs = [(Link(c.netns, c.host_if), server) for c in clients]
            # two queues per client link, none shared with another shaped namespace
            slot = ALLOCATOR.reserve(view.node_netns, 2 * len(pairs))
            try:
                self.handles[ns] = apply(plan, view.node_netns, pairs,
                                         mechanism=self.mechanism, slot=slot)
            except BaseException as exc:
                ALLOCATOR.release(slot)  # apply removed what it installed
                if isinstance(exc, ProfileError):
                    raise ManifestError(f"Pod {ns}/{clients[0].name}: {exc}") from None
                raise
            self.slots[ns] = slot
            self.shaped[ns] = links

    def handle(self, namespace: str) -> NetemHandle | None:
        return self.handles.get(namespace)

    def _stop(self, namespaces: list[str]) -> None:
        """Stop these namespaces' emulation (only theirs: other namespaces stay shaped), every
        one even when one fails (then raise), and release their queue slots."""
        errors = []
        for ns in namespaces:
            self.shaped.pop(ns, None)
            h = self.handles.pop(ns, None)
            slot = self.slots.pop(ns, None)
            try:
                if h is not None:
                    h.stop()
            except Exception as exc:  # keep stopping the others; report them all
                errors.append(f"{ns}: {exc}")
            if slot is not None and (h is None or not h.holds_queues):
                ALLOCATOR.release(slot)  # its delay line is gone: the queues are unbound
        if errors:
            raise NetemError("; ".join(errors))

    def close(self, cluster: Any) -> None:
        self._stop(list(self.handles))
