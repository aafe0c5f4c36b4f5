"""The shipped FL policy set (SEC1/SEC3): the evaluator on an FL-shaped cluster, then the kernel."""

from __future__ import annotations

import pytest

from k8s_fixtures.netpol.e2emodel import ClusterPlan, PlannedPod
from k8s_fixtures.netpol.evaluator import evaluate, is_allowed
from k8s_fixtures.netpol.lint import lint
from k8s_fixtures.netpol.model import (
    ClusterView,
    ContainerPort,
    Flow,
    Namespace,
    Pod,
    Protocol,
)
from k8s_fixtures.netpol.parse import load_policies
from k8s_fixtures.netpol.probe import NetnsModel
from k8s_fixtures.policies import policy_path

RUN = "ztfl-run-sec3"
COMP = "app.kubernetes.io/component"
SERVER = Pod(RUN, "fl-server", "10.244.0.2", {COMP: "fl-server", "ztfl.io/fl-role": "server"},
             (ContainerPort("grpc", 50051, "TCP"),))
CLIENT1 = Pod(RUN, "fl-client-0", "10.244.0.3", {COMP: "fl-client", "ztfl.io/fl-role": "client"})
CLIENT2 = Pod(RUN, "fl-client-1", "10.244.0.4", {COMP: "fl-client", "ztfl.io/fl-role": "client"},
              (ContainerPort("grpc", 50051, "TCP"),))  # even a client declaring grpc
ROGUE = Pod(RUN, "rogue", "10.244.0.5", {"ztfl.io/fl-role": "rogue"})
DNS = Pod("kube-system", "coredns", "10.244.0.10", {"k8s-app": "kube-dns"},
          (ContainerPort("dns", 53, "UDP"), ContainerPort("dns-tcp", 53, "TCP")))
OTHER_NS_CLIENT = Pod("elsewhere", "c", "10.244.0.20", {COMP: "fl-client"})


def cluster() -> ClusterView:
    pols = load_policies(policy_path(), default_namespace=RUN)
    return ClusterView((Namespace(RUN), Namespace("kube-system"), Namespace("elsewhere")),
                       (SERVER, CLIENT1, CLIENT2, ROGUE, DNS, OTHER_NS_CLIENT), tuple(pols))


def test_policy_set_parses_cleanly_into_the_run_namespace() -> None:
    view = cluster()
    assert [p.key for p in view.policies] == [
        f"{RUN}/ztfl-default-deny", f"{RUN}/ztfl-allow-dns", f"{RUN}/ztfl-fl-server-ingress",
        f"{RUN}/ztfl-fl-client-egress"]
    assert lint(view) == []


def test_client_to_server_on_grpc_allowed_and_explained() -> None:
    v = evaluate(cluster(), Flow(CLIENT1, SERVER, "TCP", 50051))
    assert v.allowed
    assert v.ingress.policy == f"{RUN}/ztfl-fl-server-ingress"
    assert v.egress.policy == f"{RUN}/ztfl-fl-client-egress"
    assert not is_allowed(cluster(), CLIENT1, SERVER, "TCP", 50052)
    assert not is_allowed(cluster(), CLIENT1, SERVER, "UDP", 50051)


def test_rogue_to_server_denied() -> None:
    v = evaluate(cluster(), Flow(ROGUE, SERVER, "TCP", 50051))
    assert not v.allowed and not v.egress.allowed and not v.ingress.allowed


def test_client_to_client_denied() -> None:
    assert not is_allowed(cluster(), CLIENT1, CLIENT2, "TCP", 50051)


def test_other_namespace_client_denied() -> None:
    assert not is_allowed(cluster(), OTHER_NS_CLIENT, SERVER, "TCP", 50051)


def test_dns_allowed_for_every_run_pod_and_nothing_else() -> None:
    for p in (SERVER, CLIENT1, ROGUE):
        assert is_allowed(cluster(), p, DNS, "UDP", 53)
        assert is_allowed(cluster(), p, DNS, "TCP", 53)
        assert not is_allowed(cluster(), p, DNS, "TCP", 80)
        assert not is_allowed(cluster(), p, "8.8.8.8", "UDP", 53)


def test_server_cannot_dial_out() -> None:
    assert not is_allowed(cluster(), SERVER, CLIENT1, "TCP", 50051)
    assert not is_allowed(cluster(), SERVER, "203.0.113.1", "TCP", 443)


def fl_plan() -> ClusterPlan:
    """An FL-shaped cluster on the kernel; every run pod listens on 50051 so denials are real."""
    grpc = (ContainerPort("grpc", 50051, "TCP"),)
    listen: tuple[tuple[Protocol, int], ...] = (("TCP", 50051),)
    return ClusterPlan(
        (Namespace("run"), Namespace("kube-system")),
        (PlannedPod("run", "fl-server", {COMP: "fl-server"}, grpc),
         PlannedPod("run", "fl-client-0", {COMP: "fl-client"}, extra_serve=listen),
         PlannedPod("run", "fl-client-1", {COMP: "fl-client"}, extra_serve=listen),
         PlannedPod("run", "rogue", {"ztfl.io/fl-role": "rogue"}, extra_serve=listen),
         PlannedPod("kube-system", "coredns", {"k8s-app": "kube-dns"}, DNS.ports)))


@pytest.mark.privileged
def test_fl_policy_set_on_the_kernel() -> None:
    with NetnsModel(fl_plan()) as m:
        m.apply([])  # SEC0: the probe must be able to see the hole
        table, _ = m.probe("TCP", 50051)
        assert table.get("run/rogue", "run/fl-server")
        m.apply(load_policies(policy_path(), default_namespace="run"))
        results = {(proto, port): m.check(proto, port) for proto, port in
                   (("TCP", 50051), ("UDP", 53), ("TCP", 53))}
        for res in results.values():
            assert res.ok, res.report("fl-netpol")
        grpc = results[("TCP", 50051)].observed
        assert grpc.get("run/fl-client-0", "run/fl-server")
        assert grpc.get("run/fl-client-1", "run/fl-server")
        assert not grpc.get("run/rogue", "run/fl-server")
        assert not grpc.get("run/fl-client-0", "run/fl-client-1")
        assert not grpc.get("run/fl-server", "run/fl-client-0")
        for proto in ("UDP", "TCP"):
            dns = results[(proto, 53)].observed
            assert all(dns.get(f"run/{p}", "kube-system/coredns")
                       for p in ("fl-server", "fl-client-0", "rogue"))
