"""Helpers for the NET overlay tests (a uniquely named module: ``conftest`` is ambiguous)."""

from __future__ import annotations

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
