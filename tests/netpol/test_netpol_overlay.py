"""The local-backend overlay adapter, with stand-ins for the backend's view and cluster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from netpol_cases import np, pod

from k8s_fixtures.netpol.nft import TABLE, DenyAction, NftError
from k8s_fixtures.netpol.overlay import NetpolOverlay, view_from_local
from k8s_fixtures.netpol.parse import PolicyError


@dataclass(frozen=True)
class Port:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ip: str
    netns: str
    labels: Mapping[str, str]
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class View:
    gateway: str
    namespaces: Mapping[str, Mapping[str, str]]
    pods: tuple[PodInfo, ...]
    objects: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)


class Cluster:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.fail = fail

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 30) -> str:
        self.calls.append((argv, input))
        if self.fail:
            raise RuntimeError("ip netns exec ns-a nft -f -: Error: syntax error\nmore")
        return ""


PODS = (PodInfo("x", "a", "10.0.0.2", "ns-a", {"pod": "a"}, (Port(80, "TCP", "http"),)),
        PodInfo("x", "b", "10.0.0.3", "ns-b", {"pod": "b"}))


def view(*pols: dict[str, Any]) -> View:
    return View("10.0.0.1", {"x": {"kubernetes.io/metadata.name": "x"}}, PODS,
                {"NetworkPolicy": pols})


def test_view_conversion() -> None:
    cv = view_from_local(view(np("p", "x", pod("a"))))
    assert [p.key for p in cv.pods] == ["x/a", "x/b"] and cv.node_ips == ("10.0.0.1",)
    assert cv.pod("x/a").resolve_port("http", "TCP") == 80
    assert [p.key for p in cv.policies] == ["x/p"]


def test_sync_applies_changed_namespaces_through_cluster_run() -> None:
    overlay, cluster = NetpolOverlay(), Cluster()
    overlay.sync(cluster, view(np("in", "x", pod("a"), ingress=[
        {"from": [{"podSelector": pod("b")}], "ports": [{"port": "http"}]}])))
    assert [c[0] for c in cluster.calls] == [["ip", "netns", "exec", "ns-a", "nft", "-f", "-"],
                                           ["ip", "netns", "exec", "ns-b", "nft", "-f", "-"]]
    assert ("ct original ip saddr 10.0.0.3 meta l4proto tcp ct original proto-dst 80 accept"
            in str(cluster.calls[0][1]))
    overlay.sync(cluster, view(np("in", "x", pod("a"), ingress=[
        {"from": [{"podSelector": pod("b")}], "ports": [{"port": "http"}]}])))
    assert len(cluster.calls) == 2  # nothing changed, nothing re-applied
    overlay.sync(cluster, view())
    assert cluster.calls[-1][1] == f"table inet {TABLE}\ndelete table inet {TABLE}\n"
    assert overlay.metadata()["action"] == "reject"
    assert NetpolOverlay(DenyAction.DROP).metadata()["action"] == "drop"


def test_validate_and_failures_are_one_line_errors() -> None:
    with pytest.raises(PolicyError, match=r"^NetworkPolicy x/bad: spec.ingress\[0\].from\[0\]"):
        NetpolOverlay().validate(np("bad", "x", {}, ingress=[{"from": [{}]}]))
    with pytest.raises(NftError, match=r"^nft in netns ns-a: ip netns exec ns-a nft -f -: "
                                       r"Error: syntax error$"):
        NetpolOverlay().sync(Cluster(fail=True), view(np("deny", "x", {})))


def test_warnings_are_kept_for_the_run() -> None:
    overlay = NetpolOverlay()
    overlay.sync(Cluster(), view(np("ghost", "x", pod("zzz"))))
    assert overlay.warnings == [
        "NetworkPolicy x/ghost: spec.podSelector {pod=zzz} selects no pod in namespace x"]
