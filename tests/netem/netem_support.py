"""Helpers for the NET overlay tests (a uniquely named module: ``conftest`` is ambiguous)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from k8s_fixtures.local.topology import Node, PodLink
from k8s_fixtures.netem.calibrate import ProbeServer, run_probe
from k8s_fixtures.netem.stats import percentile


@dataclass
class Topo:
    node: Node
    server: PodLink
    clients: list[PodLink]
    probe: ProbeServer

    def rtt_p50(self, client: PodLink, n: int = 40, conns: int = 1,
                spacing_ms: float = 2.0) -> float:
        r = run_probe(client.netns, "rtt", "--host", self.server.ip, "--n", str(n),
                      "--conns", str(conns), "--spacing-ms", str(spacing_ms))
        assert not r["errors"], r["errors"]
        return percentile(r["rtt_ms"], 50)


def netns_named(prefix: str) -> list[str]:
    """Named network namespaces ``<prefix>-*`` (``ip netns list``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]


def netns_pids(ns: str) -> list[int]:
    """Processes inside network namespace ``ns`` (``ip netns pids``)."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_until(what: str, cond: Callable[[], object], timeout: float,
               proc: subprocess.Popen[str] | None = None) -> None:
    """Poll ``cond`` until it is true; fail naming ``what`` (and ``proc``'s stderr if it
    ended early) when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process ended ({proc.returncode}): "
                                 f"{proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(0.02)
