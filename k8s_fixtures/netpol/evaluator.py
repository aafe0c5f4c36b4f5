"""The pure NetworkPolicy evaluator: does a flow pass egress at its source and ingress at its dest?

Semantics are those of ``networking.k8s.io/v1`` as the upstream API docs and the upstream e2e
suite define them:

* A pod is isolated for a direction when at least one policy of that type (after
  ``policyTypes`` defaulting) selects it; an unisolated pod allows everything in that direction.
* An isolated pod allows a flow when any rule of any policy selecting it matches (the union;
  allow wins). Egress is decided at the source pod, ingress at the destination pod,
  independently: both must allow.
* A rule matches when its peers match (no peers: any peer) and its ports match (no ports: any
  port and protocol). A peer's ``podSelector`` and ``namespaceSelector`` are ANDed; separate
  peers are ORed; a ``podSelector`` alone means the policy's own namespace; ``namespaceSelector:
  {}`` means every namespace. Namespaces carry the automatic ``kubernetes.io/metadata.name``.
* ``ipBlock`` matches IP addresses, pod IPs included (the upstream e2e suite allows egress to a
  pod by ``ipBlock: <podIP>/32``); ``except`` carves addresses out.
* Named ports are resolved on the destination pod (for egress rules too), with the rule's
  protocol; a named port never matches a destination that is not a pod. ``endPort`` makes a
  range.
* Traffic from the pod's own node (``ClusterView.node_ips``) is always allowed in, as upstream.

A source or destination given as an IP that belongs to a pod of the view is that pod.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from k8s_fixtures.netpol.model import (
    ClusterView,
    Direction,
    Flow,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    Protocol,
    Rule,
)


@dataclass(frozen=True)
class Decision:
    """The outcome for one direction; ``policy``/``rule`` say which rule allowed it."""

    direction: Direction
    allowed: bool
    reason: str
    pod: str | None = None  # the pod whose policies were consulted (None: not a pod)
    policy: str | None = None  # ns/name of the allowing policy
    rule: int | None = None  # index into spec.ingress / spec.egress of that policy
    isolating: tuple[str, ...] = ()  # every policy of this type selecting the pod


@dataclass(frozen=True)
class Verdict:
    flow: Flow
    egress: Decision
    ingress: Decision

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    def explain(self) -> str:
        word = "ALLOW" if self.allowed else "DENY"
        return f"{word} {self.flow.describe()}: egress {self.egress.reason}; " \
               f"ingress {self.ingress.reason}"


def selects(policy: NetworkPolicy, pod: Pod) -> bool:
    """Does ``policy`` apply to ``pod`` (same namespace, spec.podSelector matches)?"""
    return policy.namespace == pod.namespace and policy.pod_selector.matches(pod.labels)


def peer_matches(cluster: ClusterView, policy: NetworkPolicy, peer: Peer, pod: Pod | None,
                 ip: str) -> bool:
    """Does the other end of a flow (``pod`` if it is one, and its ``ip``) match ``peer``?"""
    if peer.ip_block is not None:
        return peer.ip_block.contains(ipaddress.ip_address(ip))
    if pod is None:
        return False
    if peer.namespace_selector is None:
        ns_ok = pod.namespace == policy.namespace
    else:
        ns_ok = peer.namespace_selector.matches(cluster.namespace_labels(pod.namespace))
    return ns_ok and (peer.pod_selector is None or peer.pod_selector.matches(pod.labels))


def port_matches(pp: PolicyPort, protocol: Protocol, port: int, dst: Pod | None) -> bool:
    """Does a ``ports`` entry match the flow? Named ports resolve on ``dst``."""
    if pp.protocol != protocol:
        return False
    if pp.port is None:
        return True
    if isinstance(pp.port, str):
        return dst is not None and dst.resolve_port(pp.port, protocol) == port
    if pp.end_port is not None:
        return pp.port <= port <= pp.end_port
    return port == pp.port


def rule_matches(cluster: ClusterView, policy: NetworkPolicy, rule: Rule, peer_pod: Pod | None,
                 peer_ip: str, flow_protocol: Protocol, flow_port: int, dst: Pod | None) -> bool:
    peers_ok = not rule.peers or any(
        peer_matches(cluster, policy, p, peer_pod, peer_ip) for p in rule.peers)
    ports_ok = not rule.ports or any(
        port_matches(pp, flow_protocol, flow_port, dst) for pp in rule.ports)
    return peers_ok and ports_ok


def isolating_policies(cluster: ClusterView, pod: Pod, direction: Direction
                       ) -> list[NetworkPolicy]:
    """The policies of type ``direction`` that select ``pod``."""
    return [p for p in cluster.policies if direction in p.policy_types and selects(p, pod)]


def _resolve(cluster: ClusterView, end: Pod | str) -> tuple[Pod | None, str]:
    if isinstance(end, Pod):
        return end, end.ip
    return cluster.pod_by_ip(end), end


def decide(cluster: ClusterView, flow: Flow, direction: Direction) -> Decision:
    """Egress at the source or ingress at the destination, on its own."""
    src, src_ip = _resolve(cluster, flow.src)
    dst, dst_ip = _resolve(cluster, flow.dst)
    subject, peer, peer_ip = (dst, src, src_ip) if direction is Direction.INGRESS \
        else (src, dst, dst_ip)
    if subject is None:
        return Decision(direction, True, "not a pod: no policy applies")
    if direction is Direction.INGRESS and src is None and src_ip in cluster.node_ips:
        return Decision(direction, True, "from the pod's node: always allowed", subject.key)
    policies = isolating_policies(cluster, subject, direction)
    keys = tuple(p.key for p in policies)
    if not policies:
        return Decision(direction, True, f"{subject.key} not isolated for {direction.value}",
                        subject.key)
    for pol in policies:
        for i, rule in enumerate(pol.rules(direction)):
            if rule_matches(cluster, pol, rule, peer, peer_ip, flow.protocol, flow.port, dst):
                field = "ingress" if direction is Direction.INGRESS else "egress"
                return Decision(direction, True, f"allowed by {pol.key} spec.{field}[{i}]",
                                subject.key, pol.key, i, keys)
    return Decision(direction, False,
                    f"{subject.key} isolated by {', '.join(keys)} and no rule matches",
                    subject.key, None, None, keys)


def evaluate(cluster: ClusterView, flow: Flow) -> Verdict:
    """The verdict for one flow: egress at the source and ingress at the destination."""
    return Verdict(flow, decide(cluster, flow, Direction.EGRESS),
                   decide(cluster, flow, Direction.INGRESS))


def is_allowed(cluster: ClusterView, src: Pod | str, dst: Pod | str, protocol: Protocol,
               port: int) -> bool:
    return evaluate(cluster, Flow(src, dst, protocol, port)).allowed
