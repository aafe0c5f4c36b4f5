"""Fixtures for the NET overlay tests: a private topology (prefix ``ztdl-t``) with a probe
server, torn down by PID and by name even when a test fails."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from netem_support import Topo

from k8s_fixtures.local.topology import Node
from k8s_fixtures.netem.calibrate import ProbeServer


@pytest.fixture
def topo() -> Iterator[Topo]:
    node = Node(prefix=f"ztdl-t{secrets.token_hex(3)}").create()
    probe: ProbeServer | None = None
    try:
        srv = node.add_pod("srv")
        clients = [node.add_pod("c0"), node.add_pod("c1")]
        probe = ProbeServer(srv.netns)
        yield Topo(node, srv, clients, probe)
    finally:
        if probe is not None:
            probe.stop()
        node.destroy()
