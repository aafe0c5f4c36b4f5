"""A small cluster scenario an ordinary user runs (rootless), printing one JSON result line.

Usage: python3 ztlc_rootless.py STATE_ROOT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from k8s_fixtures.local.backend import LocalCluster

PY = "/usr/bin/python3"
SERVER = ("import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n"
          "    def do_GET(self):\n        self.send_response(200); self.end_headers()\n"
          "        self.wfile.write(b'hello')\n"
          "http.server.HTTPServer(('', 8080), H).serve_forever()\n")
CLIENT = ("import urllib.request\n"
          "print(urllib.request.urlopen('http://web:8080/', timeout=5).read().decode())\n"
          "raise SystemExit(3)\n")


def main() -> None:
    with LocalCluster(prefix="ztlc", state_root=Path(sys.argv[1])) as c:
        c.apply([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "run"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "run"},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}},
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web", "namespace": "run", "labels": {"app": "web"}},
             "spec": {"containers": [{"name": "c", "command": [PY, "-c", SERVER],
                                      "readinessProbe": {"tcpSocket": {"port": 8080}}}]}},
        ])
        c.wait_ready("run", names=["web"], timeout=30)
        c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cli", "namespace": "run"},
                 "spec": {"restartPolicy": "Never",
                          "containers": [{"name": "c", "command": [PY, "-c", CLIENT]}]}})
        s = c.wait_finished("run", "cli", timeout=30)
        _, out, _ = c.exec("run", "web", ["cat", "/etc/resolv.conf"])
        print(json.dumps({"name": c.name, "mode": c.mode, "exit_code": s.exit_code,
                          "logs": "".join(c.logs("run", "cli")), "warnings": c.warnings,
                          "resolv": out.splitlines()[0], "node": c.node_netns}), flush=True)


if __name__ == "__main__":
    main()
