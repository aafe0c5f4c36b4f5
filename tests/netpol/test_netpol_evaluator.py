"""The pure evaluator and parser: defaulting, verdict details, external IPs, errors, warnings."""

from __future__ import annotations

from typing import Any

import pytest
from netpol_cases import np, pod

from k8s_fixtures.netpol.evaluator import evaluate, is_allowed
from k8s_fixtures.netpol.lint import lint
from k8s_fixtures.netpol.model import (
    ClusterView,
    ContainerPort,
    Direction,
    Flow,
    Namespace,
    Pod,
)
from k8s_fixtures.netpol.parse import PolicyError, load_policy_text, parse_documents, parse_policy

PORTS = (ContainerPort("http", 8080, "TCP"), ContainerPort("dns", 53, "UDP"))
A = Pod("x", "a", "10.0.0.2", {"pod": "a"}, PORTS)
B = Pod("x", "b", "10.0.0.3", {"pod": "b"}, PORTS)
C = Pod("y", "c", "10.0.0.4", {"pod": "c"}, PORTS)


def view(*pols: dict[str, Any], node_ips: tuple[str, ...] = ()) -> ClusterView:
    return ClusterView((Namespace("x", {"ns": "x"}), Namespace("y", {"ns": "y"})), (A, B, C),
                       tuple(parse_documents(pols)), node_ips)


@pytest.mark.parametrize(("spec", "types"), [
    ({}, {"Ingress"}),
    ({"ingress": [{}]}, {"Ingress"}),
    ({"egress": []}, {"Ingress"}),  # len(egress) == 0: no Egress (SetDefaults_NetworkPolicy)
    ({"egress": [{}]}, {"Ingress", "Egress"}),
    ({"policyTypes": [], "egress": [{}]}, {"Ingress", "Egress"}),  # empty list = absent
    ({"policyTypes": ["Egress"]}, {"Egress"}),
])
def test_policy_types_defaulting(spec: dict[str, Any], types: set[str]) -> None:
    pol = parse_policy({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": "p", "namespace": "x"},
                        "spec": {"podSelector": {}, **spec}})
    assert {t.value for t in pol.policy_types} == types


def test_port_protocol_defaults_to_tcp_and_namespace_default() -> None:
    pol = parse_policy(np("p", "x", {}, ingress=[{"ports": [{"port": 80}]}]) | {
        "metadata": {"name": "p"}}, default_namespace="run-1")
    assert pol.namespace == "run-1" and pol.ingress[0].ports[0].protocol == "TCP"


def test_verdict_names_deciding_policy_and_rule() -> None:
    v = view(np("deny", "x", {}),
             np("allow-c", "x", pod("a"), ingress=[
                 {"from": [{"podSelector": pod("b")}]},
                 {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]))
    verdict = evaluate(v, Flow(C, A, "TCP", 8080))
    assert verdict.allowed
    assert (verdict.ingress.policy, verdict.ingress.rule) == ("x/allow-c", 1)
    assert verdict.ingress.isolating == ("x/deny", "x/allow-c")
    assert verdict.egress.allowed and verdict.egress.policy is None  # y/c is not isolated
    denied = evaluate(v, Flow(C, B, "TCP", 8080))
    assert not denied.allowed and denied.ingress.isolating == ("x/deny",)
    assert "x/deny" in denied.explain() and denied.ingress.direction is Direction.INGRESS


def test_egress_deny_at_source_wins_over_ingress_allow() -> None:
    v = view(np("no-egress", "x", pod("a"), types=["Egress"]),
             np("all-in", "y", {}, ingress=[{}]))
    verdict = evaluate(v, Flow(A, C, "TCP", 8080))
    assert verdict.ingress.allowed and not verdict.egress.allowed and not verdict.allowed


def test_external_ips_ipblock_except_and_named_ports() -> None:
    v = view(np("egress", "x", pod("a"), types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]},
        {"ports": [{"port": "http"}]},  # named: matches pods only, resolved on the destination
    ]))
    assert is_allowed(v, A, "192.0.2.10", "UDP", 9)
    assert not is_allowed(v, A, "192.0.2.200", "TCP", 80)  # excepted
    assert not is_allowed(v, A, "198.51.100.1", "TCP", 8080)  # named port: not a pod
    assert is_allowed(v, A, C, "TCP", 8080)  # named port resolved on y/c
    assert not is_allowed(v, A, C, "TCP", 80)
    assert is_allowed(v, A, "10.0.0.4", "TCP", 8080)  # a pod's IP is that pod
    # an external source has no egress policy; ingress into an unisolated pod is open
    assert evaluate(v, Flow("198.51.100.1", A, "TCP", 1)).egress.reason.startswith("not a pod")


def test_ipblock_matches_pod_ips_for_ingress() -> None:
    v = view(np("in", "x", pod("a"), ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.4/32"}}]}]))
    assert is_allowed(v, C, A, "TCP", 1) and not is_allowed(v, B, A, "TCP", 1)


def test_node_traffic_is_always_allowed_in() -> None:
    v = view(np("deny", "x", {}), node_ips=("10.0.0.1",))
    assert is_allowed(v, "10.0.0.1", A, "TCP", 8080)
    assert not is_allowed(v, "10.0.0.9", A, "TCP", 8080)


def test_dns_egress_udp_and_tcp_53() -> None:
    dns = Pod("kube-system", "coredns", "10.0.0.10", {"k8s-app": "kube-dns"},
              (ContainerPort("dns", 53, "UDP"), ContainerPort("dns-tcp", 53, "TCP")))
    pols = parse_documents([np("deny", "x", {}, types=["Ingress", "Egress"]),
                            np("dns", "x", {}, types=["Egress"], egress=[{
                                "to": [{"namespaceSelector": {"matchLabels": {
                                    "kubernetes.io/metadata.name": "kube-system"}},
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                                "ports": [{"protocol": "UDP", "port": 53},
                                          {"protocol": "TCP", "port": 53}]}])])
    v = ClusterView((Namespace("x"), Namespace("kube-system")), (A, dns), tuple(pols))
    assert is_allowed(v, A, dns, "UDP", 53) and is_allowed(v, A, dns, "TCP", 53)
    assert not is_allowed(v, A, dns, "TCP", 80)
    assert not is_allowed(v, A, "8.8.8.8", "UDP", 53)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"podSelector": {}, "ingres": []}, "spec.ingres: unsupported field"),
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: must specify a peer"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "spec.ingress[0].from[0]: ipBlock may not be combined"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0/33"}}]}]},
     "spec.egress[0].to[0].ipBlock.cidr: invalid CIDR"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/24"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]: 11.0.0.0/24 must be a strict subset"),
    ({"ingress": [{"ports": [{"port": 80, "endPort": 79}]}]}, "spec.ingress[0].ports[0].endPort"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
     "spec.ingress[0].ports[0].endPort: requires a numeric port"),
    ({"ingress": [{"ports": [{"endPort": 90}]}]}, "endPort: requires a numeric port"),
    ({"ingress": [{"ports": [{"port": "80"}]}]}, "ports[0].port: '80' is not a valid port name"),
    ({"ingress": [{"ports": [{"port": 0}]}]}, "ports[0].port: 0 is not a valid port number"),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "ports[0].protocol: unsupported protocol"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}},
     "spec.podSelector.matchExpressions[0].operator: unsupported operator 'Gt'"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "matchExpressions[0].values: must be non-empty for operator In"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
     "matchExpressions[0].values: must be empty for operator Exists"),
    ({"podSelector": {"matchLabels": {"v": 1}}}, "spec.podSelector.matchLabels.v: expected a str"),
    ({"policyTypes": ["Ingress", "Both"]}, "spec.policyTypes[1]: unsupported value 'Both'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_malformed_policies_name_object_and_field(spec: dict[str, Any], message: str) -> None:
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "bad", "namespace": "x"}, "spec": spec}
    with pytest.raises(PolicyError) as info:
        parse_policy(obj)
    text = str(info.value)
    assert text.startswith("NetworkPolicy x/bad: ") and message in text
    assert "\n" not in text


def test_wrong_kind_and_missing_name() -> None:
    with pytest.raises(PolicyError, match=r"NetworkPolicy x/p: apiVersion: expected"):
        parse_policy({"apiVersion": "v1", "kind": "NetworkPolicy",
                      "metadata": {"name": "p", "namespace": "x"}})
    with pytest.raises(PolicyError, match=r"NetworkPolicy x/\?: metadata.name: required"):
        parse_policy({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                      "metadata": {"namespace": "x"}})


def test_names_must_be_dns1123() -> None:
    base = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    with pytest.raises(PolicyError, match=r"metadata.name: 'Bad\"Name' is not a DNS-1123"):
        parse_policy({**base, "metadata": {"name": 'Bad"Name', "namespace": "x"}})
    with pytest.raises(PolicyError, match=r"metadata.namespace: 'X_1' is not a DNS-1123 label"):
        parse_policy({**base, "metadata": {"name": "ok", "namespace": "X_1"}})


def test_yaml_text_and_lists() -> None:
    pols = load_policy_text("""
apiVersion: v1
kind: List
items:
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a}, spec: {}}
---
{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: b}}
""", default_namespace="run")
    assert [p.key for p in pols] == ["run/a", "run/b"]


def test_warnings_for_selectors_matching_nothing() -> None:
    v = view(np("ghost", "x", pod("zzz")),
             np("peers", "x", pod("a"), ingress=[
                 {"from": [{"podSelector": pod("nobody")},
                           {"namespaceSelector": {"matchLabels": {"ns": "nowhere"}}},
                           {"podSelector": pod("b")}],
                  "ports": [{"port": "nope"}]}]))
    warnings = lint(v)
    assert any(w.startswith("NetworkPolicy x/ghost: spec.podSelector {pod=zzz} selects no pod")
               for w in warnings)
    assert any("x/peers: spec.ingress[0].from[0] selects no pod" in w for w in warnings)
    assert any("x/peers: spec.ingress[0].from[1].namespaceSelector {ns=nowhere} matches no "
               "namespace" in w for w in warnings)
    assert any("spec.ingress[0].ports[0].port: no pod defines a TCP port named 'nope'" in w
               for w in warnings)
    assert not any("from[2]" in w for w in warnings)
    assert lint(view(np("fine", "x", pod("a"), ingress=[{"from": [{"podSelector": pod("b")}]}]))
                ) == []
