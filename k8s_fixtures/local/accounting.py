"""What pods have used and met so far: each container's CPU time, peak memory and CPU-limit
throttling from its cgroup, and each pod network namespace's counters (policy refusals, TCP
retransmissions and timeouts, impairment drops: :mod:`k8s_fixtures.local.netns_counters`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from k8s_fixtures.cluster import ClusterError, ContainerUsage, NetnsCounters
from k8s_fixtures.local import netns_counters
from k8s_fixtures.local.pods import PodRun
from k8s_fixtures.local.topology import netns_exec

READERS = 4  # namespaces read at once


def counters_of(pods: Iterable[tuple[str, str]],
                run: Callable[[list[str]], str]) -> dict[str, NetnsCounters]:
    """The counters of each (pod name, network namespace); ``run`` runs a command so that it sees
    the cluster's namespaces. A pod whose namespace went meanwhile is left out. The pods are
    read side by side (one shell and nft per namespace: ~20 ms each, read at every arm's
    ready, release and end)."""

    def read(ns: str) -> str | None:
        try:
            return run(netns_exec(ns, "sh", "-c", netns_counters.SCRIPT))
        except (ClusterError, subprocess.TimeoutExpired):  # its namespace went meanwhile
            return None

    pods = list(pods)
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        texts = list(pool.map(read, [ns for _, ns in pods]))
    return {name: netns_counters.parse(text)
            for (name, _), text in zip(pods, texts, strict=True) if text is not None}


def usage_of(pods: Iterable[PodRun]) -> dict[str, dict[str, ContainerUsage]]:
    """Per pod, per container (init containers included): CPU time, peak memory, throttled
    time; None values without cgroups."""
    out: dict[str, dict[str, ContainerUsage]] = {}
    for p in pods:
        per: dict[str, ContainerUsage] = {}
        for c in p.all_containers:
            cpu = peak = throttled = None
            if c.cgroup is not None:
                try:
                    cpu = c.cgroup.cpu_usage_ns()
                    throttled = c.cgroup.throttled_ns()
                except (OSError, ValueError):  # removed with its pod meanwhile
                    cpu = throttled = None
                peak = c.cgroup.memory_peak_bytes()
            per[c.spec.name] = ContainerUsage(cpu, peak, throttled)
        out[p.name] = per
    return out
