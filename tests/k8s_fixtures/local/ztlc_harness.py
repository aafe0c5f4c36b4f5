"""A harness stand-in run as a subprocess by the teardown tests: start a cluster, run pods,
print READY, then wait to be interrupted (SIGINT) or killed (SIGKILL).

Usage: python ztlc_harness.py STATE_ROOT NAME [rootless]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from k8s_fixtures.local.backend import LocalCluster

PY = "/usr/bin/python3"


def main() -> None:
    root, name = Path(sys.argv[1]), sys.argv[2]
    mode = "rootless" if sys.argv[3:] == ["rootless"] else None
    with LocalCluster(name, state_root=root, mode=mode) as c:
        c.apply([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "run"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tree", "namespace": "run"},
             "spec": {"containers": [{"name": "c", "command": [
                 "sh", "-c", "sleep 1000 & sleep 1000 & wait"]}]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "py", "namespace": "run"},
             "spec": {"containers": [{"name": "c", "command": [
                 PY, "-c", "import time; time.sleep(1000)"],
                 "resources": {"limits": {"memory": "64Mi"}}}]}},
        ])
        c.wait_ready("run", timeout=20)
        print("READY", c.name, flush=True)
        while True:
            time.sleep(60)


if __name__ == "__main__":
    main()
