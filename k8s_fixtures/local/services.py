"""Services as DNS names: each Service's name resolves to the IPs of the pods its selector
matches; the records go to the cluster DNS pod's hosts file, and the resolver is told to
reload it (SIGHUP)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path

from k8s_fixtures.cluster import Obj
from k8s_fixtures.local import dns
from k8s_fixtures.local.admission import Key
from k8s_fixtures.local.pods import PodRun
from k8s_fixtures.manifests import selector_matches


def hosts_text(objects: Mapping[Key, Obj], pods: Mapping[tuple[str, str], PodRun]) -> str:
    """The hosts file for every Service with a selector and the pods it selects."""
    records = []
    for (kind, ns, name), svc in objects.items():
        if kind != "Service":
            continue
        sel = (svc.get("spec") or {}).get("selector") or {}
        if not sel:
            continue
        fqdn = dns.service_name(name, ns)
        records += [(fqdn, p.link.ip) for p in pods.values()
                    if p.namespace == ns and not p.deleting and selector_matches(sel, p.labels)]
    return dns.render_hosts(records)


def write_hosts(hosts_file: Path, text: str) -> None:
    """Replace the hosts file at once (the resolver never reads a half-written one)."""
    tmp = hosts_file.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(hosts_file)


def reload(pods: Mapping[tuple[str, str], PodRun]) -> None:
    """Tell the cluster DNS pod's resolver to read its hosts file again."""
    dns_pod = pods.get((dns.NAMESPACE, dns.POD))
    pid = dns_pod.containers[0].pid if dns_pod else None
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
