"""Typed inputs of the NetworkPolicy evaluator and compiler: the cluster view and the policies.

Everything here is a frozen dataclass with the semantics of ``networking.k8s.io/v1`` built in
where they belong to the object itself (label selectors match labels, ip blocks contain
addresses, namespaces carry the automatic ``kubernetes.io/metadata.name`` label). Policies are
built from plain dicts by :mod:`k8s_fixtures.netpol.parse`; the local backend builds a
:class:`ClusterView` from whatever it keeps and hands it to the evaluator or the compiler.

"Absent" and "empty" differ where the API makes them differ: a selector that is ``None`` was
absent, ``LabelSelector()`` is the empty selector ``{}`` that matches everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

Protocol = Literal["TCP", "UDP", "SCTP"]
PROTOCOLS: tuple[Protocol, ...] = ("TCP", "UDP", "SCTP")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Direction(StrEnum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator is Operator.IN:
            return present and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:  # absent key satisfies NotIn, as upstream
            return not present or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return present
        return not present


@dataclass(frozen=True)
class LabelSelector:
    """``matchLabels`` AND ``matchExpressions``; the empty selector matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.match_expressions:
            vals = f" ({','.join(r.values)})" if r.values else ""
            parts.append(f"{r.key} {r.operator.value}{vals}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        if ip.version != self.cidr.version or ip not in self.cidr:
            return False
        return not any(ip in e for e in self.excepts)


@dataclass(frozen=True)
class Peer:
    """One ``from``/``to`` entry: selectors (ANDed when both are given) or an ipBlock."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    """One ``ports`` entry. ``port`` None means every port of ``protocol``."""

    protocol: Protocol = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    """An ingress or egress rule. Empty peers / empty ports mean "all" (absent == empty)."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[Direction]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def effective_labels(self) -> dict[str, str]:
        """The labels with the automatic ``kubernetes.io/metadata.name`` one set (it wins)."""
        return {**self.labels, NAMESPACE_NAME_LABEL: self.name}


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: Protocol = "TCP"


@dataclass(frozen=True)
class Pod:
    """A pod as the policy machinery sees it; ``netns`` is where its rules go (None: nowhere)."""

    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()
    netns: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def address(self) -> IPAddress:
        return ipaddress.ip_address(self.ip)

    def resolve_port(self, name: str, protocol: Protocol) -> int | None:
        """The number of the named container port with this protocol, or None."""
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


@dataclass(frozen=True)
class ClusterView:
    """Everything the evaluator and the compiler need: namespaces, pods, policies.

    ``node_ips`` are the addresses of the pods' node: upstream lets traffic from a pod's own
    node in regardless of ingress policy (kubelet probes), and so do the evaluator and compiler.
    Namespaces referenced by pods or policies but missing from ``namespaces`` are treated as
    existing with no labels except the automatic name label.
    """

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    node_ips: tuple[str, ...] = ()

    def namespace_labels(self, name: str) -> dict[str, str]:
        for ns in self.namespaces:
            if ns.name == name:
                return ns.effective_labels
        return Namespace(name).effective_labels

    def all_namespace_names(self) -> list[str]:
        names = [ns.name for ns in self.namespaces]
        for other in [p.namespace for p in self.pods] + [p.namespace for p in self.policies]:
            if other not in names:
                names.append(other)
        return names

    def pod(self, key: str) -> Pod:
        for p in self.pods:
            if p.key == key:
                return p
        raise KeyError(f"no pod {key!r} in the cluster view")

    def pod_by_ip(self, ip: str) -> Pod | None:
        addr = ipaddress.ip_address(ip)
        for p in self.pods:
            if p.address == addr:
                return p
        return None


@dataclass(frozen=True)
class Flow:
    """A connection attempt: ``src``/``dst`` are pods or bare IP addresses (strings)."""

    src: Pod | str
    dst: Pod | str
    protocol: Protocol
    port: int

    def describe(self) -> str:
        def name(e: Pod | str) -> str:
            return e.key if isinstance(e, Pod) else e

        return f"{name(self.src)} -> {name(self.dst)} {self.protocol}/{self.port}"
