"""What the harness reads of a cell's pods: their states after the run, a container's end, the
identities the server-side TLS proxy accepted (mapped back to SPIFFE ids)."""

from __future__ import annotations

import time
from typing import Any

from k8s_fixtures import workload
from k8s_fixtures.cluster import Cluster, ClusterError
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER, identity_dns_from_spiffe
from k8s_fixtures.tls.stunnel_log import stunnel_accepted_subjects


def wait_container_done(
    cluster: Cluster, ns: str, pod: str, container: str, timeout: float
) -> None:
    """Wait until one container of a pod has terminated (a sidecar keeps the pod Running)."""
    deadline = time.monotonic() + timeout
    while True:
        st = cluster.pod_status(ns, pod)
        if st.phase in ("Succeeded", "Failed") or any(
            c.name == container and c.state == "terminated" for c in st.containers
        ):
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"pod {ns}/{pod}: container {container} still running after {timeout:.0f} s"
            )
        time.sleep(0.05)


def pod_states(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "phase": p.phase,
            "restarts": p.restart_count,
            "reason": p.reason,
            "exit_code": p.exit_code,
        }
        for p in cluster.pods(ns)
    ]


def identities(run: workload.FLRun, subjects: list[str]) -> list[str]:
    """Map the proxy's accepted certificate subjects back to SPIFFE ids. stunnel logs only the
    subject, whose CN is the identity's DNS form cut to 64 characters (X.520), so compare cut
    forms; an unknown subject is kept as is, flagged."""
    known = {}
    for sa in (workload.SERVER, workload.CLIENT):
        sid = run.spiffe_id(sa)
        known[f"CN={identity_dns_from_spiffe(sid)[:64]}"] = sid
    return sorted(known.get(s, f"unknown subject {s}") for s in subjects)


def accepted(cluster: Cluster, ns: str) -> list[str]:
    """The certificate subjects the server's TLS proxy accepted (its log)."""
    text = "\n".join(cluster.logs(ns, workload.SERVER, container=PROXY_CONTAINER))
    return sorted(set(stunnel_accepted_subjects(text)))
