"""A harness stand-in run as a subprocess by the concurrent-shaping cleanup test: start a local
cluster with the NET overlay (delay line forced), shape two namespaces at once (profiles D10
and D30 from PROFILES_FILE), print ``READY <node netns>``, then wait to be killed.

Usage: python ztnc_shaped_harness.py STATE_ROOT NAME PROFILES_FILE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.netem.local_overlay import ANNOTATION, NetemOverlay
from k8s_fixtures.netem.profiles import load_profiles


def _pod(ns: str, name: str, labels: dict[str, str], profile: str | None = None
         ) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": ns, "labels": labels}
    if profile:
        meta["annotations"] = {ANNOTATION: profile}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "command": ["sleep", "1000"]}]}}


def main() -> None:
    root, name, profiles = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    with LocalCluster(name, state_root=root) as c:
        c.add_overlay(NetemOverlay(load_profiles(profiles), mechanism="delayline"))
        for ns, profile in (("cell-a", "D10"), ("cell-b", "D30")):
            c.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                     _pod(ns, "srv", {"app.kubernetes.io/component": "fl-server"}),
                     _pod(ns, "c0", {"app": "client"}, profile)])
            c.wait_ready(ns, timeout=30)
        print("READY", c.node_netns, flush=True)
        while True:
            time.sleep(60)


if __name__ == "__main__":
    main()
