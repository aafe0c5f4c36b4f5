"""Clusters to probe, as plain data: the upstream e2e model, or any small set of pods.

:class:`ClusterPlan` lists namespaces (with labels) and pods (labels, declared container
ports, and any extra ports their agent should serve). :class:`ModelSpec` is the upstream
Kubernetes netpol e2e model: namespaces x, y, z labelled ``ns=<name>`` (plus the automatic
``kubernetes.io/metadata.name``), pods a, b, c labelled ``pod=<name>``, every pod declaring
``serve-80-tcp``, ``serve-80-udp``, ``serve-81-tcp``, ``serve-81-udp`` as upstream does (extra
ports, e.g. 53 for DNS cases, are named the same way).

This module only describes; realising a plan (on network namespaces today, on the local
backend later) is someone else's job: give :meth:`ClusterPlan.view` each pod's IP and network
namespace and get back the :class:`ClusterView` to evaluate and compile.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from k8s_fixtures.netpol.model import (
    ClusterView,
    ContainerPort,
    Namespace,
    NetworkPolicy,
    Pod,
    Protocol,
)

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (80, 81)


@dataclass(frozen=True)
class PlannedPod:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()  # declared container ports (named ports live here)
    extra_serve: tuple[tuple[Protocol, int], ...] = ()  # served but not declared

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def serve_arg(self) -> str:
        """The agent's ``--serve`` argument: every declared port plus the extra ones."""
        specs = [(p.protocol, p.port) for p in self.ports] + list(self.extra_serve)
        seen: list[tuple[str, int]] = []
        for s in specs:
            if s not in seen:
                seen.append(s)
        return ",".join(f"{proto}:{port}" for proto, port in seen)


@dataclass(frozen=True)
class ClusterPlan:
    namespaces: tuple[Namespace, ...]
    pods: tuple[PlannedPod, ...]

    @property
    def pod_keys(self) -> list[str]:
        return [p.key for p in self.pods]

    def pod(self, key: str) -> PlannedPod:
        return next(p for p in self.pods if p.key == key)

    def view(self, ip_of: Callable[[str], str], netns_of: Callable[[str], str | None],
             policies: Sequence[NetworkPolicy] = (), node_ips: Sequence[str] = ()
             ) -> ClusterView:
        """The plan as a cluster view; ``ip_of``/``netns_of`` map ``ns/pod`` to its realisation."""
        pods = tuple(Pod(p.namespace, p.name, ip_of(p.key), dict(p.labels), p.ports,
                         netns_of(p.key)) for p in self.pods)
        return ClusterView(self.namespaces, pods, tuple(policies), tuple(node_ips))


@dataclass(frozen=True)
class ModelSpec:
    """The upstream e2e model; :meth:`plan` turns it into a :class:`ClusterPlan`."""

    namespaces: tuple[str, ...] = NAMESPACES
    pods: tuple[str, ...] = PODS
    ports: tuple[int, ...] = PORTS

    def container_ports(self) -> tuple[ContainerPort, ...]:
        protos: tuple[Protocol, ...] = ("TCP", "UDP")
        return tuple(ContainerPort(f"serve-{port}-{proto.lower()}", port, proto)
                     for port in self.ports for proto in protos)

    def plan(self) -> ClusterPlan:
        return ClusterPlan(
            tuple(Namespace(ns, {"ns": ns}) for ns in self.namespaces),
            tuple(PlannedPod(ns, p, {"pod": p}, self.container_ports())
                  for ns in self.namespaces for p in self.pods))

    @property
    def pod_keys(self) -> list[str]:
        return self.plan().pod_keys

    def view(self, ip_of: Callable[[str], str], netns_of: Callable[[str], str | None],
             policies: Sequence[NetworkPolicy] = (), node_ips: Sequence[str] = ()
             ) -> ClusterView:
        return self.plan().view(ip_of, netns_of, policies, node_ips)
