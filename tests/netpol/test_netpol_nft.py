"""The nftables compiler: rendered rulesets, the enforcer's bookkeeping, and nft itself."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from netpol_cases import np, pod

from k8s_fixtures.local.topology import netns_exec
from k8s_fixtures.netpol.model import ClusterView, ContainerPort, Namespace, Pod
from k8s_fixtures.netpol.nft import (
    TABLE,
    DenyAction,
    Enforcer,
    apply_ruleset,
    compile_cluster,
    compile_pod,
    denied,
    remove_ruleset,
)
from k8s_fixtures.netpol.parse import parse_documents
from k8s_fixtures.netpol.probe import NetnsModel

PORTS = (ContainerPort("http", 8080, "TCP"),)
A = Pod("x", "a", "10.0.0.2", {"pod": "a"}, PORTS, netns="ns-a")
B = Pod("x", "b", "10.0.0.3", {"pod": "b"}, (ContainerPort("http", 9090, "TCP"),), netns="ns-b")
C = Pod("y", "c", "10.0.0.4", {"pod": "c"}, PORTS, netns=None)


def view(*pols: dict[str, Any]) -> ClusterView:
    return ClusterView((Namespace("x"), Namespace("y")), (A, B, C), tuple(parse_documents(pols)),
                       ("10.0.0.1",))


def test_unselected_pod_gets_no_table() -> None:
    rs = compile_pod(view(), A)
    assert rs.table == "" and not rs.ingress_isolated and not rs.egress_isolated
    assert rs.script == f"table inet {TABLE}\ndelete table inet {TABLE}\n"


def test_chains_only_for_isolated_directions_and_deny_action() -> None:
    v = view(np("in", "x", pod("a"), ingress=[{"from": [{"podSelector": pod("b")}],
                                               "ports": [{"port": "http"}]}]))
    rs = compile_pod(v, A)
    assert "chain input" in rs.table and "chain output" not in rs.table
    assert "policy drop;" in rs.table and "ct state established,related accept" in rs.table
    assert 'iif "lo" accept' in rs.table and "ct original ip saddr 10.0.0.1 accept" in rs.table
    assert ("ct original ip saddr 10.0.0.3 "
            "meta l4proto tcp ct original proto-dst 8080 accept") in rs.table
    assert "reject with tcp reset" in rs.table and rs.deny_action is DenyAction.REJECT
    dropped = compile_pod(v, A, DenyAction.DROP)
    assert "reject" not in dropped.table and dropped.deny_action is DenyAction.DROP


def test_egress_named_port_resolves_per_destination() -> None:
    v = view(np("out", "x", pod("a"), types=["Egress"], egress=[{"ports": [{"port": "http"}]}]))
    table = compile_pod(v, A).table
    assert ("ct original ip daddr { 10.0.0.2, 10.0.0.4 } "
            "meta l4proto tcp ct original proto-dst 8080 accept") in table
    assert ("ct original ip daddr 10.0.0.3 "
            "meta l4proto tcp ct original proto-dst 9090 accept") in table


def test_ipblock_except_endport_and_empty_selector_sets() -> None:
    v = view(np("out", "x", pod("a"), types=["Egress"], egress=[
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.3/32"]}}],
         "ports": [{"port": 80, "endPort": 90, "protocol": "UDP"}]},
        {"to": [{"podSelector": pod("nobody")}]},  # matches nothing: no rule at all
    ]))
    table = compile_pod(v, A).table
    assert ("ct original ip daddr 10.0.0.0/24 ct original ip daddr != 10.0.0.3/32 "
            "meta l4proto udp ct original proto-dst 80-90 accept") in table
    assert "spec.egress[1]" not in table


class FakeNft:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, netns: str, script: str) -> None:
        self.calls.append((netns, script))


def test_enforcer_applies_only_changes_and_removes_gone_pods() -> None:
    fake = FakeNft()
    enf = Enforcer(runner=fake)
    rep = enf.sync(view(np("deny", "x", {})))
    assert sorted(rep.applied) == ["x/a", "x/b"]  # y/c has no netns: skipped
    rep = enf.sync(view(np("deny", "x", {})))
    assert rep.applied == [] and sorted(rep.unchanged) == ["x/a", "x/b"]
    rep = enf.sync(view(np("deny", "x", pod("b"))))
    assert rep.applied == ["x/a"]  # x/a loses its table, x/b keeps the same one
    assert fake.calls[-1] == ("ns-a", f"table inet {TABLE}\ndelete table inet {TABLE}\n")
    rep = enf.sync(ClusterView((), (A,), ()))
    assert rep.removed == ["x/b"]
    assert enf.metadata()["action"] == "reject"
    assert set(compile_cluster(view())) == {"x/a", "x/b", "y/c"}


@pytest.mark.privileged
def test_nft_apply_is_atomic_idempotent_and_removable(model: NetnsModel) -> None:
    pols = parse_documents([np("deny", "x", {}, types=["Ingress", "Egress"])])
    rs = compile_pod(model.view(pols), model.view(pols).pod("x/a"))
    ns = model.netns_of("x/a")

    def tables() -> list[str]:
        out = subprocess.run(netns_exec(ns, "nft", "list", "tables"), capture_output=True,
                             text=True, check=True).stdout
        return [line for line in out.splitlines() if TABLE in line]

    try:
        apply_ruleset(rs)
        apply_ruleset(rs)
        assert tables() == [f"table inet {TABLE}"]
        listed = subprocess.run(netns_exec(ns, "nft", "list", "table", "inet", TABLE),
                                capture_output=True, text=True, check=True).stdout
        assert "hook input" in listed and "hook output" in listed
        remove_ruleset(ns)
        remove_ruleset(ns)  # removing twice is fine
        assert tables() == []
    finally:
        remove_ruleset(ns)


def _denied(ns: str) -> dict[str, int]:
    out = subprocess.run(netns_exec(ns, "nft", "-j", "list", "counters", "table", "inet", TABLE),
                         capture_output=True, text=True)
    return denied(out.stdout if out.returncode == 0 else "")


@pytest.mark.privileged
@pytest.mark.parametrize("action", [DenyAction.REJECT, DenyAction.DROP])
def test_deny_rules_count_and_the_count_survives_a_changed_ruleset(
    model: NetnsModel, action: DenyAction
) -> None:
    """Every refusal counts into the pod's denied_<direction> counter, in both deny modes, and
    a peer change (which re-applies the table) or a direction no longer isolated keeps it."""
    model.set_deny_action(action)
    ns_a = model.netns_of("x/a")
    model.apply(parse_documents([np("deny", "x", pod("a"), types=["Ingress", "Egress"])]))
    assert _denied(ns_a) == {"ingress": 0, "egress": 0}
    model.probe_pairs([("x/a", "x/b"), ("x/b", "x/a")], "TCP", 80, 0.5)
    first = _denied(ns_a)
    assert first["egress"] >= 1 and first["ingress"] >= 1, first
    # a new rule: x/a's table changes (re-applied), its counters must not start again at 0
    model.apply(parse_documents([
        np("deny", "x", pod("a"), types=["Ingress", "Egress"]),
        np("to-b", "x", pod("a"), types=["Egress"], egress=[{"to": [{"podSelector": pod("b")}]}]),
    ]))
    assert _denied(ns_a) == first
    res = model.probe_pairs([("x/a", "x/b"), ("x/a", "y/c")], "TCP", 80, 0.5)
    assert res[("x/a", "x/b")]["ok"] and not res[("x/a", "y/c")]["ok"], res
    second = _denied(ns_a)
    assert second["egress"] > first["egress"] and second["ingress"] == first["ingress"], second
    # egress no longer isolated: its chain goes, the counters stay
    model.apply(parse_documents([np("deny", "x", pod("a"), types=["Ingress"])]))
    listed = subprocess.run(netns_exec(ns_a, "nft", "list", "table", "inet", TABLE),
                            capture_output=True, text=True, check=True).stdout
    assert "hook output" not in listed and "hook input" in listed, listed
    assert _denied(ns_a) == second


def test_denied_reads_nothing_from_no_table() -> None:
    assert denied("") == {"ingress": 0, "egress": 0}
