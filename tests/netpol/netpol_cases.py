"""Truth-table cases on the upstream e2e model, with hand-written expectations.

Each case is a set of policies (a function of the pods' IPs, for ipBlock cases), and for each
probed (protocol, port) the reachability the upstream semantics demand, written the way the
upstream e2e suite writes it: everything reachable, then ``expect(from, to, False)`` overrides
where ``from``/``to`` are ``""`` (any pod), ``"x"`` (a namespace) or ``"x/a"`` (a pod).
``covers`` names the semantic points of the brief each case exercises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k8s_fixtures.netpol.model import Protocol

NAMESPACES = ("x", "y", "z")
PODS = [f"{ns}/{p}" for ns in NAMESPACES for p in ("a", "b", "c")]

IpOf = Callable[[str], str]


def _match(pattern: str, key: str) -> bool:
    return pattern == "" or pattern == key or pattern == key.split("/")[0]


class Reach:
    def __init__(self, default: bool = True) -> None:
        self.cells = {(s, d): default for s in PODS for d in PODS}

    def expect(self, frm: str, to: str, value: bool) -> Reach:
        for s, d in self.cells:
            if _match(frm, s) and _match(to, d):
                self.cells[(s, d)] = value
        return self


def np(name: str, ns: str, pod_selector: dict[str, Any] | None, *,
       ingress: list[Any] | None = None, egress: list[Any] | None = None,
       types: list[str] | None = None) -> dict[str, Any]:
    """A NetworkPolicy dict; ``None`` leaves a field out (absent differs from empty)."""
    spec: dict[str, Any] = {}
    if pod_selector is not None:
        spec["podSelector"] = pod_selector
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def pod(name: str) -> dict[str, Any]:
    return {"matchLabels": {"pod": name}}


def ns_is(name: str) -> dict[str, Any]:
    return {"matchLabels": {"ns": name}}


NOT_X = {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}


@dataclass
class Case:
    name: str
    policies: Callable[[IpOf], list[dict[str, Any]]]
    probes: list[tuple[Protocol, int, Reach]]
    covers: tuple[str, ...] = field(default_factory=tuple)


def _static(*pols: dict[str, Any]) -> Callable[[IpOf], list[dict[str, Any]]]:
    return lambda _ip: list(pols)


CASES: list[Case] = [
    Case("default-deny-ingress",
         _static(np("deny-ingress", "x", {})),
         [("TCP", 80, Reach().expect("", "x", False)),
          ("UDP", 80, Reach().expect("", "x", False))],
         ("default deny via empty podSelector", "policyTypes absent -> Ingress",
          "ingress absent = deny")),
    Case("default-deny-all-absent-podselector",
         _static(np("deny-all", "x", None, types=["Ingress", "Egress"])),
         [("TCP", 80, Reach().expect("", "x", False).expect("x", "", False))],
         ("explicit policyTypes Ingress+Egress", "absent spec.podSelector = {}")),
    Case("egress-empty-list-is-not-egress",
         _static(np("deny-ingress-only", "x", {}, egress=[])),
         [("TCP", 80, Reach().expect("", "x", False))],
         ("policyTypes defaulting: egress: [] does not add Egress",)),
    Case("egress-nonempty-defaults-ingress-and-egress",
         _static(np("a-to-y", "x", pod("a"),
                    egress=[{"to": [{"namespaceSelector": ns_is("y")}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("x/a", "", False)
           .expect("x/a", "y", True))],
         ("policyTypes defaulting: non-empty egress adds Egress, Ingress always",)),
    Case("podselector-alone-is-policy-namespace",
         _static(np("x-a-from-b", "x", pod("a"), ingress=[{"from": [{"podSelector": pod("b")}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("x/b", "x/a", True))],
         ("podSelector alone = policy's namespace",)),
    Case("namespaceselector",
         _static(np("x-a-from-y", "x", pod("a"),
                    ingress=[{"from": [{"namespaceSelector": ns_is("y")}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("y", "x/a", True))],
         ("namespaceSelector matchLabels",)),
    Case("ns-and-pod-selector-in-one-peer-is-and",
         _static(np("x-a-from-b-not-x", "x", pod("a"), ingress=[
             {"from": [{"namespaceSelector": NOT_X, "podSelector": pod("b")}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("y/b", "x/a", True)
           .expect("z/b", "x/a", True))],
         ("namespaceSelector+podSelector in one peer = AND", "matchExpressions NotIn")),
    Case("separate-peers-are-or",
         _static(np("x-a-from-not-x-or-b", "x", pod("a"), ingress=[
             {"from": [{"namespaceSelector": NOT_X}, {"podSelector": pod("b")}]}])),
         [("TCP", 80, Reach().expect("x", "x/a", False).expect("x/b", "x/a", True))],
         ("separate peers = OR",)),
    Case("namespaceselector-empty-is-all-namespaces",
         _static(np("deny-ingress", "x", {}),
                 np("x-a-from-all-ns", "x", pod("a"),
                    ingress=[{"from": [{"namespaceSelector": {}}]}])),
         [("TCP", 80, Reach().expect("", "x", False).expect("", "x/a", True))],
         ("namespaceSelector {} = all namespaces", "union of policies, allow wins")),
    Case("namespaceselector-empty-matchlabels-and-pod",
         _static(np("x-a-from-c-anywhere", "x", pod("a"), ingress=[
             {"from": [{"namespaceSelector": {"matchLabels": {}}, "podSelector": pod("c")}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("x/c", "x/a", True)
           .expect("y/c", "x/a", True).expect("z/c", "x/a", True))],
         ("namespaceSelector {matchLabels: {}} + podSelector: pods in every namespace",)),
    Case("podselector-empty-is-all-pods-of-own-namespace",
         _static(np("x-a-from-x", "x", pod("a"), ingress=[{"from": [{"podSelector": {}}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("x", "x/a", True))],
         ("empty podSelector peer = all pods of the policy's namespace",)),
    Case("match-expressions-exists-doesnotexist-notin",
         _static(
             np("x-a", "x", pod("a"), ingress=[{"from": [{
                 "namespaceSelector": {"matchLabels": {"ns": "z"},
                                       "matchExpressions": [{"key": "ns", "operator": "Exists"}]},
                 "podSelector": {"matchExpressions": [
                     {"key": "pod", "operator": "NotIn", "values": ["a"]}]}}]}]),
             np("x-b-nobody", "x", pod("b"), ingress=[{"from": [{
                 "namespaceSelector": {},
                 "podSelector": {"matchExpressions": [
                     {"key": "pod", "operator": "DoesNotExist"}]}}]}]),
             np("x-c-team-notin", "x", pod("c"), ingress=[{"from": [{
                 "namespaceSelector": {"matchExpressions": [
                     {"key": "team", "operator": "NotIn", "values": ["blue"]}]},
                 "podSelector": {"matchExpressions": [
                     {"key": "pod", "operator": "In", "values": ["a"]}]}}]}]),
         ),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("z/b", "x/a", True)
           .expect("z/c", "x/a", True).expect("", "x/b", False)
           .expect("", "x/c", False).expect("x/a", "x/c", True).expect("y/a", "x/c", True)
           .expect("z/a", "x/c", True))],
         ("matchLabels AND matchExpressions", "In", "NotIn (absent key matches)", "Exists",
          "DoesNotExist", "selector matching nothing isolates")),
    Case("automatic-metadata-name-label",
         _static(np("x-a-from-z", "x", pod("a"), ingress=[{"from": [{"namespaceSelector": {
             "matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("z", "x/a", True))],
         ("kubernetes.io/metadata.name namespace label",)),
    Case("empty-vs-absent-from-and-ports",
         _static(
             np("x-a-absent-from", "x", pod("a"), ingress=[{"ports": [{"port": 81}]}]),
             np("x-b-empty-from", "x", pod("b"), ingress=[{"from": [], "ports": [{"port": 81}]}]),
             np("x-c-empty-ports", "x", pod("c"),
                ingress=[{"from": [{"namespaceSelector": ns_is("y")}], "ports": []}]),
             np("y-a-empty-rule", "y", pod("a"), ingress=[{}]),
         ),
         [("TCP", 81, Reach().expect("", "x/c", False).expect("y", "x/c", True)),
          ("TCP", 80, Reach().expect("", "x", False).expect("y", "x/c", True)),
          ("UDP", 81, Reach().expect("", "x", False).expect("y", "x/c", True))],
         ("absent from = all sources", "empty from = all sources",
          "empty ports = all ports/protocols", "ingress: [{}] = allow all")),
    Case("ipblock-matches-pod-ip-egress",
         lambda ip: [np("x-a-to-yb", "x", pod("a"), types=["Egress"],
                        egress=[{"to": [{"ipBlock": {"cidr": f"{ip('y/b')}/32"}}]}])],
         [("TCP", 80, Reach().expect("x/a", "", False).expect("x/a", "y/b", True))],
         ("ipBlock matches pod IPs (egress)",)),
    Case("ipblock-except",
         lambda ip: [np("x-a-to-all-but-xb", "x", pod("a"), types=["Egress"], egress=[{"to": [
             {"ipBlock": {"cidr": f"{ip('x/a')}/16", "except": [f"{ip('x/b')}/32"]}}]}])],
         [("TCP", 80, Reach().expect("x/a", "x/b", False))],
         ("ipBlock with except",)),
    Case("ipblock-ingress",
         lambda ip: [np("x-a-from-zc-ip", "x", pod("a"),
                        ingress=[{"from": [{"ipBlock": {"cidr": f"{ip('z/c')}/32"}}]}])],
         [("TCP", 80, Reach().expect("", "x/a", False).expect("z/c", "x/a", True))],
         ("ipBlock matches pod IPs (ingress)",)),
    Case("union-of-policies",
         _static(np("x-a-from-y", "x", pod("a"),
                    ingress=[{"from": [{"namespaceSelector": ns_is("y")}]}]),
                 np("x-a-from-z", "x", pod("a"),
                    ingress=[{"from": [{"namespaceSelector": ns_is("z")}]}])),
         [("TCP", 80, Reach().expect("x", "x/a", False))],
         ("union of all policies selecting a pod",)),
    Case("protocol-defaults-to-tcp",
         _static(np("x-a-port-80", "x", pod("a"), ingress=[{"ports": [{"port": 80}]}])),
         [("TCP", 80, Reach()), ("UDP", 80, Reach().expect("", "x/a", False))],
         ("protocol defaults to TCP",)),
    Case("udp-rule-does-not-open-tcp",
         _static(np("x-a-udp-81", "x", pod("a"),
                    ingress=[{"ports": [{"protocol": "UDP", "port": 81}]}])),
         [("TCP", 81, Reach().expect("", "x/a", False)), ("UDP", 81, Reach())],
         ("UDP rule must not open TCP",)),
    Case("sctp-rule-does-not-open-tcp",
         _static(np("deny-ingress", "x", {}),
                 np("x-a-sctp-81", "x", pod("a"),
                    ingress=[{"ports": [{"protocol": "SCTP", "port": 81}]}])),
         [("TCP", 81, Reach().expect("", "x", False)),
          ("UDP", 81, Reach().expect("", "x", False))],
         ("SCTP rule must not open TCP/UDP",)),
    Case("named-port-ingress",
         _static(np("x-named-81", "x", {}, ingress=[{"ports": [{"port": "serve-81-tcp"}]}])),
         [("TCP", 81, Reach()), ("TCP", 80, Reach().expect("", "x", False)),
          ("UDP", 81, Reach().expect("", "x", False))],
         ("named port resolved on the destination (ingress)",)),
    Case("named-port-protocol-must-match",
         _static(np("x-a-tcp-name-as-udp", "x", pod("a"),
                    ingress=[{"ports": [{"port": "serve-80-tcp", "protocol": "UDP"}]}]),
                 np("x-b-udp-name", "x", pod("b"),
                    ingress=[{"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}])),
         [("UDP", 80, Reach().expect("", "x/a", False)),
          ("TCP", 80, Reach().expect("", "x/a", False).expect("", "x/b", False))],
         ("named port needs the rule's protocol", "UDP named port")),
    Case("named-port-egress",
         _static(np("x-egress-named-80", "x", {}, types=["Egress"],
                    egress=[{"ports": [{"port": "serve-80-tcp"}]}])),
         [("TCP", 80, Reach()), ("TCP", 81, Reach().expect("x", "", False))],
         ("named port resolved on the destination (egress)",)),
    Case("endport-range",
         _static(np("x-a-y-80-81", "x", pod("a"), ingress=[{
                     "from": [{"namespaceSelector": ns_is("y")}],
                     "ports": [{"port": 80, "endPort": 81}]}]),
                 np("x-b-81-90", "x", pod("b"),
                    ingress=[{"ports": [{"port": 81, "endPort": 90}]}])),
         [("TCP", 80, Reach().expect("", "x/a", False).expect("y", "x/a", True)
           .expect("", "x/b", False)),
          ("TCP", 81, Reach().expect("", "x/a", False).expect("y", "x/a", True))],
         ("endPort ranges",)),
    Case("egress-deny-wins-over-ingress-allow",
         _static(np("x-a-no-egress", "x", pod("a"), types=["Egress"]),
                 np("y-b-allow-all", "y", pod("b"), ingress=[{}]),
                 np("x-b-no-ingress", "x", pod("b"), types=["Ingress"])),
         [("TCP", 80, Reach().expect("x/a", "", False).expect("", "x/b", False))],
         ("ingress and egress decided independently", "client egress deny wins")),
    Case("dns-egress",
         _static(np("x-dns-only", "x", {}, types=["Egress"], egress=[{
             "to": [{"namespaceSelector": ns_is("z"), "podSelector": pod("c")}],
             "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}])),
         [("UDP", 53, Reach().expect("x", "", False).expect("x", "z/c", True)),
          ("TCP", 53, Reach().expect("x", "", False).expect("x", "z/c", True)),
          ("TCP", 80, Reach().expect("x", "", False))],
         ("DNS egress UDP+TCP 53 to a labelled pod in another namespace",)),
    Case("egress-allow-all-takes-precedence",
         _static(np("x-egress-80", "x", {}, types=["Egress"], egress=[{"ports": [{"port": 80}]}]),
                 np("x-egress-all", "x", {}, types=["Egress"], egress=[{}])),
         [("TCP", 81, Reach())],
         ("union, allow wins (egress)",)),
]
