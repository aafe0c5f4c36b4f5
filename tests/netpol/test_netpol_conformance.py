"""Conformance: the upstream e2e truth tables, from the evaluator and from the real kernel.

Every case of :mod:`netpol_cases` is checked twice: the pure evaluator against the hand-written
upstream expectation (no privileges), and real connections through nftables in network
namespaces against both (privileged). Loopback (a pod to itself) is not judged, as upstream.
"""

from __future__ import annotations

import time

import pytest
from netpol_cases import CASES, PODS, Case, Reach

from k8s_fixtures.netpol.e2emodel import ModelSpec
from k8s_fixtures.netpol.model import ClusterView
from k8s_fixtures.netpol.nft import DenyAction
from k8s_fixtures.netpol.parse import parse_documents
from k8s_fixtures.netpol.probe import NetnsModel
from k8s_fixtures.netpol.truthtable import TruthTable, expected_table

SPEC = ModelSpec(ports=(80, 81, 53))
FAKE_IPS = {k: f"10.244.0.{i + 2}" for i, k in enumerate(PODS)}


def _pure_view(case: Case) -> ClusterView:
    pols = parse_documents(case.policies(FAKE_IPS.__getitem__))
    return SPEC.view(FAKE_IPS.__getitem__, lambda _k: None, pols)


def _diff(table: TruthTable, reach: Reach) -> list[str]:
    return [f"{s} -> {d}: table {table.cells[(s, d)]}, upstream {v}"
            for (s, d), v in reach.cells.items() if s != d and table.cells[(s, d)] != v]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_evaluator_matches_upstream_expectation(case: Case) -> None:
    view = _pure_view(case)
    for protocol, port, reach in case.probes:
        table = expected_table(view, PODS, protocol, port)
        assert not _diff(table, reach), (protocol, port, _diff(table, reach))


@pytest.mark.privileged
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_matches_evaluator(model: NetnsModel, case: Case) -> None:
    model.apply(parse_documents(case.policies(model.ip_of)))
    for protocol, port, reach in case.probes:
        res = model.check(protocol, port, timeout=1.0)
        assert res.ok, res.report(case.name)
        assert not _diff(res.observed, reach), res.report(case.name)


@pytest.mark.privileged
def test_update_and_delete_take_effect(model: NetnsModel) -> None:
    deny_all = CASES[1]
    model.apply(parse_documents(deny_all.policies(model.ip_of)))
    res = model.check("TCP", 80)
    assert res.ok and not res.observed.get("x/a", "y/a"), res.report("deny-all")
    # Update: replace by a policy allowing x/a -> y only.
    nonempty = next(c for c in CASES if c.name == "egress-nonempty-defaults-ingress-and-egress")
    model.apply(parse_documents(nonempty.policies(model.ip_of)))
    res = model.check("TCP", 80)
    assert res.ok and res.observed.get("x/a", "y/a") and not res.observed.get("y/a", "x/a"), \
        res.report("updated")
    # Delete every policy: everything is reachable again, and the tables are gone.
    report = model.apply([])
    assert set(report.applied) == {"x/a"}  # only x/a had a table to remove
    res = model.check("TCP", 80)
    assert res.ok and all(res.observed.cells.values()), res.report("deleted")


def _assert_fast_denials(res_details: dict[tuple[str, str], dict[str, object]],
                         denied: list[tuple[str, str]], limit_ms: float) -> None:
    slow = {p: res_details[p] for p in denied if float(str(res_details[p]["ms"])) > limit_ms}
    assert not slow, slow


@pytest.mark.privileged
def test_reject_fails_fast_and_drop_times_out(model: NetnsModel) -> None:
    deny_all = CASES[1]  # x: deny ingress and egress
    pols = parse_documents(deny_all.policies(model.ip_of))
    model.apply(pols)
    for protocol in ("TCP", "UDP"):
        res = model.check(protocol, 80, timeout=2.0)
        assert res.ok, res.report("reject")
        denied = [k for k, v in res.observed.cells.items() if not v]
        assert len(denied) == 9 * 9 - 6 * 6 - 3  # rows/columns of x minus x's own loopback
        assert all(res.details[k]["error"] != "timeout" for k in denied)
        _assert_fast_denials(res.details, denied, limit_ms=500)
    model.set_deny_action(DenyAction.DROP)
    model.apply(pols)
    assert "reject" not in model.enforcer.applied["x/a"].table
    assert model.enforcer.metadata()["action"] == "drop"
    t0 = time.monotonic()
    res = model.check("TCP", 80, timeout=0.3)
    elapsed = time.monotonic() - t0
    assert res.ok, res.report("drop")
    denied = [k for k, v in res.observed.cells.items() if not v]
    assert denied and all(res.details[k]["error"] == "timeout" for k in denied)
    assert elapsed >= 0.3  # denials waited for the timeout: nothing answered them
    res = model.check("UDP", 80, timeout=0.3)
    assert res.ok, res.report("drop udp")


@pytest.mark.privileged
def test_model_cleans_up_its_namespaces() -> None:
    from k8s_fixtures.local.topology import netns_list

    m = NetnsModel(ModelSpec(namespaces=("x",), pods=("a",)))
    with m:
        pids = [a.proc.pid for a in m.agents.values()]
        assert any(ns.startswith(m.prefix) for ns in netns_list())
    assert not any(ns.startswith(m.prefix) for ns in netns_list())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            import os

            os.kill(pid, 0)
