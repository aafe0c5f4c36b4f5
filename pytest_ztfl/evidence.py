"""Evidence for the failure taxonomy (:mod:`pytest_ztfl.taxonomy`), read from a cell's cluster.

Read at three moments: the pods ready (before the proofs), the rounds released (after them),
the run over. The proofs cause refusals, denials and retransmissions on purpose, so what counts
is what happened outside them: ``end - (released - ready)``. Each reading is what the backend
can give: network namespace counters and CPU throttling on the local backend (None elsewhere),
the server's TLS handshake refusals from its logs everywhere.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fl_app.events import ParsedLog
from k8s_fixtures import workload
from k8s_fixtures.cluster import (
    Cluster,
    ClusterError,
    MeasuresUsage,
    NetnsCounters,
    ReadsNetnsCounters,
)
from pytest_ztfl.taxonomy import ClientEvidence, RunEvidence

ZERO = NetnsCounters(0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Snapshot:
    netns: Mapping[str, NetnsCounters] | None  # pod -> counters so far
    throttled_ns: Mapping[str, int] | None  # pod -> CPU-limit throttling so far
    refusals: Mapping[str, int] | None  # the server's handshake refusals so far, by reason


def _refusals(cluster: Cluster, ns: str) -> Counter[str] | None:
    from k8s_fixtures.tls.grpc_log import grpc_handshake_failures
    from k8s_fixtures.tls.sidecar import PROXY_CONTAINER
    from k8s_fixtures.tls.stunnel_log import stunnel_handshake_failures

    try:
        server = next(p for p in cluster.pods(ns) if p.name == workload.SERVER)
        out = Counter(f.reason for f in grpc_handshake_failures(
            "\n".join(cluster.logs(ns, workload.SERVER, container=workload.SERVER))))
        if any(c.name == PROXY_CONTAINER for c in server.containers):
            text = "\n".join(cluster.logs(ns, workload.SERVER, container=PROXY_CONTAINER))
            out.update(f.reason for f in stunnel_handshake_failures(text))
    except (ClusterError, StopIteration):
        return None
    return out


def snapshot(cluster: Cluster, ns: str) -> Snapshot:
    netns = cluster.netns_counters(ns) if isinstance(cluster, ReadsNetnsCounters) else None
    throttled = None
    if isinstance(cluster, MeasuresUsage):
        with contextlib.suppress(ClusterError):
            throttled = {
                pod: sum(u.throttled_ns or 0 for u in per.values())
                for pod, per in cluster.usage(ns).items()
            }
    return Snapshot(netns, throttled, _refusals(cluster, ns))


def _outside(ready: Mapping[str, Any] | None, released: Mapping[str, Any] | None,
             end: Mapping[str, Any] | None, zero: Any) -> dict[str, Any] | None:
    if end is None:
        return None
    ready, released = ready or {}, released or {}
    return {k: v - (released.get(k, zero) - ready.get(k, zero)) for k, v in end.items()}


def run_evidence(
    clients: int,
    log: ParsedLog,
    pods: list[dict[str, Any]],
    ready: Snapshot | None,
    released: Snapshot | None,
    end: Snapshot | None,
    emulation_failed: str | None,
) -> RunEvidence:
    """What :func:`pytest_ztfl.taxonomy.classify` needs; missing snapshots read as nothing."""
    none = Snapshot(None, None, None)
    ready, released, end = ready or none, released or none, end or none
    netns = _outside(ready.netns, released.netns, end.netns, ZERO)
    throttled = _outside(ready.throttled_ns, released.throttled_ns, end.throttled_ns, 0)
    refusals = _outside(ready.refusals, released.refusals, end.refusals, 0)
    by_name = {p["name"]: p for p in pods}
    per_client = {}
    for c in range(clients):
        name = f"{workload.CLIENT}-{c}"
        t = throttled.get(name) if throttled is not None else None
        per_client[c] = ClientEvidence(
            pod=by_name.get(name),
            net=netns.get(name) if netns is not None else None,
            throttled_s=t / 1e9 if t is not None else None,
        )
    return RunEvidence(clients, log, per_client, refusals, emulation_failed)


def summary(ev: RunEvidence) -> dict[str, dict[str, Any]]:
    """Per client, what the taxonomy looked at (for the row: ``evidence``)."""
    out: dict[str, dict[str, Any]] = {}
    for c, ce in ev.per_client.items():
        d: dict[str, Any] = {}
        if ce.net is not None:
            d.update(zip(("denied_ingress", "denied_egress", "tcp_retrans", "tcp_timeouts",
                          "dropped_other"), ce.net.values(), strict=True))
        if ce.throttled_s is not None:
            d["throttled_seconds"] = round(ce.throttled_s, 3)
        out[str(c)] = d
    if ev.refusals is not None:
        out["server"] = {"handshake_refusals": dict(ev.refusals)}
    return out
