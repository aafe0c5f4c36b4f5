"""NetworkPolicy faults: a client left out of the DNS rule, a client left out of the
server-port rules."""

from __future__ import annotations

from typing import Any

from k8s_fixtures import workload
from pytest_ztfl.faults.base import Fault, Obj, exclude_target, mark_target, policy, short_join


def _no_dns_objects(objs: list[Obj], run: workload.FLRun, ca: Any) -> list[Obj]:
    """Client 1 is left out of the allow-dns policy: default-deny then drops its lookups."""
    mark_target(objs)
    exclude_target(policy(objs, "ztfl-allow-dns")["spec"]["podSelector"])
    return objs


def _deny_port_objects(objs: list[Obj], run: workload.FLRun, ca: Any) -> list[Obj]:
    """Client 1 is left out of both FL allow rules: its connections to the server's port are
    dropped by default-deny (egress) and by the server's ingress policy."""
    mark_target(objs)
    exclude_target(policy(objs, "ztfl-fl-client-egress")["spec"]["podSelector"])
    for rule in policy(objs, "ztfl-fl-server-ingress")["spec"]["ingress"]:
        for peer in rule.get("from", []):
            if "podSelector" in peer:
                exclude_target(peer["podSelector"])
    return objs


FAULTS = (
    Fault(
        "netpol-no-dns",
        "netpol",
        "client 1 is not selected by the allow-dns policy (cannot resolve the server)",
        prepare=short_join,
        objects=_no_dns_objects,
        requires=frozenset({"netpol"}),
    ),
    Fault(
        "netpol-deny-port",
        "netpol",
        "client 1 is not allowed to the server's gRPC port",
        prepare=short_join,
        objects=_deny_port_objects,
        requires=frozenset({"netpol"}),
    ),
)
