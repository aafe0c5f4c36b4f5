"""Warnings about policies that are valid but probably not what was meant.

A ``spec.podSelector`` that selects no pod, a peer whose selectors match no pod (or whose
``namespaceSelector`` matches no namespace), and a named port that no candidate pod defines
with the rule's protocol. Each warning is one line naming the policy and the field path.
"""

from __future__ import annotations

from k8s_fixtures.netpol.evaluator import peer_matches, selects
from k8s_fixtures.netpol.model import ClusterView, Direction, NetworkPolicy, Pod


def _peer_warnings(cluster: ClusterView, pol: NetworkPolicy, direction: Direction,
                   selected: list[Pod]) -> list[str]:
    out: list[str] = []
    field, peers_key = ("ingress", "from") if direction is Direction.INGRESS else ("egress", "to")
    for i, rule in enumerate(pol.rules(direction)):
        for j, peer in enumerate(rule.peers):
            path = f"spec.{field}[{i}].{peers_key}[{j}]"
            if peer.ip_block is not None:
                continue
            if peer.namespace_selector is not None and not any(
                peer.namespace_selector.matches(cluster.namespace_labels(ns))
                for ns in cluster.all_namespace_names()
            ):
                out.append(f"NetworkPolicy {pol.key}: {path}.namespaceSelector "
                           f"{peer.namespace_selector} matches no namespace")
            elif not any(peer_matches(cluster, pol, peer, p, p.ip) for p in cluster.pods):
                out.append(f"NetworkPolicy {pol.key}: {path} selects no pod")
        # Named ports resolve on the destination: the selected pods for ingress, any pod else.
        candidates = selected if direction is Direction.INGRESS else list(cluster.pods)
        for j, pp in enumerate(rule.ports):
            if isinstance(pp.port, str) and not any(
                p.resolve_port(pp.port, pp.protocol) is not None for p in candidates
            ):
                out.append(f"NetworkPolicy {pol.key}: spec.{field}[{i}].ports[{j}].port: "
                           f"no pod defines a {pp.protocol} port named {pp.port!r}")
    return out


def lint(cluster: ClusterView) -> list[str]:
    """Every warning for every policy of the view, in policy order."""
    out: list[str] = []
    known = set(cluster.all_namespace_names())
    for pol in cluster.policies:
        if pol.namespace not in {ns.name for ns in cluster.namespaces} and cluster.namespaces:
            out.append(f"NetworkPolicy {pol.key}: metadata.namespace {pol.namespace!r} "
                       f"is not a known namespace ({', '.join(sorted(known))})")
        selected = [p for p in cluster.pods if selects(pol, p)]
        if not selected:
            out.append(f"NetworkPolicy {pol.key}: spec.podSelector {pol.pod_selector} "
                       f"selects no pod in namespace {pol.namespace}")
        for d in (Direction.INGRESS, Direction.EGRESS):
            out.extend(_peer_warnings(cluster, pol, d, selected))
    return out
