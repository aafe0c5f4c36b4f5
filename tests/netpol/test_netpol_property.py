"""Property: for generated policies and flows, the real kernel agrees with the pure evaluator.

One 9-pod model (network namespaces, nftables, real TCP/UDP connections) is reused across all
examples; each example applies 1-3 generated policies and probes all 81 ordered pairs on TCP and
UDP 80 and 81. Policies are generated as templates (ipBlocks name pods) and materialised
with the model's real pod IPs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netpol_cases import PODS

from k8s_fixtures.netpol.model import Protocol
from k8s_fixtures.netpol.parse import parse_documents
from k8s_fixtures.netpol.probe import NetnsModel

NS = ["x", "y", "z"]
POD_NAMES = ["a", "b", "c"]


def _expr(key: str, values: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda v: {"key": key, "operator": "In", "values": v},
                  st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True)),
        st.builds(lambda v: {"key": key, "operator": "NotIn", "values": v},
                  st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True)),
        st.sampled_from([{"key": key, "operator": "Exists"},
                         {"key": key, "operator": "DoesNotExist"},
                         {"key": "team", "operator": "NotIn", "values": ["blue"]}]),
    )


def _selector(key: str, values: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.just({}),
        st.builds(lambda v: {"matchLabels": {key: v}}, st.sampled_from(values)),
        st.builds(lambda e: {"matchExpressions": [e]}, _expr(key, values)),
    )


POD_SEL = _selector("pod", POD_NAMES)
NS_SEL = st.one_of(_selector("ns", NS), _selector("kubernetes.io/metadata.name", NS))

PEER = st.one_of(
    st.builds(lambda p: {"podSelector": p}, POD_SEL),
    st.builds(lambda n: {"namespaceSelector": n}, NS_SEL),
    st.builds(lambda n, p: {"namespaceSelector": n, "podSelector": p}, NS_SEL, POD_SEL),
    st.builds(lambda k: {"ipBlock": {"pod": k}}, st.sampled_from(PODS)),
    st.builds(lambda k: {"ipBlock": {"except": k}}, st.sampled_from(PODS)),
)

PORT = st.one_of(
    st.just({}),
    st.builds(lambda p: {"port": p}, st.sampled_from([80, 81])),
    st.just({"port": 80, "endPort": 81}),
    st.builds(lambda n: {"port": n},
              st.sampled_from(["serve-80-tcp", "serve-81-tcp", "serve-80-udp", "serve-81-udp"])),
).flatmap(lambda p: st.one_of(
    st.just(p), st.builds(lambda proto: {**p, "protocol": proto},
                          st.sampled_from(["TCP", "UDP", "SCTP"]))))


def _rule(peers_key: str) -> st.SearchStrategy[dict[str, Any]]:
    peers = st.one_of(st.none(), st.lists(PEER, max_size=2))
    ports = st.one_of(st.none(), st.lists(PORT, max_size=2))
    return st.builds(
        lambda pe, po: {k: v for k, v in ((peers_key, pe), ("ports", po)) if v is not None},
        peers, ports)


# Mostly one rule: policies that isolate and then allow a little tell most about the rules.
RULES_IN = st.one_of(st.none(), st.lists(_rule("from"), max_size=1), st.lists(_rule("from"),
                                                                             max_size=2))
RULES_OUT = st.one_of(st.none(), st.lists(_rule("to"), max_size=1), st.lists(_rule("to"),
                                                                            max_size=2))
PROBES: list[tuple[Protocol, int]] = [("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)]
TYPES = st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"]])


@st.composite
def policy(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": draw(POD_SEL)}
    for key, value in (("policyTypes", draw(TYPES)), ("ingress", draw(RULES_IN)),
                       ("egress", draw(RULES_OUT))):
        if value is not None:
            spec[key] = value
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": draw(st.sampled_from(NS))}, "spec": spec}


def materialise(pols: list[dict[str, Any]], model: NetnsModel) -> list[dict[str, Any]]:
    """Give policies unique names and turn ipBlock templates into real CIDRs."""
    def fix(obj: Any) -> Any:
        if isinstance(obj, list):
            return [fix(x) for x in obj]
        if not isinstance(obj, dict):
            return obj
        if "ipBlock" in obj:
            tpl = obj["ipBlock"]
            if "pod" in tpl:
                return {"ipBlock": {"cidr": f"{model.ip_of(tpl['pod'])}/32"}}
            net = f"{model.ip_of(PODS[0])}/24"
            return {"ipBlock": {"cidr": net, "except": [f"{model.ip_of(tpl['except'])}/32"]}}
        return {k: fix(v) for k, v in obj.items()}

    out = []
    for i, p in enumerate(pols):
        q = fix(p)
        q["metadata"] = {**q["metadata"], "name": f"p{i}"}
        out.append(q)
    return out


@pytest.mark.privileged
@pytest.mark.slow
@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pols=st.lists(policy(), min_size=1, max_size=3))
def test_kernel_agrees_with_evaluator(netns_model: NetnsModel, pols: list[dict[str, Any]]
                                      ) -> None:
    policies = parse_documents(materialise(pols, netns_model))
    try:
        netns_model.apply(policies)
        for protocol, port in PROBES:
            res = netns_model.check(protocol, port, timeout=1.0)
            assert res.ok, res.report(f"policies {[p.key for p in policies]}") + f"\n{pols}"
    finally:
        netns_model.apply([])
