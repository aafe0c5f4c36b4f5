"""Test-only sidecar helper: take a pod's redirect away again (the product never does).

The product's pods get their redirect from an init container and lose it with the pod
(:mod:`k8s_fixtures.workload`); the live sidecar tests switch it off and on in one namespace.
"""

from __future__ import annotations

import subprocess

from k8s_fixtures.local.topology import netns_exec
from k8s_fixtures.tls.sidecar import NFT_TABLE


def remove_redirect(netns: str) -> None:
    """Remove the sidecar's redirect table from ``netns`` (no error if it is absent)."""
    subprocess.run(netns_exec(netns, "nft", "delete", "table", "inet", NFT_TABLE),
                   capture_output=True, timeout=30)
